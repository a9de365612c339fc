"""Run the benchmarks named on the command line (all when none is named)."""

from __future__ import annotations

import importlib
import sys

ALL = ("fanout",)


def main() -> None:
    for name in sys.argv[1:] or ALL:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
