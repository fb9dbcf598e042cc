"""The classic uwsgi packet: a 4-byte header and a vars block (PROTOCOL.md §11).

Used for legacy peers: nginx ``uwsgi_pass`` talking to our server, and our client talking to the
real uWSGI (or to anything else that speaks classic uwsgi). A request is::

    u8 modifier1 | u16le datasize | u8 modifier2 | vars block (datasize bytes) | body

and the vars block is ``u16le key_size, key, u16le val_size, val`` repeated. The body is exactly
CONTENT_LENGTH bytes. The response carries no uwsgi header at all: it is a raw HTTP status line,
headers and body, ended by closing the socket.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from ._errors import ErrorCode, InvalidVarsError, LocalProtocolError
from ._vars import check_names_and_text, pairs_to_dict, parse_content_length

__all__ = (
    "MAX_VARS_SIZE",
    "PACKET_HEADER",
    "content_length",
    "decode_vars",
    "encode_request",
    "encode_vars",
    "parse_packet_header",
)

#: modifier1, datasize, modifier2
PACKET_HEADER = struct.Struct("<BHB")
_U16 = struct.Struct("<H")
#: The datasize field is a u16: no vars block can be larger (the CVE-2020-11984 lesson).
MAX_VARS_SIZE = 0xFFFF


def parse_packet_header(header: bytes) -> tuple[int, int, int]:
    """Return (modifier1, datasize, modifier2) of a 4-byte packet header."""
    modifier1, datasize, modifier2 = PACKET_HEADER.unpack(header)
    return modifier1, datasize, modifier2


def content_length(vars: Mapping[str, str]) -> int:
    """The body size a classic request announces: its CONTENT_LENGTH var, read as strictly as
    the mux core reads it (1 to 18 ASCII digits), or 0 when absent or empty (nginx sends
    ``CONTENT_LENGTH ""`` for a GET). The body is exactly that many bytes after the vars block.

    Raises :class:`InvalidVarsError` for any other value ("+1", " 5", "1e3", "5, 5", ...).
    """
    return parse_content_length(vars.get("CONTENT_LENGTH")) or 0


def encode_vars(vars: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """Return a vars block. Text is encoded as ISO-8859-1 (PEP 3333 native strings).

    Raises :class:`LocalProtocolError` for an empty name, CR/LF/NUL, a name or value longer
    than 65535 bytes, text that is not latin-1, or a block larger than 65535 bytes.
    """
    pairs = vars.items() if isinstance(vars, Mapping) else vars
    out = bytearray()
    pack = _U16.pack
    for name, value in pairs:
        if not name:
            raise LocalProtocolError("empty var name")
        problem = check_names_and_text(name + value)
        if problem is not None:
            raise LocalProtocolError(f"var {name[:80]!r} {problem}")
        k = name.encode("latin-1")
        v = value.encode("latin-1")
        if len(k) > MAX_VARS_SIZE or len(v) > MAX_VARS_SIZE:
            raise LocalProtocolError(f"var {name[:80]!r} is longer than 65535 bytes")
        out += pack(len(k))
        out += k
        out += pack(len(v))
        out += v
    if len(out) > MAX_VARS_SIZE:
        raise LocalProtocolError(f"vars block of {len(out)} bytes exceeds 65535")
    return bytes(out)


def encode_request(
    vars: Mapping[str, str] | Iterable[tuple[str, str]], modifier1: int = 0, modifier2: int = 0
) -> bytes:
    """Return the header and vars block of a classic request (the body follows separately)."""
    block = encode_vars(vars)
    return PACKET_HEADER.pack(modifier1, len(block), modifier2) + block


def decode_vars(block: bytes, max_count: int = 256) -> dict[str, str]:
    """Decode a vars block into a dict of native strings.

    Raises :class:`InvalidVarsError` when a length runs past the end of the block, a name is
    empty or repeated, text holds CR/LF/NUL, or there are more than ``max_count`` pairs (code
    HEADERS_TOO_LARGE), exactly as uWSGI's own parser refuses them, except that uWSGI keeps the
    last of two duplicates and we refuse (two CONTENT_LENGTHs is how requests get smuggled).
    """
    # Decoding the whole block once and slicing the str at byte offsets is valid because
    # ISO-8859-1 maps one byte to one code point; it saves a decode call per name and value.
    # Lengths are read by indexing the bytes (no struct call, no tuple), a name and its value
    # per turn, each pair stored as it is read (compiled, dict(zip(...)) costs more): this
    # loop is the largest single cost of a classic request, and this shape is cheaper than
    # one field per turn (the figures: benchmarks/README.md).
    text = block.decode("latin-1")
    end = len(block)
    pos = 0
    names: list[str] = []
    values: list[str] = []
    result: dict[str, str] = {}
    try:
        while pos < end:
            start = pos + 2
            split = start + (block[pos] | block[pos + 1] << 8)
            pos = split + 2 + (block[split] | block[split + 1] << 8)
            if pos > end:
                raise InvalidVarsError("var length runs past the end of the vars block")
            name = text[start:split]
            value = text[split + 2 : pos]
            names.append(name)
            values.append(value)
            result[name] = value
    except IndexError:
        # A length byte beyond the block: a truncated length, or a name without its value.
        raise InvalidVarsError("vars block ends inside a length or after a name") from None
    if len(names) > max_count:
        raise InvalidVarsError(
            f"{len(names)} vars exceed the limit of {max_count}", ErrorCode.HEADERS_TOO_LARGE
        )
    problem = check_names_and_text("".join(names) + "".join(values))
    if problem is not None:
        raise InvalidVarsError(f"vars block {problem}")
    if len(result) != len(names) or "" in result:
        # Find which name is empty or repeated, for the message (raises).
        pairs_to_dict([item for pair in zip(names, values, strict=True) for item in pair])
    return result
