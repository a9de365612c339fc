"""Leases on claimed deliveries (SPEC §2, issue 16's first part, on SQLite): a row whose
sender died is sent again once its lease expires, by whichever sender claims next; a
row still being sent is kept by its sender's renewals, so nobody else sends it too."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from jpixd.mail.render import Rendered
from jpixd.model import DeliveryState, Subscriber
from jpixd.store import Store
from tests.test_sender import T0, Rig


@pytest.fixture
def rig(store: Store, tmp_path: Path) -> Rig:
    return Rig(store, tmp_path)


@dataclass
class Gate:
    """A transport that holds each send until released."""

    name: str = "gate"
    sent: list[Rendered] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, mail: Rendered) -> str | None:
        self.started.set()
        await self.release.wait()
        self.sent.append(mail)
        return None

    async def close(self) -> None:
        pass


async def test_mail_whose_sender_died_is_sent_once_its_lease_expires(rig: Rig) -> None:
    gate = Gate()
    gate.release.set()
    sender = rig.sender(gate)
    await sender.run_once()  # started (its start-up recovery done): nothing to send yet
    await rig.notice_for(Subscriber(email="a@isp.example.jp", carriers=("west",)))
    # Another sender claimed it and died mid-send: `sending`, its lease 2 minutes.
    claimed, _ = await rig.store.claim(T0, 10, claimer="dead-host:1:x",
                                       lease_until=T0 + timedelta(minutes=2))
    assert len(claimed) == 1
    rig.now[0] = T0 + timedelta(minutes=1)
    await sender.run_once()
    assert gate.sent == []  # the lease holds: not ours to send
    rig.now[0] = T0 + timedelta(minutes=3)
    await sender.run_once()
    assert len(gate.sent) == 1
    [d], _ = await rig.store.list_deliveries()
    assert d.state == DeliveryState.SENT and d.attempts == 2


async def test_a_send_in_flight_keeps_its_lease(rig: Rig) -> None:
    slow, other = Gate(), Gate()
    other.release.set()
    a = rig.sender(slow)
    b = Rig(rig.store, rig.tmp, now=rig.now).sender(other)
    for started in (a, b):  # both running (their start-up recovery done), nothing due
        await started.run_once()
    await rig.notice_for(Subscriber(email="a@isp.example.jp", carriers=("west",)))
    a.lease = b.lease = 0.3  # renewed every 0.1 s of real time
    round_a = asyncio.create_task(a.run_once())
    await asyncio.wait_for(slow.started.wait(), 5)  # A is sending it now
    rig.now[0] = T0 + timedelta(minutes=10)  # far past A's first lease
    a.renewed.clear()
    await asyncio.wait_for(a.renewed.wait(), 5)  # A renews from the new "now"
    await b.run_once()
    assert other.sent == []  # B sees a live lease: it does not send A's mail
    slow.release.set()
    await asyncio.wait_for(round_a, 5)
    assert len(slow.sent) == 1
    [d], _ = await rig.store.list_deliveries()
    assert d.state == DeliveryState.SENT and d.attempts == 1


async def test_a_broken_round_gives_back_only_its_own_rows(rig: Rig) -> None:
    await rig.notice_for(*(Subscriber(email=f"u{i}@isp.example.jp", carriers=("west",))
                           for i in range(2)))
    mine, _ = await rig.store.claim(T0, 1, claimer="me", lease_until=T0 + timedelta(minutes=2))
    theirs, _ = await rig.store.claim(T0, 1, claimer="them",
                                      lease_until=T0 + timedelta(minutes=2))
    assert len(mine) == len(theirs) == 1
    assert await rig.store.recover_sending(T0, claimer="me") == 1
    states = {d.id: d.state for d in (await rig.store.list_deliveries())[0]}
    assert states[mine[0].delivery.id] == DeliveryState.RETRY
    assert states[theirs[0].delivery.id] == DeliveryState.SENDING


async def test_a_retry_after_an_address_change_goes_to_the_new_address(rig: Rig) -> None:
    """The change came while the mail was in flight (claimed, so not rewritten); the send
    failed and the row waits for its retry: the retry goes to the address as it is now."""
    await rig.notice_for(Subscriber(email="old@isp.example.jp", carriers=("west",)))
    sub = await rig.store.subscriber_by_email("old@isp.example.jp")
    assert sub is not None
    [c], _ = await rig.store.claim(T0, 10, claimer="h:1:x",
                                   lease_until=T0 + timedelta(minutes=2))
    assert c.delivery.email == "old@isp.example.jp"
    assert sub.id is not None
    await rig.store.update_subscriber(sub.id, {"email": "new@isp.example.jp"}, T0)
    await rig.store.mark_retry(c.delivery.id, T0, T0, "throttled")
    [again], _ = await rig.store.claim(T0 + timedelta(seconds=1), 10, claimer="h:1:x",
                                       lease_until=T0 + timedelta(minutes=2))
    assert again.delivery.email == "new@isp.example.jp"
    assert again.subscriber.email == "new@isp.example.jp"
