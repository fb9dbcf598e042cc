"""Every requirement of PROTOCOL.md is cited by at least one test (or is listed below with the
issue that will cover it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Requirements that only a server or a client can show; each names where its test will live.
#: Entries leave this table when their tests land (the test below fails on a stale entry).
PENDING: dict[str, str] = {}


def requirement_ids() -> list[str]:
    text = (ROOT / "PROTOCOL.md").read_text()
    return re.findall(r"\*\*\[([A-Z]-\d+)\]\*\*", text)


def cited_ids() -> set[str]:
    cited: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        if path.name == Path(__file__).name:
            continue
        cited.update(re.findall(r"[\"']([A-Z]-\d+)[\"']", path.read_text()))
    return cited


def test_requirement_ids_are_unique() -> None:
    ids = requirement_ids()
    assert len(ids) > 60
    assert len(ids) == len(set(ids))


def test_every_cited_requirement_exists() -> None:
    """A test that cites a rule PROTOCOL.md no longer has (or never had) covers nothing."""
    unknown = sorted(cited_ids() - set(requirement_ids()))
    assert unknown == [], f"tests cite requirements PROTOCOL.md does not have: {unknown}"


def test_every_requirement_is_tested() -> None:
    missing = [i for i in requirement_ids() if i not in cited_ids() and i not in PENDING]
    assert missing == [], f"PROTOCOL.md requirements no test cites: {missing}"


def test_pending_list_is_not_stale() -> None:
    stale = sorted(set(PENDING) & cited_ids())
    assert stale == [], f"tested now, remove from PENDING: {stale}"
    unknown = sorted(set(PENDING) - set(requirement_ids()))
    assert unknown == []
