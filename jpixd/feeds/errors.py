"""Errors of the feed pipeline, each with a message that says what and where."""


class FeedError(Exception):
    """A source could not be polled (network, HTTP status, size, timeout)."""


class ParseError(FeedError):
    """A body is not what its source kind promises (garbage, not a feed, no table)."""
