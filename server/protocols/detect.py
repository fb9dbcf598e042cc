"""The protocol every accepted connection starts with: it reads the first byte and hands the
connection to the mux, classic uwsgi or HTTP/1.1 protocol (PROTOCOL.md §2)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence

from muxwsgi import ConnectionConfig, Protocol, describe_peer_bytes, detect_protocol

from .base import BaseProtocol, ServerContext
from .http import HttpProtocol
from .mux import MuxProtocol
from .uwsgi import UwsgiProtocol

__all__ = ("DetectProtocol", "parse_allow_from")

log = logging.getLogger("muxwsgi.error")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_from(entries: Sequence[str]) -> list[Network] | None:
    """The allow-list as networks; None means everyone ("*")."""
    if not entries or "*" in entries:
        return None
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


class DetectProtocol(BaseProtocol):
    kind = "detect"

    def __init__(
        self, ctx: ServerContext, core_config: ConnectionConfig, allowed: list[Network] | None
    ) -> None:
        super().__init__(ctx)
        self._core_config = core_config
        self._allowed = allowed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self.ctx.connections) > self.config.max_connections:
            log.warning(
                "refusing a connection from %s: max-connections (%d) reached",
                self.peer,
                self.config.max_connections,
            )
            self.close()
            return
        if self._allowed is not None and self.peer != "unix":
            address = ipaddress.ip_address(self.peer.rpartition(":")[0].strip("[]"))
            if not any(address in network for network in self._allowed):
                log.warning("refusing a connection from %s: not in allow-from", self.peer)
                self.close()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        protocol = detect_protocol(data)
        chosen: BaseProtocol
        if protocol is Protocol.MUX:
            chosen = MuxProtocol(self.ctx, self._core_config)
        elif protocol is Protocol.UWSGI:
            chosen = UwsgiProtocol(self.ctx)
        elif protocol is Protocol.HTTP:
            chosen = HttpProtocol(self.ctx)
        else:
            log.warning(
                "closing a connection from %s: it sent %s, which is neither muxwsgi, "
                "classic uwsgi nor HTTP/1.1",
                self.peer,
                describe_peer_bytes(data),
            )
            self.close()
            return
        transport = self.transport
        assert transport is not None
        self.ctx.connections.discard(self)
        chosen._peer = self._peer  # if it was looked up already
        transport.set_protocol(chosen)
        chosen.connection_made(transport)
        if self.drain_started:
            chosen.shutdown()  # serve what arrived, nothing after it
        chosen.data_received(data)

    def check_timeouts(self, now: float) -> None:
        if self.closed:
            self.linger_expired(now)
            return
        if self.drain_expired(now):
            return
        if now - self.opened > self.config.header_timeout:
            log.info(
                "closing a connection from %s: nothing received in %gs",
                self.peer,
                self.config.header_timeout,
            )
            self.close()
