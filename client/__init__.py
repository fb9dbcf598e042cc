"""muxwsgi.client: sync and async clients for mux and classic uwsgi peers."""
