"""Instructions counted under valgrind's callgrind, which the host's stolen CPU does not
move: the figure to compare two commits by (`sender:instructions`, `fanout:instructions`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys


def installed() -> bool:
    return shutil.which("valgrind") is not None


def instructions(module: str, *args: str) -> int:
    """The instructions `python -m module args…` runs under callgrind, start-up included
    (take the difference of two runs to cancel it out)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed")
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         "-m", module, *args], capture_output=True, check=False)
    found = re.search(rb"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind failed: {done.stderr[-500:]!r}")
    return int(found.group(1))
