"""Listening sockets: parsed from ``--bind`` values and bound once by the master, or passed by
the service manager (systemd socket activation); inherited by every worker the master forks,
and never closed by a reload. And :class:`Acceptor`, which accepts on one from a worker's
event loop while the worker holds no more than its share of the connections."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
import stat
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

from .scoreboard import Balance

__all__ = (
    "LISTEN_FDS_START",
    "Acceptor",
    "BindError",
    "Listener",
    "activated",
    "bind",
    "parse_bind",
)

log = logging.getLogger("muxwsgi.error")

#: The first descriptor a service manager passes (sd_listen_fds(3)).
LISTEN_FDS_START = 3
#: How long a worker holding more than its share stops reading the socket before it looks
#: again (with the figures of the moment: the others' may have grown meanwhile).
YIELD_DELAY = 0.002
#: Looks in a row that found a connection waiting, after which the worker takes one whatever
#: its share: the others are all busy, stuck or gone.
MAX_YIELDS = 10
#: Connections accepted in one wake-up at most: then the loop serves what it has.
ACCEPT_BATCH = 64
#: Seconds without accepting after the process ran out of descriptors or memory (asyncio's).
ACCEPT_RETRY_DELAY = 1.0


class BindError(OSError):
    """A --bind address cannot be used; the message says why, in words."""


@dataclass(frozen=True)
class Address:
    family: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class Listener:
    address: Address
    sock: socket.socket
    #: Passed by the service manager, which owns it: a unix socket's file is not ours to
    #: remove, and the socket stays open in the manager across our restarts.
    activated: bool = False

    def close(self) -> None:
        self.sock.close()


def parse_bind(spec: str) -> Address:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``unix:PATH``. Raises BindError for anything else."""
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise BindError(f"--bind {spec!r}: a unix socket needs a path")
        return Address("unix", path=os.path.abspath(path))
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BindError(f"--bind {spec!r}: expected HOST:PORT, [IPV6]:PORT or unix:PATH")
    host = host.strip("[]") or "0.0.0.0"
    return Address("tcp", host=host, port=int(port))


def bind(spec: str, *, backlog: int, unix_mode: int) -> Listener:
    """Bind and listen. The socket is inheritable so that forked workers share it."""
    address = parse_bind(spec)
    sock = _bind_unix(address, unix_mode) if address.family == "unix" else _bind_tcp(address)
    sock.listen(backlog)
    sock.set_inheritable(True)
    if address.family == "tcp" and address.port == 0:
        host, port = sock.getsockname()[:2]
        address = Address("tcp", host=host, port=port)
    return Listener(address, sock)


def activated(environ: MutableMapping[str, str] = os.environ) -> list[Listener]:
    """The listening sockets a service manager passed to this process (systemd socket
    activation, as sd_listen_fds(3) reads them): ``LISTEN_FDS`` descriptors from
    LISTEN_FDS_START on, if ``LISTEN_PID`` is this process; [] if there are none.

    Removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from ``environ`` once they were meant for
    this process, so that workers, and programs they start, do not take the sockets for their
    own. Raises BindError if a descriptor is not a listening stream socket (TCP or unix).
    """
    if environ.get("LISTEN_PID", "") != str(os.getpid()):
        return []
    count = environ.get("LISTEN_FDS", "0")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if not count.isdigit():
        raise BindError(f"LISTEN_FDS={count!r}: expected a number of sockets")
    return [_adopt(fd) for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count))]


def _adopt(fd: int) -> Listener:
    what = f"descriptor {fd} passed by the service manager (LISTEN_FDS)"
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"{what} is not a socket: {exc.strerror}") from None
    families = {socket.AF_INET: "tcp", socket.AF_INET6: "tcp", socket.AF_UNIX: "unix"}
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.type != socket.SOCK_STREAM or sock.family not in families or not listening:
        sock.detach()  # not ours to close
        raise BindError(
            f"{what} is not a listening TCP or unix stream socket (ListenStream= in the "
            ".socket unit, with Accept=no)"
        )
    sock.set_inheritable(True)
    name = sock.getsockname()
    if families[sock.family] == "unix":
        # An abstract socket's name is bytes starting with NUL; shown with @, as ss does.
        path = name if isinstance(name, str) else "@" + name[1:].decode(errors="replace")
        address = Address("unix", path=path)
    else:
        address = Address("tcp", host=name[0], port=name[1])
    return Listener(address, sock, activated=True)


def _bind_tcp(address: Address) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(f"cannot resolve {address}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                f"{address} is already in use (another server is running there?): stop it, "
                "or choose another address with --bind"
            ) from None
        if exc.errno == errno.EACCES:
            raise BindError(
                f"permission denied binding {address} (ports below 1024 need root)"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise BindError(f"{address}: no such local address on this machine") from None
        raise BindError(f"cannot bind {address}: {exc.strerror}") from None
    return sock


def _bind_unix(address: Address, mode: int) -> socket.socket:
    path = address.path
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # a stale socket file from a previous run
            else:
                raise BindError(f"{address} is in use by a running server")
            finally:
                probe.close()
        else:
            raise BindError(f"{address}: {path} exists and is not a socket")
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bind with a restrictive umask so that the socket is never briefly wider than `mode`.
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EACCES:
            directory = os.path.dirname(path)
            raise BindError(
                f"permission denied creating {path}: {_user()} cannot write to {directory} "
                "(create the directory for this user, e.g. systemd's RuntimeDirectory=, or "
                "run as a user who can)"
            ) from None
        if exc.errno == errno.ENOENT:
            raise BindError(
                f"{address}: directory {os.path.dirname(path)} does not exist"
            ) from None
        raise BindError(f"cannot bind {address}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    return sock


def _user() -> str:
    """This process's user, for messages: ``user NAME (uid N)``."""
    uid = os.geteuid()
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


class Acceptor:
    """Accepts connections on ``sock`` from ``loop`` and serves each with a protocol from
    ``protocol_factory``, spreading long-lived connections evenly across the workers.

    Every worker waits on the one shared socket, and the one that wakes first takes a whole
    burst of connections at once (a proxy filling its keep-alive pool, a client opening its
    pool): the others stay idle for as long as those connections live. So an acceptor reads
    the socket itself and takes one connection at a time, and only while ``balance`` says
    that this worker holds no more than its share: ``held()`` connections, plus those
    accepted whose protocol is not made yet. A worker over its share stops reading for
    YIELD_DELAY, so that the others take the connection, then looks again; after MAX_YIELDS
    looks in a row with a connection waiting, it takes one (the others are busy or stuck).

    Taking connections one at a time costs the loop more per connection than its own
    server (``loop.create_server``), and it buys nothing when connections are short-lived:
    a spread that is uneven now is gone within the second. So :meth:`tick`, once a second,
    hands the socket to the loop's own server while more connections were accepted in the
    last second than the worker holds (nginx's ``uwsgi_pass``, a connection per request),
    and takes it back once they are fewer.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        balance: Balance,
        held: Callable[[], int],
        *,
        backlog: int,
    ) -> None:
        # As create_server does: accept() must fail rather than wait when another worker
        # took the connection (uvloop's add_reader makes it so; asyncio's does not).
        sock.setblocking(False)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol_factory = protocol_factory
        self._balance = balance
        self._held = held
        self._backlog = backlog
        self._pending = 0  # accepted, protocol not made yet
        self._accepted = 0  # since the last tick
        self._yields = 0  # looks in a row that left a waiting connection to the others
        self._waiting = select.poll()
        self._waiting.register(self._fd, select.POLLIN)
        self._timer: asyncio.TimerHandle | None = None
        self._reading = False
        #: The loop's own server, on a duplicate of the socket, while connections churn.
        self._server: asyncio.AbstractServer | None = None
        self.direct = False
        self.closed = False

    def start(self) -> None:
        """Publish this worker's figure and start reading the socket."""
        self._balance.over_share(self._held())
        self._read()

    def tick(self) -> None:
        """Once a second: publish the figure again (with the connections closed since the
        last accept), and choose who accepts for the next second."""
        if self.closed:
            return
        held = self._held() + self._pending
        self._balance.over_share(held)
        churning = self._accepted > held
        self._accepted = 0
        if churning and not self.direct:
            log.debug("connections churn: the event loop accepts on its own")
            self.direct = True
            self._stop_reading()
            self._loop.create_task(self._serve_directly())
        elif self.direct and not churning:
            log.debug("connections last: accepting in balance with the other workers")
            self.direct = False
            self._close_server()
            self._read()

    def close(self) -> None:
        """Stop accepting and close this process's copies of the socket, as a server's
        close() does: once the master closed its own, new connections are refused rather
        than queued for nobody. Connections already accepted are served."""
        if self.closed:
            return
        self.closed = True
        self._stop_reading()
        self._close_server()
        self._balance.withdraw()
        self._sock.close()

    # ---------------------------------------------------------------- one at a time

    def _read(self) -> None:
        if not self._reading:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_readable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            over = self._balance.over_share(self._held() + self._pending)
            if over and self._yields < MAX_YIELDS:
                self._yields += 1
                self._pause(YIELD_DELAY)
                return
            self._yields = 0
            if not self._accept():
                return

    def _pause(self, delay: float) -> None:
        self._stop_reading()
        self._timer = self._loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self._timer = None
        if not self._waiting.poll(0):
            self._yields = 0  # the others took what came
        self._read()

    def _accept(self) -> bool:
        """Accept one connection and start serving it; False if none waits (or accepting
        failed, and is paused)."""
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError as exc:
            # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) or worse: the
            # connections stay queued for a worker that can take them, or for later.
            log.error("cannot accept: %s; retrying in %gs", exc, ACCEPT_RETRY_DELAY)
            self._pause(ACCEPT_RETRY_DELAY)
            return False
        self._pending += 1
        self._accepted += 1
        self._loop.create_task(self._serve(conn))
        return True

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._protocol_factory, conn)
        except OSError as exc:  # reset before its transport was made
            log.debug("connection lost before it was served: %s", exc)
            conn.close()
        finally:
            self._pending -= 1

    # ---------------------------------------------------------------- the loop's own server

    async def _serve_directly(self) -> None:
        try:
            server = await self._loop.create_server(
                self._counted, sock=self._sock.dup(), backlog=self._backlog
            )
        except OSError as exc:
            log.error("cannot serve the socket from the event loop: %s", exc)
            self.direct = False
            if not self.closed:
                self._read()
            return
        if not self.direct or self.closed or self._server is not None:
            server.close()  # taken back (or stopped) meanwhile
        else:
            self._server = server

    def _counted(self) -> asyncio.BaseProtocol:
        self._accepted += 1
        return self._protocol_factory()

    def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()  # and its duplicate of the socket
            self._server = None
