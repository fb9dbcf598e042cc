"""Exceptions the server raises into applications.

A module of its own because it is never compiled: an exception class derived from a builtin
exception other than ``Exception`` (here ``OSError``) cannot be a compiled (mypyc) class, and
the per-request modules that raise it are compiled.
"""

from __future__ import annotations

__all__ = ("ClientDisconnected",)


class ClientDisconnected(OSError):
    """Raised in the application thread by ``wsgi.input`` (and by the response path) when the
    client reset the stream, closed the connection, or stopped sending the body in time."""
