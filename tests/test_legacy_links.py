"""The old system's unsubscribe links keep working after the switch (issue 23): a mail it
sent before carries its own link form; jpixd answers it with the same one-click page
(a GET never unsubscribes), by the address or by the old system's id mapped at import."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from jpixd.config import ConfigError
from jpixd.model import SubscriberStatus
from tests.webharness import site, web_config


@pytest.mark.parametrize(("by", "value"), [("email", "Legacy%2Buser@ISP.example.jp"),
                                           ("legacy_id", "OLD-4711")])
async def test_an_old_unsubscribe_link_offers_the_same_one_click(
        tmp_path: Path, by: str, value: str) -> None:
    path = "/cgi-bin/mail/unsub.cgi"
    async with site(tmp_path, web={"legacy_unsubscribe_path": path,
                                   "legacy_unsubscribe_param": "u",
                                   "legacy_unsubscribe_by": by}) as s:
        (tmp_path / "old.csv").write_text(
            "email,legacy_id\nlegacy+user@isp.example.jp,OLD-4711\nother@isp.example.jp,OLD-1\n")
        from jpixd.subscribers import parse_csv
        rows, errors = parse_csv((tmp_path / "old.csv").read_bytes())
        assert not errors
        await s.rt.store.import_subscribers([(r.subscriber, r.columns) for r in rows],
                                            s.rt.clock())
        url = f"{s.public}{path}?u={value}"
        async with aiohttp.ClientSession() as client:
            async with client.get(url) as r:  # what a link scanner does: nothing
                text = await r.text()
                assert r.status == 200 and "配信を停止する" in text
                assert "legacy+user@isp.example.jp" in text
            sub = await s.rt.store.subscriber_by_email("legacy+user@isp.example.jp")
            assert sub is not None and sub.status == SubscriberStatus.ACTIVE
            async with client.post(url, data={}) as r:
                assert r.status == 400  # not RFC 8058's body
            async with client.post(url, data={"List-Unsubscribe": "One-Click"}) as r:
                assert r.status == 200 and "配信を停止しました" in await r.text()
            async with client.get(f"{s.public}{path}?u=nobody") as r:
                assert r.status == 400  # the same answer as any bad link
        sub = await s.rt.store.subscriber_by_email("legacy+user@isp.example.jp")
        assert sub is not None and sub.status == SubscriberStatus.UNSUBSCRIBED
        assert sub.id is not None and sub.legacy_id == "OLD-4711"
        assert (await s.rt.store.subscriber_changes(sub.id))[0].actor == "legacy-link"
        other = await s.rt.store.subscriber_by_email("other@isp.example.jp")
        assert other is not None and other.status == SubscriberStatus.ACTIVE


def test_a_legacy_path_may_not_take_over_one_of_ours(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="legacy_unsubscribe_path"):
        web_config(tmp_path, web={"legacy_unsubscribe_path": "/unsubscribe"})
    with pytest.raises(ConfigError, match="legacy_unsubscribe_by"):
        web_config(tmp_path, web={"legacy_unsubscribe_path": "/old", "legacy_unsubscribe_by":
                                  "phone"})
