"""What a source of settings yields, and which source wins.

Every source (the uWSGI ini file in ``config_ini``, the TOML file in ``config_toml``, the
environment and the command line in ``config_load``) yields a :data:`Layer`: raw values
(strings, or native TOML values) by setting name, each tagged with where it came from.
:func:`resolve` stacks the layers: the highest one that gives a setting wins, and only that
value is converted and validated (by :meth:`Setting.convert`), so an error names the setting
and its source in one line, and a bad value that a higher source overrides is no error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from muxwsgi.server.config import SETTINGS_BY_NAME, Config

__all__ = ("Layer", "RawValue", "resolve")


@dataclass(frozen=True)
class RawValue:
    """A setting's value as a source gave it (before conversion) and where it came from."""

    value: object
    source: str


#: Raw values of one source, by setting name.
Layer: TypeAlias = dict[str, RawValue]


def resolve(layers: Iterable[Layer]) -> Config:
    """Return the Config that ``layers`` (lowest precedence first) give: for each setting the
    value of the last layer that has it, converted, else its default.

    Raises ConfigError, naming the setting and the source, if a winning value is invalid.
    """
    winners: Layer = {}
    for layer in layers:
        winners.update(layer)
    # Each value has its field's type (config_mismatches checks each kind against its field's
    # annotation), which mypy cannot follow name by name: hence Any, once, here.
    values: dict[str, Any] = {
        name: SETTINGS_BY_NAME[name].convert(raw.value, raw.source) for name, raw in winners.items()
    }
    return Config(**values)
