"""The corpus of NTT-shaped pages (tests/corpus/): each page's extraction is checked in as
a golden file, so that a parser change shows its diff. Regenerate after a deliberate
change with `JPIXD_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_corpus.py`, then read the
diff: a golden file is only as right as the person who looked at it."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from jpixd.feeds.charset import decode
from jpixd.feeds.extract import Extraction, extract
from jpixd.feeds.normalise import classify
from jpixd.mail.render import Renderer
from jpixd.model import Change, NoticeStatus, Subscriber, notice_from_json
from tests.conftest import make_config

CORPUS = Path(__file__).parent / "corpus"
CASES: list[dict[str, Any]] = json.loads((CORPUS / "index.json").read_text())["cases"]
# Statuses that end a failure or a piece of work: they must be stated plainly.
ENDING = {"recovered", "completed", "cancelled"}


async def load(url: str) -> str:
    """Detail pages live beside the list in the corpus, under their own names."""
    name = Path(urlsplit(url).path).name
    return decode((CORPUS / name).read_bytes())[0]


async def extraction(case: dict[str, Any]) -> Extraction:
    text, _ = decode((CORPUS / case["page"]).read_bytes())
    url = f"https://corpus.example/{case['page']}"
    return await extract(case["kind"], text, url=url, now=datetime.fromisoformat(case["now"]),
                         load=load)


def test_the_corpus_is_large_enough() -> None:
    pages = [p for p in CORPUS.iterdir() if p.suffix in (".html", ".xml", ".json")
             and p.name != "index.json"]
    assert len(pages) >= 25
    charsets = {b"Shift_JIS", b"EUC-JP", b"UTF-8"}
    assert all(any(c in p.read_bytes()[:300] for p in pages) for c in charsets)


@pytest.mark.parametrize("case", CASES, ids=[c["page"] for c in CASES])
async def test_golden(case: dict[str, Any]) -> None:
    got: dict[str, Any] = (await extraction(case)).to_json()
    golden = CORPUS / "golden" / (case["page"] + ".json")
    if os.environ.get("JPIXD_UPDATE_GOLDEN"):
        golden.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n")
    assert got == json.loads(golden.read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["page"] for c in CASES])
async def test_no_page_ends_a_notice_it_does_not_plainly_end(case: dict[str, Any],
                                                           tmp_path: Path) -> None:
    """An ending status comes with a plain statement of it; and no failure on a page
    whose outage is not wholly over (`not_over` in index.json, set by a person reading
    the page) is ever mailed as 【回復】, whatever it was before."""
    renderer = Renderer(make_config(tmp_path).mail, b"key" * 11)
    someone = Subscriber(email="noc@isp.example.jp", id=1)
    for n in (await extraction(case)).notices:
        if n["status"] in ENDING:
            assert n["status_stated"], n
        if not case.get("not_over") or n["kind"] != "failure":
            continue
        assert n["status"] != "recovered", n
        new = notice_from_json({**n, "source": "s", "external_id": n["key"]})
        for before in ("occurred", "partially_recovered"):
            old = replace(new, status=NoticeStatus(before), body="")
            subject, body = renderer.texts(new, classify(old, new), someone)
            assert "【回復】" not in subject and "回復いたしました" not in body


@pytest.mark.parametrize("case", CASES, ids=[c["page"] for c in CASES])
async def test_a_mail_of_every_corpus_notice_breaks_lines_between_words(
        case: dict[str, Any], tmp_path: Path) -> None:
    """Issue 25, part 4: NTT's own texts, mailed, break at phrase boundaries: no line
    wider than a phone shows (WRAP_COLUMNS; a URL's own line apart), none starting with a
    character a Japanese line must not start with, every locality and service whole."""
    import unicodedata

    from jpixd.mail.render import _NO_LINE_START, WRAP_COLUMNS

    renderer = Renderer(make_config(tmp_path).mail, b"key" * 11)
    someone = Subscriber(email="noc@isp.example.jp", id=1, name="運用 太郎")
    for n in (await extraction(case)).notices:
        notice = notice_from_json({**n, "source": "s", "external_id": n["key"]})
        body = renderer.texts(notice, Change.NEW, someone)[1]
        lines = body.splitlines()
        for line in lines:
            if "://" not in line:
                assert sum(2 if unicodedata.east_asian_width(c) in "WF" else 1
                           for c in line) <= WRAP_COLUMNS, line
            assert not line or line[0] not in _NO_LINE_START, line
        for word in (*notice.localities, *notice.services):
            if len(word) <= 30:
                assert any(word in line for line in lines), (word, body)
