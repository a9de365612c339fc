"""Renders /etc/jpixd/jpixd.toml on a fresh host (deploy/hooks/bootstrap.sh): the
production example (`jpixd.toml.example` in the bundle, `etc/jpixd.toml` in the repo)
with what the stack knows filled in from /etc/jpixd/stack.env, which the instance's
UserData writes from the stack's resources (deploy/cloudformation/jpixd.yaml). Secrets
stay in SSM: the file names them (`ssm:/jpixd/...`), the daemon reads them.

    python3 render.py EXAMPLE STACK_ENV > jpixd.toml

Only the standard library: it runs before any release is installed.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

# stack.env key → where it goes. A key that is empty or absent leaves the example's value.
PLACES = {
    "JPIXD_STATE_DIR": ("", "state_dir"),  # bootstrap.sh passes the host's own
    "JPIXD_LISTEN": ("http", "listen"),
    "JPIXD_PUBLIC_LISTEN": ("http", "public_listen"),
    "JPIXD_BASE_URL": ("web", "base_url"),
    "JPIXD_MAIL_FROM": ("mail", "from"),
    "JPIXD_REPLY_TO": ("mail", "reply_to"),
    "JPIXD_REGION": ("mail.ses", "region"),
    "JPIXD_CONFIGURATION_SET": ("mail.ses", "configuration_set"),
    "JPIXD_QUEUE_URL": ("bounces", "queue_url"),
    "JPIXD_FIREHOSE_STREAM": ("archive", "stream"),
    "JPIXD_DATABASE_URL": ("", "database_url"),  # several hosts: the stack's RDS
}


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip('"')
    return out


def _table(doc: dict[str, Any], dotted: str) -> dict[str, Any]:
    for part in dotted.split(".") if dotted else []:
        doc = doc.setdefault(part, {})
    return doc


def render(example: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    doc = json.loads(json.dumps(example))  # a deep copy
    for key, (section, name) in PLACES.items():
        if env.get(key):
            _table(doc, section)[name] = env[key]
    region = env.get("JPIXD_REGION") or "ap-northeast-1"
    for section in ("bounces", "ssm", "archive", "backup"):
        _table(doc, section)["region"] = region
    if env.get("JPIXD_TOPIC_ARN"):
        doc["bounces"]["expected_topic_arns"] = [env["JPIXD_TOPIC_ARN"]]
    if env.get("JPIXD_VPC_CIDR"):
        doc["web"]["trusted_proxies"] = [env["JPIXD_VPC_CIDR"]]
    if env.get("JPIXD_BASE_URL"):
        doc["mail"]["list_unsubscribe"] = env["JPIXD_BASE_URL"] + "/unsubscribe"
    ssm = "ssm:" + (env.get("JPIXD_SSM_PREFIX") or "/jpixd").rstrip("/")
    doc["http"]["admin_token"] = f"{ssm}/admin-token"
    doc["http"].pop("admin_token_file", None)
    doc["web"]["secret_keys"] = f"{ssm}/web-keys"
    doc["web"].pop("secret_keys_file", None)
    if env.get("JPIXD_DATABASE_URL"):
        doc["database_password"] = f"{ssm}/db-password"
        doc.pop("database_password_file", None)
    if env.get("JPIXD_FIREHOSE_STREAM"):
        doc["archive"]["kind"] = "firehose"
    else:
        doc.pop("archive", None)
    if env.get("JPIXD_BACKLOG_BASE_URL"):
        backlog = _table(doc, "backlog")
        backlog["base_url"] = env["JPIXD_BACKLOG_BASE_URL"]
        backlog["project_key"] = env.get("JPIXD_BACKLOG_PROJECT", backlog.get("project_key"))
        backlog["api_key"] = f"{ssm}/backlog-api-key"
        backlog.pop("api_key_file", None)
    else:
        doc.pop("backlog", None)
    if env.get("JPIXD_AWS_ENDPOINT_URL"):  # an emulated AWS (the tests' moto): never in AWS
        for section in ("mail.ses", "bounces", "ssm", "archive", "backup"):
            if section in doc or "." in section:
                _table(doc, section)["endpoint_url"] = env["JPIXD_AWS_ENDPOINT_URL"]
    return doc


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)


def dumps(doc: dict[str, Any], prefix: str = "") -> str:
    """TOML for what the example holds: tables, arrays of tables, scalars and lists."""
    lines = [f"{k} = {_value(v)}" for k, v in doc.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v
                                                  and isinstance(v[0], dict))]
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            lines += ["", f"[{name}]", dumps(v, f"{name}.").rstrip("\n")]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines += ["", f"[[{name}]]", dumps(item, f"{name}.").rstrip("\n")]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: render.py EXAMPLE STACK_ENV", file=sys.stderr)
        return 2
    example = tomllib.loads(Path(argv[0]).read_text(encoding="utf-8"))
    env = _read_env(Path(argv[1]))
    if os.environ.get("JPIXD_STATE_DIR") and "JPIXD_STATE_DIR" not in env:
        env["JPIXD_STATE_DIR"] = os.environ["JPIXD_STATE_DIR"]
    header = ("# Rendered on this host by deploy/config/render.py from the production example\n"
              "# and /etc/jpixd/stack.env; edit freely: the hooks never overwrite it.\n")
    sys.stdout.write(header + dumps(render(example, env)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
