"""One retry policy (issue 24, part 5): every loop and client backs off by
`jpixd.retry.Backoff` on the random source it is given."""

from __future__ import annotations

import random

import pytest

from jpixd.retry import Backoff


def test_half_to_all_of_a_doubling_wait_never_above_the_cap() -> None:
    rng = random.Random(7)
    backoff = Backoff(first=10.0, cap=300.0)
    assert backoff.delay(0, rng) == 0.0
    for failures, whole in ((1, 10.0), (2, 20.0), (3, 40.0), (5, 160.0), (6, 300.0),
                            (60, 300.0), (10_000, 300.0)):
        waits = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(whole / 2 <= w <= whole for w in waits), failures
        assert max(waits) - min(waits) > whole / 4  # spread: hosts do not retry in step


def test_the_same_random_source_gives_the_same_waits() -> None:
    a = [Backoff(1.0, 60.0).delay(n, random.Random(1)) for n in range(1, 9)]
    b = [Backoff(1.0, 60.0).delay(n, random.Random(1)) for n in range(1, 9)]
    assert a == b


@pytest.mark.parametrize("module", ["jpixd/mail/sender.py", "jpixd/feeds/poller.py",
                                    "jpixd/archive.py", "jpixd/backlog/client.py",
                                    "jpixd/backlog/reconciler.py", "jpixd/bounces/consumer.py",
                                    "jpixd/supervisor.py"])
def test_every_loop_backs_off_by_it(module: str) -> None:
    """No loop keeps a formula of its own, nor draws from the global random source."""
    from tests.conftest import ROOT

    text = (ROOT / module).read_text(encoding="utf-8")
    assert "Backoff(" in text, module
    assert "2 ** " not in text and "2.0 ** " not in text, module
    assert "random.uniform" not in text and "random.random()" not in text, module
