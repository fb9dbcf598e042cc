"""Types shared by the server modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

StartResponse: TypeAlias = Callable[..., Callable[[bytes], Any]]
WSGIApplication: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
