"""W3C Trace Context (https://www.w3.org/TR/trace-context/) for the client's ``trace`` setting:
a request that carries no ``traceparent`` header gets a new one, so that the server's access
log and the application (``environ["HTTP_TRACEPARENT"]``) can tie the request to its caller."""

from __future__ import annotations

import random

__all__ = ("TRACEPARENT_VAR", "new_traceparent")

#: The uwsgi var a ``traceparent`` header becomes.
TRACEPARENT_VAR = "HTTP_TRACEPARENT"

_bits = random.getrandbits


def new_traceparent() -> str:
    """A version-00 traceparent for a new trace, sampled: random trace and parent ids (never
    all zeros, which the format reserves for "invalid")."""
    trace_id = _bits(128) or 1
    parent_id = _bits(64) or 1
    return f"00-{trace_id:032x}-{parent_id:016x}-01"
