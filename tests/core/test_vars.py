"""The vars codecs: classic uwsgi vars blocks and mux HEADERS payloads."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxwsgi import ErrorCode, InvalidVarsError, LocalProtocolError, classic
from muxwsgi._vars import (
    VarsBlock,
    decode_request_vars,
    decode_response_head,
    encode_request_vars,
    encode_response_head,
    parse_content_length,
    parse_timeout_ms,
)

from .helpers import spec

PACK = msgpack.Packer().pack

# Text as PEP 3333 native strings: every code point < 256, minus CR, LF and NUL.
latin1_text = st.text(
    alphabet=st.characters(min_codepoint=1, max_codepoint=255, blacklist_characters="\r\n"),
    max_size=40,
)
names = latin1_text.filter(bool)
vars_dicts = st.dictionaries(names, latin1_text, max_size=30)


def block(*pairs: tuple[bytes, bytes]) -> bytes:
    out = b""
    for k, v in pairs:
        out += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return out


# ---------------------------------------------------------------- classic uwsgi


def test_classic_vector() -> None:
    """The vars block layout of reference/protocol.md §1.2, byte for byte."""
    assert classic.encode_vars({"A": "bc"}) == b"\x01\x00A\x02\x00bc"
    packet = classic.encode_request({"REQUEST_METHOD": "GET"})
    assert packet[:4] == b"\x00\x15\x00\x00"  # modifier1 0, datasize 21 (u16le), modifier2 0
    assert classic.parse_packet_header(packet[:4]) == (0, 21, 0)
    assert classic.decode_vars(packet[4:]) == {"REQUEST_METHOD": "GET"}


@given(vars_dicts)
def test_classic_round_trip(vars: dict[str, str]) -> None:
    assert classic.decode_vars(classic.encode_vars(vars), max_count=100) == vars


@pytest.mark.parametrize("size", [0, 10, 13, 256, 266, 269, 2560, 2570, 3328, 3341])
def test_classic_lengths_whose_bytes_are_cr_lf_or_nul(size: int) -> None:
    """A length byte may be 0, 10 or 13 (CR, LF, NUL are refused in names and values only)."""
    vars = {"N" * max(size, 1): "v" * size, "EMPTY": ""}
    assert classic.decode_vars(classic.encode_vars(vars)) == vars
    raw = classic.encode_vars(vars) + block((b"X", b"a\rb"))
    with pytest.raises(InvalidVarsError, match="CR, LF or NUL"):
        classic.decode_vars(raw)


@given(vars_dicts.filter(bool), st.data())
def test_classic_refuses_cr_lf_or_nul_anywhere_in_a_name_or_value(
    vars: dict[str, str], data: st.DataObject
) -> None:
    bad_name = data.draw(st.sampled_from(sorted(vars)))
    in_name = data.draw(st.booleans())
    char = data.draw(st.sampled_from("\r\n\x00"))
    pairs = []
    for name, value in vars.items():
        if name == bad_name:
            text = name if in_name else value
            at = data.draw(st.integers(0, len(text)))
            text = text[:at] + char + text[at:]
            name, value = (text, value) if in_name else (name, text)
        pairs.append((name.encode("latin-1"), value.encode("latin-1")))
    with pytest.raises(InvalidVarsError, match="CR, LF or NUL"):
        classic.decode_vars(block(*pairs), max_count=100)


def test_classic_keeps_bytes_as_latin1() -> None:
    raw = block((b"PATH_INFO", "/café".encode()))
    assert classic.decode_vars(raw)["PATH_INFO"] == "/cafÃ©"  # PEP 3333: bytes decoded latin-1


BAD_BLOCKS = [
    ("value length runs past the end", block((b"A", b"b"))[:-1]),
    ("key length runs past the end", b"\x05\x00AB"),
    ("truncated key length", block((b"A", b"b")) + b"\x01"),
    ("name without value", block((b"A", b"b")) + b"\x01\x00C"),
    ("empty key", block((b"", b"x"))),
    ("duplicate key", block((b"CONTENT_LENGTH", b"1"), (b"CONTENT_LENGTH", b"2"))),
    ("CR in value", block((b"HTTP_X", b"a\rb"))),
    ("LF in key", block((b"HTTP\nX", b"a"))),
    ("NUL in value", block((b"HTTP_X", b"a\x00"))),
]


@spec("U-2", "H-2", "H-3")
@pytest.mark.parametrize(("what", "raw"), BAD_BLOCKS, ids=[b[0] for b in BAD_BLOCKS])
def test_classic_rejects(what: str, raw: bytes) -> None:
    with pytest.raises(InvalidVarsError):
        classic.decode_vars(raw)


def test_classic_var_count_limit() -> None:
    raw = block(*[(f"K{i}".encode(), b"v") for i in range(11)])
    assert len(classic.decode_vars(raw, max_count=11)) == 11
    with pytest.raises(InvalidVarsError) as info:
        classic.decode_vars(raw, max_count=10)
    assert info.value.error_code == ErrorCode.HEADERS_TOO_LARGE


@pytest.mark.parametrize(
    "vars",
    [{"": "x"}, {"A": "b\nc"}, {"A": "\u20ac"}, {"A": "x" * 70000}],
    ids=["empty name", "LF", "not latin-1", "value over 64k"],
)
def test_classic_encode_refuses(vars: dict[str, str]) -> None:
    with pytest.raises(LocalProtocolError):
        classic.encode_vars(vars)


def test_classic_encode_refuses_block_over_64k() -> None:
    with pytest.raises(LocalProtocolError):
        classic.encode_vars({f"K{i}": "x" * 1000 for i in range(70)})


# ---------------------------------------------------------------- mux heads


@given(vars_dicts)
def test_request_vars_round_trip(vars: dict[str, str]) -> None:
    assert decode_request_vars(encode_request_vars(PACK, vars), 100) == vars


@given(vars_dicts, vars_dicts)
def test_request_vars_with_a_block_round_trip(vars: dict[str, str], more: dict[str, str]) -> None:
    # Every array header size on both sides: up to 30 + 30 vars (fixarray and array 16).
    more = {f"B-{name}": value for name, value in more.items()}
    payload = encode_request_vars(PACK, vars, VarsBlock(PACK, more))
    assert payload == PACK([x for pair in [*vars.items(), *more.items()] for x in pair])
    assert decode_request_vars(payload, 100) == {**vars, **more}


def test_request_vars_with_a_block_past_array16() -> None:
    vars = {f"V{i}": "x" for i in range(9)}
    more = {f"B{i}": "y" for i in range(40_000)}  # 80,018 items: an array 32 header
    payload = encode_request_vars(PACK, vars, VarsBlock(PACK, more))
    assert payload[:1] == b"\xdd"
    assert decode_request_vars(payload, 50_000) == {**vars, **more}


def test_a_block_refuses_what_encoding_refuses_and_a_name_twice() -> None:
    with pytest.raises(LocalProtocolError, match="CR, LF"):
        VarsBlock(PACK, {"HTTP_X": "a\nb"})
    with pytest.raises(LocalProtocolError, match="empty var name"):
        VarsBlock(PACK, {"": "x"})
    with pytest.raises(LocalProtocolError, match="duplicate var 'HTTP_HOST'"):
        encode_request_vars(PACK, {"HTTP_HOST": "a"}, VarsBlock(PACK, {"HTTP_HOST": "b"}))


@given(
    st.integers(100, 999),
    latin1_text,
    st.lists(st.tuples(names, latin1_text), max_size=20),
)
def test_response_head_round_trip(status: int, reason: str, hdrs: list[tuple[str, str]]) -> None:
    assert decode_response_head(encode_response_head(PACK, status, reason, hdrs), 100) == (
        status,
        reason,
        hdrs,
    )


BAD_REQUEST_PAYLOADS = [
    ("not msgpack", b"\xc1"),
    ("trailing bytes", msgpack.packb(["A", "b"]) + b"\x00"),
    ("a map, not an array", msgpack.packb({"A": "b"})),
    ("odd length", msgpack.packb(["A", "b", "C"])),
    ("bytes instead of str", msgpack.packb([b"A", b"b"])),
    ("int value", msgpack.packb(["A", 1])),
    ("nested array", msgpack.packb(["A", ["b"]])),
    ("duplicate name", msgpack.packb(["CONTENT_LENGTH", "1", "CONTENT_LENGTH", "2"])),
    ("empty name", msgpack.packb(["", "x"])),
    ("CR in value", msgpack.packb(["HTTP_X", "a\rb"])),
    ("LF in name", msgpack.packb(["HTTP\nX", "a"])),
    ("NUL", msgpack.packb(["HTTP_X", "\x00"])),
    ("code point above U+00FF", msgpack.packb(["HTTP_X", "\u20ac"])),
    ("invalid UTF-8", b"\x92\xa1A\xa1\xff"),
]


@spec("H-1", "H-2", "H-3")
@pytest.mark.parametrize(
    ("what", "payload"), BAD_REQUEST_PAYLOADS, ids=[b[0] for b in BAD_REQUEST_PAYLOADS]
)
def test_request_vars_rejects(what: str, payload: bytes) -> None:
    with pytest.raises(InvalidVarsError) as info:
        decode_request_vars(payload, 100)
    assert info.value.error_code == ErrorCode.PROTOCOL_ERROR


BAD_RESPONSE_PAYLOADS = [
    ("status as str", msgpack.packb(["200", "OK"])),
    ("status too low", msgpack.packb([99, "OK"])),
    ("status too high", msgpack.packb([1000, "OK"])),
    ("missing reason", msgpack.packb([200])),
    ("odd header list", msgpack.packb([200, "OK", "X"])),
    ("CR in header", msgpack.packb([200, "OK", "X", "a\r\nSet-Cookie: x"])),
    ("LF in reason", msgpack.packb([200, "O\nK"])),
    ("empty header name", msgpack.packb([200, "OK", "", "x"])),
    ("bool status", msgpack.packb([True, "OK"])),
]


@spec("H-1", "H-3")
@pytest.mark.parametrize(
    ("what", "payload"), BAD_RESPONSE_PAYLOADS, ids=[b[0] for b in BAD_RESPONSE_PAYLOADS]
)
def test_response_head_rejects(what: str, payload: bytes) -> None:
    with pytest.raises(InvalidVarsError):
        decode_response_head(payload, 100)


@spec("H-4")
def test_var_count_limit_is_headers_too_large() -> None:
    payload = encode_request_vars(PACK, {f"K{i}": "v" for i in range(5)})
    assert len(decode_request_vars(payload, 5)) == 5
    with pytest.raises(InvalidVarsError) as info:
        decode_request_vars(payload, 4)
    assert info.value.error_code == ErrorCode.HEADERS_TOO_LARGE


def test_response_headers_may_repeat_in_order() -> None:
    hdrs = [("Set-Cookie", "a=1"), ("X", "y"), ("Set-Cookie", "b=2")]
    assert decode_response_head(encode_response_head(PACK, 200, "OK", hdrs), 10)[2] == hdrs


@pytest.mark.parametrize(
    "vars",
    [{"": "x"}, {"A": "b\r"}, {"A": "\u0100"}, {"A": 1}],
    ids=["empty name", "CR", "not latin-1", "not str"],
)
def test_encode_request_vars_refuses(vars: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        encode_request_vars(PACK, vars)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "hdrs"),
    [(99, []), (200, [("X", "a\nb")]), (200, [("", "x")]), (200, [("X", 1)])],
)
def test_encode_response_head_refuses(status: int, hdrs: list[tuple[str, object]]) -> None:
    with pytest.raises(LocalProtocolError):
        encode_response_head(PACK, status, "OK", hdrs)  # type: ignore[arg-type]


def test_encode_response_head_wants_an_int_status() -> None:
    # A TypeError, as for any argument of the wrong type, in the pure and compiled builds alike.
    with pytest.raises(TypeError):
        encode_response_head(PACK, "200", "OK", [])  # type: ignore[arg-type]


# ---------------------------------------------------------------- CONTENT_LENGTH, deadline

CONTENT_LENGTHS = [
    (None, None),
    ("", None),
    ("0", 0),
    ("007", 7),
    ("123456789012345678", 123456789012345678),
]
BAD_CONTENT_LENGTHS = [
    "+1", "-5", " 5", "5 ", "1e3", "0_1", "5, 5", "0x10", "\u0661", "\uff15",
    "1234567890123456789", "99999999999999999999999",
]  # fmt: skip


@spec("H-6", "U-3")
@pytest.mark.parametrize(("raw", "parsed"), CONTENT_LENGTHS)
def test_content_length_accepts(raw: str | None, parsed: int | None) -> None:
    assert parse_content_length(raw) == parsed


@spec("H-6", "U-3")
@pytest.mark.parametrize("raw", BAD_CONTENT_LENGTHS)
def test_content_length_rejects(raw: str) -> None:
    with pytest.raises(InvalidVarsError):
        parse_content_length(raw)


@spec("T-1")
@pytest.mark.parametrize(
    ("raw", "ok"),
    [("1500", True), ("0", True), ("999999999", True), ("0000000001", False),
     ("1000000000", False), ("1.5", False), ("-1", False), ("1s", False), ("", False),
     ("+1", False), (" 1", False), ("1 ", False), ("\u0661\u0665", False), ("\u00b2", False)],
)  # fmt: skip
def test_timeout_var(raw: str, ok: bool) -> None:
    if ok:
        assert parse_timeout_ms(raw) == int(raw)
    else:
        with pytest.raises(InvalidVarsError):
            parse_timeout_ms(raw)
