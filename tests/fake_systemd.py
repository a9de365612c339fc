"""A systemctl stand-in that fails as systemd does, for the deploy-hook tests (the test
machine runs no systemd). It reads the unit files the hooks installed and, for a
`Type=notify` service:

- `start` makes `StateDirectory=` (owned by `User=`, `StateDirectoryMode=`), runs
  `ExecStartPre=` and then `ExecStart=` as `User=` with `NOTIFY_SOCKET` set, and returns
  0 only once the process says `READY=1`; it fails (exit 1, systemd's words) when a
  pre-command fails, when the process exits first, or after `TimeoutStartSec=`;
- `stop` sends SIGTERM and waits up to `TimeoutStopSec=`, then SIGKILL;
- `is-active`, `daemon-reload`, `enable`, `disable`, `is-enabled`, `restart`,
  `reset-failed`.

Other units (the journal shipper, the backup timer) are only recorded as enabled or
started: their programs are not run here.

Paths come from the environment: JPIXD_UNIT_DIR (the installed units), JPIXD_SYSTEMD_RUN
(pid files and logs), JPIXD_STATE_ROOT (where StateDirectory= goes: /var/lib).
"""

from __future__ import annotations

import os
import pwd
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

UNITS = Path(os.environ.get("JPIXD_UNIT_DIR", "/etc/systemd/system"))
RUN = Path(os.environ.get("JPIXD_SYSTEMD_RUN", "/run/fake-systemd"))
STATE_ROOT = Path(os.environ.get("JPIXD_STATE_ROOT", "/var/lib"))


def _unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


def _service(name: str) -> dict[str, list[str]]:
    path = UNITS / name
    if not path.exists():
        print(f"Failed to start {name}: Unit {name} not found.", file=sys.stderr)
        sys.exit(5)
    out: dict[str, list[str]] = {}
    section = ""
    # The unit, then its drop-ins in name order; an empty `Key=` resets the key's list.
    texts = [path.read_text(), *(p.read_text() for p in sorted(
        (UNITS / f"{name}.d").glob("*.conf")))]
    for raw in "\n".join(texts).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if not value.strip():
            out[f"{section}.{key.strip()}"] = []
            continue
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def _one(unit: dict[str, list[str]], key: str, default: str = "") -> str:
    return unit.get(f"Service.{key}", [default])[-1]


def _seconds(text: str) -> float:
    return float(text.removesuffix("s")) if text else 90.0


def _pidfile(name: str) -> Path:
    return RUN / f"{name}.pid"


def _alive(name: str) -> int | None:
    try:
        pid = int(_pidfile(name).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _as_user(user: str) -> list[str]:
    if os.getuid() == 0 and user and user != "root":
        return ["runuser", "-u", user, "--"]
    return []


def _environment(unit: dict[str, list[str]]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    for item in unit.get("Service.Environment", []):
        for word in shlex.split(item):
            key, _, value = word.partition("=")
            env[key] = value
    for ref in unit.get("Service.EnvironmentFile", []):
        optional, path = ref.startswith("-"), Path(ref.lstrip("-"))
        if not path.exists():
            if optional:
                continue
            print(f"Failed to load environment files: {path}", file=sys.stderr)
            sys.exit(1)
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip().strip('"')
    return env


def _state_directory(unit: dict[str, list[str]], user: str) -> None:
    name = _one(unit, "StateDirectory")
    if not name:
        return
    path = STATE_ROOT / name
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(int(_one(unit, "StateDirectoryMode", "0755"), 8))
    if os.getuid() == 0 and user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _failed(name: str, why: str) -> int:
    print(f"Job for {name} failed because {why}.\nSee \"systemctl status {name}\" and "
          f"\"journalctl -xeu {name}\" for details.", file=sys.stderr)
    return 1


def start(name: str) -> int:
    unit = _service(name)
    if _one(unit, "Type", "simple") != "notify":
        (RUN / f"{name}.started").touch()
        return 0
    if _alive(name):
        return 0  # already active: systemd does nothing
    user = _one(unit, "User")
    env = _environment(unit)
    log = (RUN / f"{name}.log").open("ab")
    os.umask(int(_one(unit, "UMask", "0022"), 8))
    _state_directory(unit, user)
    for pre in unit.get("Service.ExecStartPre", []):
        done = subprocess.run([*_as_user(user), *shlex.split(pre.lstrip("-"))], env=env,
                              stdout=log, stderr=log, check=False)
        if done.returncode != 0 and not pre.startswith("-"):
            return _failed(name, "the control process exited with error code")
    address = str(RUN / f"{name}.notify")
    Path(address).unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        os.chmod(address, 0o777)  # the service user must reach it
        proc = subprocess.Popen([*_as_user(user), *shlex.split(_one(unit, "ExecStart"))],
                                env={**env, "NOTIFY_SOCKET": address}, stdout=log, stderr=log,
                                start_new_session=True)
        _pidfile(name).write_text(str(proc.pid))
        end = time.monotonic() + _seconds(_one(unit, "TimeoutStartSec"))
        # Woken by a notify datagram or by the process's exit, whichever comes first.
        events = select.poll()
        events.register(sock, select.POLLIN)
        exited = os.pidfd_open(proc.pid)
        events.register(exited, select.POLLIN)
        try:
            while (left := end - time.monotonic()) > 0:
                for fd, _ in events.poll(left * 1000):
                    if fd == sock.fileno() and b"READY=1" in sock.recv(4096):
                        return 0
                    if fd == exited:
                        _pidfile(name).unlink(missing_ok=True)
                        return _failed(name, "the control process exited with error code")
        finally:
            os.close(exited)
        proc.kill()
        _pidfile(name).unlink(missing_ok=True)
        return _failed(name, "a timeout was exceeded")


def stop(name: str) -> int:
    unit = _service(name) if (UNITS / name).exists() else {}
    (RUN / f"{name}.started").unlink(missing_ok=True)
    pid = _alive(name)
    if pid is None:
        return 0
    # Not our child (an earlier `start` made it): its pidfd says when it has exited.
    exited = select.poll()
    fd = os.pidfd_open(pid)
    try:
        exited.register(fd, select.POLLIN)
        os.kill(pid, signal.SIGTERM)
        if not exited.poll(_seconds(_one(unit, "TimeoutStopSec", "45s")) * 1000):
            os.kill(pid, signal.SIGKILL)
            exited.poll(10_000)
    finally:
        os.close(fd)
    _pidfile(name).unlink(missing_ok=True)
    return 0


def main(argv: list[str]) -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    args = [a for a in argv if not a.startswith("--")]
    quiet = "--quiet" in argv
    if not args:
        return 2
    command, names = args[0], [_unit_name(n) for n in args[1:]]
    if command == "daemon-reload":
        (RUN / "daemon-reloaded").touch()
        return 0
    if command in ("enable", "disable"):
        for name in names:
            if command == "enable" and not (UNITS / name).exists():
                print(f"Failed to enable unit: Unit file {name} does not exist.",
                      file=sys.stderr)
                return 1
            flag = RUN / f"{name}.enabled"
            flag.touch() if command == "enable" else flag.unlink(missing_ok=True)
        if "--now" in argv and command == "enable":
            return max((start(n) for n in names), default=0)
        return 0
    if command == "is-enabled":
        return 0 if all((RUN / f"{n}.enabled").exists() for n in names) else 1
    if command == "is-active":
        active = all(_alive(n) is not None or (RUN / f"{n}.started").exists() for n in names)
        if not quiet:
            print("active" if active else "inactive")
        return 0 if active else 3
    if command == "start":
        return max((start(n) for n in names), default=0)
    if command == "stop":
        return max((stop(n) for n in names), default=0)
    if command == "restart":
        for n in names:
            stop(n)
        return max((start(n) for n in names), default=0)
    if command == "reset-failed":
        return 0
    print(f"fake systemctl: {command} is not supported", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
