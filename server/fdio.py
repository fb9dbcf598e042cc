"""System calls that never wait, made without letting go of the GIL.

CPython releases the GIL around every system call it makes for Python code, which is right
for one that may block. A write to a non-blocking socket, or the close of one without
SO_LINGER, returns at once; releasing the GIL around it only hands the GIL to another thread
that waits for it (the event loop, another application thread), and this thread then waits
for the GIL to come back: futex calls and context switches on each side. The application
thread that writes a classic response and closes its socket (protocols/uwsgi.py) makes
these calls through libc directly with ctypes' PyDLL, which keeps the GIL.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Final

__all__ = ("close", "dup", "write")

# Final: compiled (setup.py), these are read from C statics, not the module dict, per call.
_libc: Final = ctypes.PyDLL(None, use_errno=True)
# Two prototypes of write(2): from the start of a bytes object (passed as it is), and from an
# address inside one (what is left after a partial write, without copying it).
_write: Final[Any] = _libc.write
_write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
_write.restype = ctypes.c_ssize_t
_write_rest: Final[Any] = _libc["write"]  # a second function object: its own prototype
_write_rest.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_write_rest.restype = ctypes.c_ssize_t
_close: Final[Any] = _libc.close
_close.argtypes = (ctypes.c_int,)
_close.restype = ctypes.c_int
_dup: Final[Any] = _libc.fcntl
_dup.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
_dup.restype = ctypes.c_int
_F_DUPFD_CLOEXEC: Final = 1030


def _error() -> OSError:
    errno = ctypes.get_errno()
    if errno in (11, 115):  # EAGAIN / EWOULDBLOCK, EINPROGRESS
        return BlockingIOError(errno, os.strerror(errno))
    return OSError(errno, os.strerror(errno))


def write(fd: int, data: bytes, offset: int) -> int:
    """Write ``data[offset:]`` to the non-blocking ``fd``; the number of bytes written.
    Raises BlockingIOError when the socket has no room, OSError on any other failure."""
    sent: int
    if not offset:
        sent = _write(fd, data, len(data))
    else:
        address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
        assert address is not None
        sent = _write_rest(fd, address + offset, len(data) - offset)
    if sent < 0:
        raise _error()
    return sent


def close(fd: int) -> None:
    """Close ``fd`` (a socket without SO_LINGER: it does not wait)."""
    if _close(fd) < 0:
        raise _error()


def dup(fd: int) -> int:
    """A close-on-exec duplicate of ``fd``."""
    new: int = _dup(fd, _F_DUPFD_CLOEXEC, 0)
    if new < 0:
        raise _error()
    return new
