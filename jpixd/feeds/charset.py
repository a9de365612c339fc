"""Bytes to text for feeds and pages: UTF-8, Shift_JIS (cp932) or EUC-JP, taken from the
BOM, the HTTP header, the XML/HTML declaration, or detection, in that order. A declared
charset that does not decode is not trusted (pages do lie)."""

from __future__ import annotations

import codecs
import re

from jpixd.feeds.errors import ParseError

_ALIASES = {
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "windows-31j": "cp932", "ms932": "cp932", "cp932": "cp932",
    "euc-jp": "euc_jp", "euc_jp": "euc_jp", "x-euc-jp": "euc_jp", "eucjp": "euc_jp",
    "utf-8": "utf-8", "utf8": "utf-8", "iso-2022-jp": "iso2022_jp", "us-ascii": "utf-8",
}
_NEVER_JAPANESE = frozenset({"latin-1", "iso8859-1", "cp1252", "ascii"})
_XML_DECL = re.compile(rb"<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9_.:-]+)[\"']", re.I)
_META = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)


def codec_for(name: str | None) -> str | None:
    if not name:
        return None
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        info = codecs.lookup(key)
    except (LookupError, ValueError):
        return None
    # Only text encodings: "base64" or "zlib" are codecs too, and a declared charset
    # of ISO-8859-1 on a Japanese page decodes anything into mojibake.
    if not getattr(info, "_is_text_encoding", True) or info.name in _NEVER_JAPANESE:
        return None
    return info.name


def declared(body: bytes) -> str | None:
    head = body[:4096]
    m = _XML_DECL.search(head) or _META.search(head)
    return codec_for(m.group(1).decode("ascii")) if m else None


def japanese_score(text: str) -> int:
    """How Japanese a decoding looks: kana and common kanji count, odd characters cost."""
    good = sum(1 for ch in text if "\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff")
    odd = sum(1 for ch in text if "\uff61" <= ch <= "\uff9f" or "\ue000" <= ch <= "\uf8ff"
              or "\u0080" <= ch <= "\u00ff")
    return good - 3 * odd


def decode(body: bytes, header_charset: str | None = None) -> tuple[str, str]:
    """(text, codec used). ParseError when nothing decodes cleanly."""
    if body.startswith(codecs.BOM_UTF8):
        try:
            return body[3:].decode("utf-8"), "utf-8"
        except UnicodeDecodeError as exc:
            raise ParseError(f"starts with a UTF-8 byte order mark but is not UTF-8 "
                             f"(byte {exc.start + 3})") from None
    for candidate in (codec_for(header_charset), declared(body)):
        if candidate:
            try:
                return body.decode(candidate), candidate
            except (UnicodeError, LookupError, ValueError):
                continue  # "undefined", a codec that is no text codec, bytes that lie
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    decodings = []
    for codec in ("cp932", "euc_jp"):
        try:
            text = body.decode(codec)
        except UnicodeDecodeError:
            continue
        decodings.append((japanese_score(text), codec, text))
    if not decodings:
        raise ParseError("the body is neither UTF-8, Shift_JIS nor EUC-JP")
    _, codec, text = max(decodings)
    return text, codec
