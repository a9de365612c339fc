"""Run benchmarks: `python -m bench` (all), `python -m bench fanout`, or one part of a
module, `python -m bench sender:pipeline`. Logs go, as JSON, to /dev/null: their cost is
part of the figures, their text is not."""

from __future__ import annotations

import importlib
import os
import sys

from jpixd import logs

ALL = ("fanout", "fanout:archive", "sender", "bounces", "versus", "postgres", "public")


def main() -> None:
    with open("/dev/null", "w") as sink:
        logs.configure(os.environ.get("BENCH_LOG_LEVEL", "info"), "json", stream=sink)
        for arg in sys.argv[1:] or ALL:
            module, _, part = arg.partition(":")
            importlib.import_module(f"bench.{module}").run([part] if part else [])


if __name__ == "__main__":
    main()
