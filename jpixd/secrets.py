"""Resolution of `ssm:/path` secrets (AWS SSM Parameter Store, SecureString decrypted).

File and environment secrets are read by the config loader; SSM needs the network, so it
is resolved here, once, at start-up, and a missing parameter stops the start with the
key path that named it.
"""

from __future__ import annotations

from typing import Any

from jpixd.config import Config, ConfigError, Secret, secrets, with_resolved_secrets


async def resolve_ssm(cfg: Config) -> Config:
    wanted = [(path, s) for path, s in secrets(cfg) if s.needs_ssm]
    if not wanted:
        return cfg
    # The AWS libraries take about a tenth of a second to import: only when used.
    from aiobotocore.session import get_session
    from botocore.exceptions import BotoCoreError, ClientError

    from jpixd.awsclients import client_config

    values: dict[str, str] = {}
    errors: list[str] = []
    session = get_session()
    async with session.create_client("ssm", region_name=cfg.ssm.region,
                                     endpoint_url=cfg.ssm.endpoint_url,
                                     config=client_config(read_timeout=10.0, attempts=3)
                                     ) as client:
        for path, secret in wanted:
            name = secret.origin[4:]
            try:
                resp: dict[str, Any] = await client.get_parameter(Name=name, WithDecryption=True)
                values[secret.origin] = str(resp["Parameter"]["Value"])
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "error")
                errors.append(f"{path}: SSM parameter {name!r}: {code}")
            except BotoCoreError as exc:
                errors.append(f"{path}: SSM parameter {name!r}: {exc}")
    if errors:
        raise ConfigError(errors)

    def fill(s: Secret) -> Secret:
        return Secret(s.origin, values[s.origin]) if s.origin in values else s

    return with_resolved_secrets(cfg, fill)
