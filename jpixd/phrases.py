"""Japanese text cut into phrases (BudouX's model), for where a line may break: the
mail's wrap (jpixd.mail.render) and the pages' <wbr> (jpixd.web.pages). Pure."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _parser() -> Any:
    import budoux  # loaded on first use: a daemon that sends nothing never needs it

    return budoux.load_default_japanese_parser()


def split(text: str) -> list[str]:
    """The phrases of `text`, in order; joined, they are `text` again."""
    return list(_parser().parse(text)) if text else []
