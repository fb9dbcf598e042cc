"""Import the WSGI application from ``module:attribute`` (or a file), with one-line errors.

Semantics and messages follow uvicorn's ``import_from_string``; ``module`` alone means the
attribute ``application`` (uWSGI's default callable).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from ._types import WSGIApplication

__all__ = ("AppImportError", "import_app")


class AppImportError(Exception):
    """The application cannot be imported; the message is one line a person can act on."""


def import_app(
    spec: str | None, *, wsgi_file: str | None = None, chdir: str | None = None
) -> WSGIApplication:
    """Return the WSGI callable named by ``spec`` (``pkg.mod:attr.sub`` or ``pkg.mod``).

    With ``wsgi_file``, the module is loaded from that path and ``spec`` (if any) names only
    the attribute. ``chdir`` is entered first; the working directory is put first on sys.path
    (as gunicorn does) so that the application's own modules import.
    """
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppImportError(f"cannot chdir to {chdir!r}: {exc.strerror}") from None
    cwd = os.getcwd()
    if sys.path[:1] != [cwd]:
        sys.path.insert(0, cwd)
    if wsgi_file:
        module = _load_file(wsgi_file)
        attr_path = (spec or "application").rpartition(":")[2] or "application"
        module_name = wsgi_file
    else:
        if not spec:
            raise AppImportError("no application given: muxwsgi serve MODULE:ATTRIBUTE")
        module_name, sep, attr_path = spec.partition(":")
        if not module_name or (sep and not attr_path):
            raise AppImportError(
                f'Import string "{spec}" must be in format "<module>:<attribute>".'
            )
        attr_path = attr_path or "application"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
                # The user's module itself imports something missing: show that, not ours.
                raise AppImportError(f'Could not import module "{module_name}": {exc}') from None
            raise AppImportError(f'Could not import module "{module_name}".') from None
        except Exception as exc:
            raise AppImportError(
                f'Error while importing "{module_name}": {type(exc).__name__}: {exc}'
            ) from exc
    instance: object = module
    for name in attr_path.split("."):
        try:
            instance = getattr(instance, name)
        except AttributeError:
            raise AppImportError(
                f'Attribute "{attr_path}" not found in module "{module_name}".'
            ) from None
    if not callable(instance):
        raise AppImportError(
            f'"{module_name}:{attr_path}" is not callable: not a WSGI application.'
        )
    return instance


def _load_file(path: str) -> object:
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise AppImportError(f"wsgi-file {path!r} does not exist")
    name = "_muxwsgi_wsgi_file_" + os.path.splitext(os.path.basename(full))[0]
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise AppImportError(f"cannot load wsgi-file {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise AppImportError(
            f"Error while loading wsgi-file {path!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return module
