"""Listening sockets: parsed from ``--bind`` values and bound once by the master, or passed by
the service manager (systemd socket activation); inherited by every worker the master forks,
and never closed by a reload."""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import MutableMapping
from dataclasses import dataclass

__all__ = ("LISTEN_FDS_START", "BindError", "Listener", "activated", "bind", "parse_bind")

#: The first descriptor a service manager passes (sd_listen_fds(3)).
LISTEN_FDS_START = 3


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
