"""One module per protocol spoken on a muxwsgi socket; :mod:`.detect` picks one per connection."""

__all__ = ()
