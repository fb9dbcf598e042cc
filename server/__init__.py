"""muxwsgi.server: the WSGI server (master, workers, protocol handlers).

Its interface is the command line, ``muxwsgi serve``: no name here is public API.
"""

__all__ = ()
