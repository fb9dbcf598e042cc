"""Shared test configuration.

Hypothesis profiles: ``ci`` (the default, a few seconds per property) and ``long`` for a
soak run, e.g.::

    HYPOTHESIS_PROFILE=long pytest tests/core/test_fuzz.py tests/core/test_stateful.py
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "long",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
