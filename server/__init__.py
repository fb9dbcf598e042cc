"""muxwsgi.server: the WSGI server (master, workers, protocol handlers)."""
