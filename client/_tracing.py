"""W3C Trace Context (https://www.w3.org/TR/trace-context/) for the client's ``trace`` setting:
a request that carries no ``traceparent`` header gets a new one, so that the server's access
log and the application (``environ["HTTP_TRACEPARENT"]``) can tie the request to its caller.
And the choice the ``opentelemetry`` setting makes: spans (client/_otel.py) or none."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Endpoint
    from ._otel import ClientSpans

__all__ = ("TRACEPARENT_VAR", "client_spans", "new_traceparent")

#: The uwsgi var a ``traceparent`` header becomes.
TRACEPARENT_VAR = "HTTP_TRACEPARENT"

_bits = random.getrandbits


def new_traceparent() -> str:
    """A version-00 traceparent for a new trace, sampled: random trace and parent ids (never
    all zeros, which the format reserves for "invalid")."""
    trace_id = _bits(128) or 1
    parent_id = _bits(64) or 1
    return f"00-{trace_id:032x}-{parent_id:016x}-01"


def client_spans(setting: bool | str, endpoints: list[Endpoint]) -> ClientSpans | None:
    """The spans of a client whose ``opentelemetry`` setting is ``setting``, or None: it is
    False, or "auto" and opentelemetry-api is not installed. Raises ValueError if it is True
    and the API is not installed."""
    if setting is False:
        return None
    try:
        from ._otel import ClientSpans
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        if setting is True:
            raise ValueError(
                "opentelemetry=True: opentelemetry-api is not installed "
                "(pip install 'muxwsgi[otel]')"
            ) from exc
        return None
    return ClientSpans(endpoints)
