"""The dead-code allowlist stays true: every name in scripts/vulture_allowlist.py exists.

vulture (run by .ci/run) counts a name as used once the allowlist names it; an entry left
behind by a rename would let a new dead method of the same name pass unseen.
"""

from __future__ import annotations

import runpy
from pathlib import Path

ALLOWLIST = Path(__file__).resolve().parents[1] / "scripts" / "vulture_allowlist.py"


def test_every_allowlisted_name_exists() -> None:
    # Each line of the allowlist is an attribute lookup: a stale one raises AttributeError.
    runpy.run_path(str(ALLOWLIST))
