"""Errors of the feed pipeline, each with a message that says what and where."""


class FeedError(Exception):
    """A source could not be polled (network, HTTP status, size, timeout)."""


class ParseError(FeedError):
    """A body is not what its source kind promises (garbage, not a feed, no table)."""


class LayoutChanged(ParseError):
    """A page parses as HTML but not as the layout its source kind knows: NTT redesigned
    it. The poll's result is `layout_changed`; the last good notices are kept."""
