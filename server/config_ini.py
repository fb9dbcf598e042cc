"""The uWSGI ini file (``--ini FILE``): moving from uWSGI starts with ``--ini uwsgi.ini``.

Only the ``[uwsgi]`` section is read. Keys may repeat (several ``socket =`` lines), so this is
a line reader, not configparser's dict. Which ini keys map to which setting is declared in the
settings table (``Setting.ini`` in config.py); this source adds what is not a plain copy:

* ``module`` + ``callable`` (default ``application``) become ``app``; ``wsgi-file`` +
  ``callable`` become ``wsgi_file`` and ``app`` (then just the attribute name);
* socket addresses: ``:PORT`` (uWSGI: every interface) becomes ``0.0.0.0:PORT`` with a
  warning, and an address without a colon is a unix socket path;
* ``master``, ``die-on-term``, ``vacuum``, ``enable-threads`` are accepted silently: always
  on, or meaningless here;
* every other key is ignored with a warning.

Warnings are logged on the ``muxwsgi.config`` logger and returned, for tests and callers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from muxwsgi.server.config import SETTINGS, ConfigError, Setting
from muxwsgi.server.config_sources import Layer, RawValue
from muxwsgi.server.importer import DEFAULT_ATTRIBUTE

__all__ = ("INI_KEYS", "NO_OPS", "IniEntry", "IniSettings", "map_ini", "parse_ini", "read_ini")

log = logging.getLogger("muxwsgi.config")

#: Ini key -> setting, from the table.
INI_KEYS: Mapping[str, Setting] = {key: item for item in SETTINGS for key in item.ini}
#: Accepted without a warning: the master is always on, the rest is what we do anyway.
NO_OPS = frozenset({"master", "die-on-term", "vacuum", "enable-threads"})
#: What a key written without "= value" means (uWSGI: a bare chmod-socket is 666).
_BARE = {"chmod-socket": "666"}
_INLINE_COMMENT = re.compile(r"\s+[;#].*$")
_PLACEHOLDER = re.compile(r"[%$]\(")


@dataclass(frozen=True)
class IniEntry:
    """One ``key = value`` line of the ``[uwsgi]`` section."""

    key: str
    value: str
    line: int


@dataclass(frozen=True)
class IniSettings:
    """Raw setting values of an ini file (converted later, with the other sources), and the
    warnings about what was changed or ignored."""

    values: Layer
    warnings: tuple[str, ...]


def read_ini(path: str) -> IniSettings:
    """Return the settings of the uWSGI ini file at ``path`` and its warnings (also logged).

    Raises ConfigError if the file cannot be read or has no ``[uwsgi]`` section.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read ini file {path}: {reason}") from None
    entries = parse_ini(text)
    if entries is None:
        raise ConfigError(f"ini file {path} has no [uwsgi] section")
    result = map_ini(entries, path)
    for warning in result.warnings:
        log.warning("%s", warning)
    return result


def parse_ini(text: str, section: str = "uwsgi") -> list[IniEntry] | None:
    """Return the entries of ``[section]`` in file order, repeated keys included; None if the
    section is absent.

    Lines starting with ``;`` or ``#`` are comments, and so is the rest of a line from a ``;``
    or ``#`` preceded by whitespace. A key without ``=`` is a flag: its value is ``true``
    (``666`` for chmod-socket, as in uWSGI). Keys are compared with ``_`` read as ``-``.
    """
    entries: list[IniEntry] | None = None
    current = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = _INLINE_COMMENT.sub("", raw).strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            if current == section and entries is None:
                entries = []
            continue
        if current != section or entries is None:
            continue
        key, equals, value = line.partition("=")
        key = key.strip().replace("_", "-")
        value = value.strip() if equals else _BARE.get(key, "true")
        entries.append(IniEntry(key, value, number))
    return entries


def map_ini(entries: list[IniEntry], path: str) -> IniSettings:
    """Return the settings that ``entries`` (of the file ``path``) give, and warnings."""
    values: Layer = {}
    lists: dict[str, list[str]] = {}  # list settings: every line adds
    list_keys: dict[str, list[str]] = {}
    warnings: list[str] = []
    special: dict[str, IniEntry] = {}  # app, wsgi_file and callable: combined at the end
    for entry in entries:
        key, value = entry.key, entry.value
        if _PLACEHOLDER.search(value):
            warnings.append(
                f"muxwsgi: {path}:{entry.line}: uWSGI placeholders are not expanded in {key!r}"
            )
        if key in NO_OPS:
            continue
        item = INI_KEYS.get(key)
        if key == "callable" or (item is not None and item.name in ("app", "wsgi_file")):
            special[item.name if item is not None else key] = entry
            continue
        if item is None:
            warnings.append(f"muxwsgi: ignoring uWSGI option {key!r} (not supported)")
            continue
        if item.kind in ("address", "addresses"):
            value = _address(entry, warnings)
        if item.is_list:
            lists.setdefault(item.name, []).append(value)
            list_keys.setdefault(item.name, []).append(key)
        else:
            values[item.name] = RawValue(value, _source(path, entry))
    for name, items in lists.items():
        keys = ", ".join(repr(key) for key in dict.fromkeys(list_keys[name]))
        values[name] = RawValue(items, f"{path}, key {keys}")
    values.update(_application(special, path, warnings))
    return IniSettings(values, tuple(warnings))


def _address(entry: IniEntry, warnings: list[str]) -> str:
    """A uWSGI socket address in our syntax (HOST:PORT, [IPV6]:PORT or unix:PATH)."""
    value = entry.value
    if value.startswith(":"):
        warnings.append(
            f"muxwsgi: uWSGI address {value!r} ({entry.key}) means all interfaces: "
            f"binding 0.0.0.0{value}"
        )
        return "0.0.0.0" + value
    if ":" not in value:
        return "unix:" + value  # uWSGI: an address without a port is a unix socket path
    return value


def _application(special: dict[str, IniEntry], path: str, warnings: list[str]) -> Layer:
    """``app`` and ``wsgi_file`` from the module, wsgi-file and callable keys."""
    module, wsgi_file, name = (special.get(k) for k in ("app", "wsgi_file", "callable"))
    values: Layer = {}
    if module is not None:
        if wsgi_file is not None:
            warnings.append(f"muxwsgi: {path}: both module and wsgi-file given: using module")
        app = module.value
        if ":" not in app:
            app += ":" + (name.value if name is not None else DEFAULT_ATTRIBUTE)
        values["app"] = RawValue(app, _source(path, module))
    elif wsgi_file is not None:
        values["wsgi_file"] = RawValue(wsgi_file.value, _source(path, wsgi_file))
        if name is not None:
            values["app"] = RawValue(name.value, _source(path, name))
    elif name is not None:
        warnings.append(f"muxwsgi: {path}: 'callable' without 'module' or 'wsgi-file' is ignored")
    return values


def _source(path: str, entry: IniEntry) -> str:
    return f"{path}:{entry.line}, key {entry.key!r}"
