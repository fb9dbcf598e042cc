"""The async client: the source from which ``client/_sync`` is generated (scripts/unasync.py)."""
