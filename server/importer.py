"""Load the WSGI application named on the command line, with errors a person can act on.

``pkg.mod:attr`` imports ``pkg.mod`` and takes ``attr`` from it; the attribute may be dotted
(``pkg.mod:factory.app``). ``pkg.mod`` alone means ``pkg.mod:application``, uWSGI's default
callable name. A wsgi-file (a ``.py`` path) is loaded instead of importing a module; the spec
then names only the attribute. The messages follow uvicorn's ``import_from_string``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import cast

from muxwsgi.server._types import WSGIApplication

__all__ = ("DEFAULT_ATTRIBUTE", "AppImportError", "import_app")

#: The attribute used when the spec names only a module (uWSGI's default ``callable``).
DEFAULT_ATTRIBUTE = "application"


class AppImportError(Exception):
    """The application cannot be loaded; the message is one line saying why."""


def import_app(
    spec: str | None, *, wsgi_file: str | None = None, chdir: str | None = None
) -> WSGIApplication:
    """Return the WSGI callable named by ``spec``.

    ``spec`` is ``MODULE:ATTRIBUTE`` or ``MODULE`` (meaning ``MODULE:application``). With
    ``wsgi_file``, the module is loaded from that file and ``spec`` is only the attribute
    (``ATTRIBUTE`` or ``:ATTRIBUTE``; None means ``application``). ``chdir`` is entered first,
    and the working directory is put first on sys.path, as gunicorn does, so that the
    application's own modules import.

    Raises AppImportError with a one-line message: a malformed spec, a module that is not
    found (or that imports something not found: then that is named), an exception raised by
    the module (chained, for the traceback), a missing attribute, or one that is not callable.
    """
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppImportError(
                f'Could not change to directory "{chdir}": {exc.strerror}.'
            ) from None
    cwd = os.getcwd()
    if sys.path[:1] != [cwd]:
        sys.path.insert(0, cwd)
    if wsgi_file is not None:
        module_name, attribute = wsgi_file, _wsgi_file_attribute(spec)
        module = _load_file(wsgi_file)
    else:
        module_name, attribute = _split(spec)
        module = _import(module_name)
    instance: object = module
    for name in attribute.split("."):
        try:
            instance = getattr(instance, name)
        except AttributeError:
            raise AppImportError(
                f'Attribute "{attribute}" not found in module "{module_name}".'
            ) from None
    if not callable(instance):
        raise AppImportError(
            f'Attribute "{attribute}" in module "{module_name}" is not callable '
            f"(it is {type(instance).__name__}): a WSGI application must be."
        )
    return cast(WSGIApplication, instance)


def _split(spec: str | None) -> tuple[str, str]:
    """``(module, attribute)`` of ``MODULE[:ATTRIBUTE]``."""
    module_name, colon, attribute = (spec or "").partition(":")
    if not colon:
        attribute = DEFAULT_ATTRIBUTE
    if not module_name or module_name.startswith(".") or not attribute or ":" in attribute:
        raise AppImportError(f'Import string "{spec}" must be in format "<module>:<attribute>".')
    return module_name, attribute


def _wsgi_file_attribute(spec: str | None) -> str:
    """The attribute named by ``spec`` when the module is a wsgi-file: ``ATTR`` or ``:ATTR``."""
    if not spec:
        return DEFAULT_ATTRIBUTE
    attribute = spec.removeprefix(":")
    if not attribute or ":" in attribute:
        raise AppImportError(
            f'With a wsgi-file, the application must be an attribute name ("app"), not "{spec}".'
        )
    return attribute


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise AppImportError(_not_found(module_name)) from None
        # The module exists but imports something that does not: name that, not the module.
        raise AppImportError(f'{exc} (imported by module "{module_name}").') from exc
    except Exception as exc:
        raise AppImportError(_crashed(f'module "{module_name}"', exc)) from exc


def _not_found(module_name: str) -> str:
    """Why ``module_name`` did not import, and what to do about it."""
    message = f'Could not import module "{module_name}".'
    if module_name.endswith(".py") or "/" in module_name:
        guess = module_name.removesuffix(".py").strip("/").replace("/", ".")
        return (
            f'{message} That is a file path: name the module ("{guess}:app") or load the '
            f"file with --wsgi-file {module_name}."
        )
    return (
        f"{message} It is looked for in {os.getcwd()} and on sys.path: run from the directory "
        "that contains it, or pass --chdir DIR."
    )


def _load_file(path: str) -> ModuleType:
    """Execute the Python file at ``path`` as a module (registered in sys.modules, so that
    pickling and dataclasses that look it up work), as uWSGI's wsgi-file does."""
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise AppImportError(f'wsgi-file "{path}" does not exist.')
    # A name that cannot collide with an importable module, but stays recognisable.
    name = "muxwsgi_wsgi_file_" + "".join(c if c.isalnum() else "_" for c in full)
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise AppImportError(f'wsgi-file "{path}" cannot be loaded as Python.')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if not isinstance(exc, Exception):
            raise
        raise AppImportError(_crashed(f'wsgi-file "{path}"', exc)) from exc
    return module


def _crashed(what: str, exc: Exception) -> str:
    """One line for an exception raised while a module executes."""
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return f"Error while importing {what}: {type(exc).__name__}" + (f": {detail}" if detail else "")
