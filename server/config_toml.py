"""The TOML config file: ``--config FILE`` reads one, ``--print-config`` writes one.

Keys are setting names, written with ``_`` or ``-``. Values are TOML's own (strings, integers,
floats, booleans, arrays of strings for list settings, ``0o660`` for the socket mode) or text
as the environment takes it (``limit_post = "64k"``).
"""

from __future__ import annotations

import difflib
import json
import tomllib

from muxwsgi.server.config import SETTINGS, SETTINGS_BY_NAME, Config, ConfigError, SettingValue
from muxwsgi.server.config_sources import Layer, RawValue

__all__ = ("read_toml", "render_config")


def read_toml(path: str) -> Layer:
    """Return the raw values of the TOML config file at ``path``.

    Raises ConfigError if the file cannot be read, is not TOML, or has a key that is not a
    setting (suggesting the closest name).
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    layer: Layer = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in SETTINGS_BY_NAME:
            close = difflib.get_close_matches(name, SETTINGS_BY_NAME, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"config file {path}: unknown setting {key!r}{hint}")
        layer[name] = RawValue(value, f"{path}, key {key!r}")
    return layer


def render_config(config: Config) -> str:
    """Return the settings of ``config`` as TOML, one ``name = value`` line each (what
    --print-config shows; it reads back with --config). Unset settings are comments."""
    lines = []
    for item in SETTINGS:
        value: SettingValue = getattr(config, item.name)
        if value is None:
            lines.append(f"# {item.name} = (unset)")
        elif item.kind == "mode":
            lines.append(f"{item.name} = 0o{value:03o}")
        else:
            lines.append(f"{item.name} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    """A TOML literal for a setting value (str, int, float, bool, or a tuple of str)."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    # JSON's strings, numbers and booleans are TOML's too, except that TOML wants DEL escaped
    # and no surrogate pairs (hence ensure_ascii=False).
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
