"""The raw mux client the tests use; it lives in benchmarks/ so that the hostile benchmark
(``python -m benchmarks hostile``) can drive a healthy client with it too."""

from benchmarks.rawmux import RawMux, Reply, vars_for

__all__ = ("RawMux", "Reply", "vars_for")
