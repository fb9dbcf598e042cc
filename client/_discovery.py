"""Where a host name's endpoints come from: the resolver hook and what it may answer.

By default a name is resolved with getaddrinfo (DNS, /etc/hosts). A client may be given its own
resolver instead: a function of the name and port that returns the addresses to balance over,
from Consul, a file, a Kubernetes Endpoints watch or anything else (the library depends on
none of them). ``AsyncClient`` takes an async function, ``Client`` a plain one. It is called
for every host name of the client's URLs (not for IP addresses or unix sockets), at the first
request, every ``resolve_interval``, and after a connection fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable

from ._models import Endpoint

__all__ = ("Address", "AsyncResolver", "Resolver", "endpoints_of")

#: One answer of a resolver: an address (the URL's port), or an (address, port) pair.
Address = str | tuple[str, int]
#: ``async def resolve(host: str, port: int) -> Iterable[Address]`` (for AsyncClient).
AsyncResolver = Callable[[str, int], Awaitable[Iterable[Address]]]
#: ``def resolve(host: str, port: int) -> Iterable[Address]`` (for Client).
Resolver = Callable[[str, int], Iterable[Address]]


def endpoints_of(target: Endpoint, answer: Iterable[Address]) -> list[Endpoint]:
    """The endpoints a resolver's answer for ``target`` names, in its order, without repeats.

    Raises ValueError for an answer that is not an address or an (address, port) pair.
    """
    found: list[Endpoint] = []
    for item in answer:
        if isinstance(item, str) and item:
            endpoint = dataclasses.replace(target, address=item)
        elif (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], str)
            and item[0]
            and isinstance(item[1], int)
            and 0 < item[1] < 65536
        ):
            endpoint = dataclasses.replace(target, address=item[0], port=item[1])
        else:
            raise ValueError(
                f"the resolver for {target.host} answered {item!r}: expected an address "
                "or an (address, port) pair"
            )
        if endpoint not in found:
            found.append(endpoint)
    return found
