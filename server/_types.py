"""Types shared by the server modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

#: PEP 3333 ``start_response(status, headers, exc_info=None)``, which returns ``write(data)``.
#: ``...``: the optional third argument cannot be spelled with Callable.
StartResponse: TypeAlias = Callable[..., Callable[[bytes], Any]]
#: A PEP 3333 application: ``app(environ, start_response)`` returns an iterable of bytes.
WSGIApplication: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
