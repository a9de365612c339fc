"""Text out of HTML, with line breaks where the layout has them."""

from __future__ import annotations

import re

import lxml.html
from lxml import etree

_BLOCK = {"p", "div", "br", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "dt",
          "dd", "section", "article", "ul", "ol"}


def parse_document(text: str) -> lxml.html.HtmlElement:
    """An HTML document; lxml is lenient, so only an empty body is an error here."""
    # lxml refuses str input with an encoding declaration; the text is already decoded.
    cleaned = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    if not cleaned.strip():
        raise ValueError("empty document")
    return lxml.html.document_fromstring(cleaned)


def element_text(el: etree._Element) -> str:
    """The element's text; block elements and <br> become line breaks."""
    parts: list[str] = []

    def walk(node: etree._Element) -> None:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in ("script", "style"):
            if node.tail:
                parts.append(node.tail)
            return
        if tag in _BLOCK:
            parts.append("\n")
        if node.text and tag not in ("script", "style"):
            parts.append(node.text)
        for child in node:
            walk(child)
        if tag in _BLOCK:
            parts.append("\n")
        if node.tail and node is not el:
            parts.append(node.tail)

    walk(el)
    text = "".join(parts)
    lines = [re.sub(r"[ \t\r\u00a0]+", " ", ln).strip() for ln in text.split("\n")]
    return "\n".join(ln for ln in lines if ln)


def fragment_text(html: str) -> str:
    """Text of an HTML fragment (an RSS description)."""
    if not html.strip():
        return ""
    if "<" not in html:
        return html.strip()
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):
        return re.sub(r"<[^>]+>", " ", html).strip()
    return element_text(root)
