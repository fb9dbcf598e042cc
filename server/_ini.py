"""Read a uWSGI ini file, so that a uWSGI user migrates by changing one word.

Only the ``[uwsgi]`` section is read. Keys repeat (several ``socket =`` lines), so this is not
configparser's dict. The keys that map to a setting are declared on the settings themselves
(config.py, ``ini=``); a few more are accepted as no-ops; every other key is reported.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ("read_ini",)

log = logging.getLogger("muxwsgi.config")

#: uWSGI options that are always on, or meaningless, here: accepted without a warning.
NO_OPS = frozenset(
    {
        "master",
        "die-on-term",
        "vacuum",
        "enable-threads",
        "lazy-apps",
        "single-interpreter",
        "strict",
        "need-app",
        "thunder-lock",
    }
)
_LISTS = frozenset({"bind"})


def read_ini(path: str, warnings: list[str] | None = None) -> dict[str, Any]:
    """Return raw setting values (strings; lists for ``bind``) from a uWSGI ini file.

    Warnings (ignored keys, ``:port`` meaning all interfaces) are logged on ``muxwsgi.config``
    and appended to ``warnings`` when given.
    """
    from .config import ConfigError, ini_names

    names = ini_names()
    values: dict[str, Any] = {}
    callable_name = "application"
    module: str | None = None

    def warn(message: str) -> None:
        log.warning(message)
        if warnings is not None:
            warnings.append(message)

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read ini file {path}: {exc.strerror}") from None
    section = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section != "uwsgi":
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            value = "true"  # a bare flag, as uWSGI allows
        if "%(" in value or "$(" in value:
            warn(f"muxwsgi: {path}:{number}: uWSGI placeholders are not expanded in {key!r}")
        if key in NO_OPS:
            continue
        if key == "callable":
            callable_name = value
            continue
        if key == "module":
            module = value
            continue
        name = names.get(key)
        if name is None:
            warn(f"muxwsgi: ignoring uWSGI option {key!r} (not supported)")
            continue
        if name in _LISTS:
            if value.startswith(":"):
                warn(
                    f"muxwsgi: {key} = {value} means all interfaces in uWSGI: "
                    f"binding 0.0.0.0{value}"
                )
                value = "0.0.0.0" + value
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    if module is not None:
        values["app"] = module if ":" in module else f"{module}:{callable_name}"
    elif "wsgi_file" in values:
        values["app"] = f":{callable_name}"
    return values
