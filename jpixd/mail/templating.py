"""Templates rendered once per notice, not once per recipient.

Of a notice's mail, only the subscriber's fields differ between recipients. A template
that uses them only as plain output (`{{ subscriber.name }}`: no filter, no test, no
branch on them, no include that could) is rendered once per (notice, change) with a
sentinel in each field's place, and each recipient's text is that with the sentinels
replaced: the same string a full render would give, for a fraction of the cost. A
template that uses the subscriber in any other way (an operator's override may) is
rendered in full for every recipient, as before.

With `tidy` (a renderer's clean-up: control characters out, blank runs folded), what
comes back is tidy(the full render); the cached text is kept tidied and each value is
tidied alone, which gives the same string whenever no value is empty, starts or ends
with a line break or holds a blank line (then a blank run could cross a value's edge,
and the recipient's text is rendered and tidied whole).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from types import SimpleNamespace
from typing import Any

import jinja2
from jinja2 import nodes

SUBSCRIBER = "subscriber"
# Nodes that render other templates with this one's context: the subscriber could be
# used there in any way, so a template that has one is never cached.
_OPENS_OTHERS = (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)


def plain_fields(tree: nodes.Template) -> frozenset[str] | None:
    """The subscriber fields the template only outputs as they are, or None when it uses
    the subscriber in another way."""
    fields: set[str] = set()

    def walk(node: nodes.Node, parent: nodes.Node | None,
             grandparent: nodes.Node | None) -> bool:
        if isinstance(node, _OPENS_OTHERS):
            return False
        if isinstance(node, nodes.Name) and node.name == SUBSCRIBER:
            if not (isinstance(parent, nodes.Getattr) and parent.node is node
                    and isinstance(grandparent, nodes.Output)):
                return False
            fields.add(parent.attr)
        return all(walk(child, node, parent) for child in node.iter_child_nodes())

    return frozenset(fields) if walk(tree, None, None) else None


class PerNotice:
    """One template; `render(key, context, subscriber)` as `tidy(Template.render(…))`
    would, with the subscriber-free part cached under `key` (the notice and change)."""

    def __init__(self, env: jinja2.Environment, name: str, *, size: int = 256,
                 tidy: Callable[[str], str] = str) -> None:
        self.template = env.get_template(name)
        self.fields = plain_fields(env.parse(env.loader.get_source(env, name)[0])) \
            if env.loader is not None else None
        # A fresh token per process: no feed text can contain it by chance or by design.
        # Private-use characters around it: no tidying touches them.
        token = secrets.token_hex(8)
        self._sentinels = {f: f"\ue000{token}:{f}\ue001" for f in self.fields or ()}
        self._tidy = tidy
        self._cache: OrderedDict[Hashable, tuple[str, dict[str, str]]] = OrderedDict()
        self._size = size

    def render(self, key: Hashable, context: Mapping[str, Any], subscriber: Any) -> str:
        if self.fields is None:
            return self._tidy(self.template.render({**context, SUBSCRIBER: subscriber}))
        cached = self._cache.get(key)
        if cached is None:
            probe = SimpleNamespace(**self._sentinels)
            text = self._tidy(self.template.render({**context, SUBSCRIBER: probe}))
            # The fields this notice's text shows (the links only when there are some).
            shown = {f: s for f, s in self._sentinels.items() if s in text}
            cached = self._cache[key] = (text, shown)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        text, shown = cached
        for field, sentinel in shown.items():
            # str(): what Jinja's {{ }} makes of a value when autoescape is off.
            value = self._tidy(str(getattr(subscriber, field)))
            if not value or value[0] == "\n" or value[-1] == "\n" or "\n\n" in value:
                return self._tidy(self.template.render({**context, SUBSCRIBER: subscriber}))
            text = text.replace(sentinel, value)
        return text
