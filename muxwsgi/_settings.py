"""SETTINGS: the values each side advertises, their defaults and bounds (PROTOCOL.md §7)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping

from ._errors import ErrorCode
from ._frames import MAX_PAYLOAD, MAX_WINDOW

__all__ = ("SETTING_RULES", "SettingCode", "Settings", "check_setting")


class SettingCode(enum.IntEnum):
    """Setting ids on the wire (PROTOCOL.md §7)."""

    MAX_CONCURRENT_STREAMS = 0x1
    INITIAL_WINDOW_SIZE = 0x2
    MAX_FRAME_SIZE = 0x3
    MAX_HEADERS_SIZE = 0x4
    MAX_HEADERS_COUNT = 0x5


@dataclasses.dataclass(frozen=True)
class _Rule:
    attr: str
    default: int
    minimum: int
    maximum: int
    #: The code of the connection error raised for a value outside [minimum, maximum].
    error_code: ErrorCode


#: The one table of settings: attribute name, protocol default, bounds and the error for a value
#: out of bounds. A peer assumes the default until the other side's PREFACE arrives.
SETTING_RULES: dict[SettingCode, _Rule] = {
    SettingCode.MAX_CONCURRENT_STREAMS: _Rule(
        "max_concurrent_streams", 100, 0, MAX_WINDOW, ErrorCode.PROTOCOL_ERROR
    ),
    SettingCode.INITIAL_WINDOW_SIZE: _Rule(
        "initial_window_size", 65535, 0, MAX_WINDOW, ErrorCode.FLOW_CONTROL_ERROR
    ),
    # The floor stops a peer from forcing tiny frames on us (the "data dribble" attack).
    SettingCode.MAX_FRAME_SIZE: _Rule(
        "max_frame_size", 16384, 16384, MAX_PAYLOAD, ErrorCode.PROTOCOL_ERROR
    ),
    SettingCode.MAX_HEADERS_SIZE: _Rule(
        "max_headers_size", MAX_PAYLOAD, 512, MAX_PAYLOAD, ErrorCode.PROTOCOL_ERROR
    ),
    SettingCode.MAX_HEADERS_COUNT: _Rule(
        "max_headers_count", 256, 1, 65535, ErrorCode.PROTOCOL_ERROR
    ),
}


def check_setting(code: int, value: int) -> ErrorCode | None:
    """Return the error code if ``value`` is out of bounds for a known ``code``, else None.

    Unknown codes are always acceptable: they are ignored (PROTOCOL.md §7).
    """
    try:
        rule = SETTING_RULES[SettingCode(code)]
    except ValueError:
        return None
    if rule.minimum <= value <= rule.maximum:
        return None
    return rule.error_code


@dataclasses.dataclass(slots=True)
class Settings:
    """One side's settings, as plain attributes (read on the hot path)."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 65535
    max_frame_size: int = 16384
    max_headers_size: int = MAX_PAYLOAD
    max_headers_count: int = 256

    def __post_init__(self) -> None:
        for code, value in self.items():
            if check_setting(code, value) is not None:
                rule = SETTING_RULES[code]
                raise ValueError(
                    f"{rule.attr}={value} is out of bounds [{rule.minimum}, {rule.maximum}]"
                )

    def items(self) -> list[tuple[SettingCode, int]]:
        """Every setting as (code, value), in code order: what a PREFACE advertises."""
        return [(code, getattr(self, rule.attr)) for code, rule in SETTING_RULES.items()]

    def get(self, code: SettingCode) -> int:
        value: int = getattr(self, SETTING_RULES[code].attr)
        return value

    def update(self, values: Mapping[SettingCode, int] | Iterable[tuple[SettingCode, int]]) -> None:
        """Set known codes (already checked); unknown codes are ignored."""
        pairs = values.items() if isinstance(values, Mapping) else values
        for code, value in pairs:
            rule = SETTING_RULES.get(code)
            if rule is not None:
                setattr(self, rule.attr, value)

    def copy(self) -> Settings:
        return dataclasses.replace(self)
