"""Backlog (Nulab) issues for bounce cases and guard pauses: the API client, the issue
texts and the reconciler loop that opens, comments on and closes them."""
