"""Every requirement of PROTOCOL.md is cited by at least one test (or is listed below with the
issue that will cover it), and every requirement a server can be seen to break on the wire has a
case in the conformance suite (tests/conformance: a raw client written from PROTOCOL.md alone,
against a live server)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Requirements that only a server or a client can show; each names where its test will live.
#: Entries leave this table when their tests land (the test below fails on a stale entry).
PENDING: dict[str, str] = {}

CONFORMANCE = ROOT / "tests" / "conformance"
#: Requirements the conformance suite cannot show, because only a client can break them (or, for
#: [L-2], only a measurement of the server's memory can), and where they are tested instead.
NOT_IN_CONFORMANCE: dict[str, str] = {
    "D-2": "the client's first bytes: tests/core/test_connection.py",
    "F-2": "a u16 cannot say more: tests/core/test_frames.py",
    "S-2": "client: tests/core/test_connection.py",
    "S-3": "client: tests/core/test_connection.py, tests/core/test_stateful.py",
    "T-3": "client: tests/client/_async/test_client.py",
    "I-5": "client: tests/core/test_connection.py",
    "C-1": "client: tests/core/test_connection.py",
    "X-5": "client: tests/client/test_sync_behaviour.py",
    "X-6": "client: tests/client/test_sync_behaviour.py",
    "L-2": "a peer that never reads, the server's RSS measured: tests/hostile/test_floods.py",
}


def requirement_ids() -> list[str]:
    text = (ROOT / "PROTOCOL.md").read_text()
    return re.findall(r"\*\*\[([A-Z]-\d+)\]\*\*", text)


def cited_ids(where: Path = ROOT / "tests") -> set[str]:
    cited: set[str] = set()
    for path in where.rglob("test_*.py"):
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


def test_every_server_requirement_has_a_conformance_case() -> None:
    cited = cited_ids(CONFORMANCE)
    missing = [i for i in requirement_ids() if i not in cited and i not in NOT_IN_CONFORMANCE]
    assert missing == [], f"PROTOCOL.md requirements with no case in tests/conformance: {missing}"


def test_the_conformance_exceptions_are_not_stale() -> None:
    cited = cited_ids(CONFORMANCE)
    assert sorted(set(NOT_IN_CONFORMANCE) & cited) == [], "covered now: remove from the list"
    assert sorted(set(NOT_IN_CONFORMANCE) - set(requirement_ids())) == []
    assert sorted(cited - set(requirement_ids())) == [], "the conformance suite cites unknown ids"
