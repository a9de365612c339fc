"""Templates rendered once per notice, not once per recipient.

Of a notice's mail, only the subscriber's fields differ between recipients. A template
that uses them only as plain output (`{{ subscriber.name }}`: no filter, no test, no
branch on them, no include that could) is rendered once per (notice, change) with a
sentinel in each field's place, and each recipient's text is that with the sentinels
replaced: the same string a full render would give, for a fraction of the cost. A
template that uses the subscriber in any other way (an operator's override may) is
rendered in full for every recipient, as before.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Hashable, Mapping
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
    """One template; `render(key, context, subscriber)` as `Template.render` would, with
    the subscriber-free part cached under `key` (the notice and change)."""

    def __init__(self, env: jinja2.Environment, name: str, *, size: int = 256) -> None:
        self.template = env.get_template(name)
        self.fields = plain_fields(env.parse(env.loader.get_source(env, name)[0])) \
            if env.loader is not None else None
        # A fresh token per process: no feed text can contain it by chance or by design.
        token = secrets.token_hex(8)
        self._sentinels = {f: f"\x00{token}:{f}\x00" for f in self.fields or ()}
        self._cache: OrderedDict[Hashable, str] = OrderedDict()
        self._size = size

    def render(self, key: Hashable, context: Mapping[str, Any], subscriber: Any) -> str:
        if self.fields is None:
            return self.template.render({**context, SUBSCRIBER: subscriber})
        text = self._cache.get(key)
        if text is None:
            probe = SimpleNamespace(**self._sentinels)
            text = self.template.render({**context, SUBSCRIBER: probe})
            self._cache[key] = text
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        for field, sentinel in self._sentinels.items():
            # str(): what Jinja's {{ }} makes of a value when autoescape is off.
            text = text.replace(sentinel, str(getattr(subscriber, field)))
        return text
