"""Signed webhook bodies: `X-Jpixd-Signature: t=<unix>,v1=<hex>`, the hex an
HMAC-SHA256 of "<t>.<body>" under the channel's own secret (Stripe's scheme, which
receivers know how to check). The time in the signed text lets a receiver refuse a
replayed message; `verify` is what a receiver does, and what the tests' receiver does."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Jpixd-Signature"
TOLERANCE_S = 300  # how old a signature a receiver should accept


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def headers(secret: bytes, body: bytes, key: str, timestamp: int) -> dict[str, str]:
    """A webhook message's headers (SPEC §10): its JSON, its signature, and its
    idempotency key, the same on every attempt of one message."""
    return {"Content-Type": "application/json; charset=utf-8",
            HEADER: signature(secret, body, timestamp), "Idempotency-Key": key,
            "User-Agent": "jpixd-webhook/1"}


def verify(secret: bytes, header: str, body: bytes, now: int,
           tolerance: int = TOLERANCE_S) -> bool:
    """Whether `header` signs `body` under `secret`, within `tolerance` seconds of `now`.
    Any v1 may match (a sender rotating its secret may sign twice)."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        return False
    t = int(stamps[0])
    if abs(now - t) > tolerance:
        return False
    expected = signature(secret, body, t).partition(",v1=")[2]
    return any(hmac.compare_digest(v.strip().encode(), expected.encode())
               for k, _, v in parts if k.strip() == "v1")
