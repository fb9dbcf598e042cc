"""Loading the application: MODULE:ATTR, MODULE alone, dotted attributes, wsgi-files, chdir,
and one-line errors."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from muxwsgi.server.importer import AppImportError, import_app

GOOD = """\
def application(environ, start_response):
    return [b"default"]

def app(environ, start_response):
    return [b"app"]

class Factory:
    app = staticmethod(app)

notcallable = 5
"""


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory of small modules, as the working directory; sys.path, sys.modules and the
    working directory are restored afterwards (import_app changes all three)."""
    (tmp_path / "goodapp.py").write_text(GOOD)
    (tmp_path / "brokenapp.py").write_text("import definitely_missing_dependency\n")
    (tmp_path / "raisingapp.py").write_text("raise RuntimeError('config missing\\nmore')\n")
    (tmp_path / "pkgapp").mkdir()
    (tmp_path / "pkgapp" / "__init__.py").write_text("")
    (tmp_path / "pkgapp" / "wsgi.py").write_text(GOOD)
    (tmp_path / "pkgapp" / "broken.py").write_text("from pkgapp import missing_sibling\n")
    (tmp_path / "pkgapp" / "relative.py").write_text("from . import absent_module\n")
    (tmp_path / "pkgapp" / "sibling.py").write_text("import pkgapp.missing_module\n")
    (tmp_path / "wsgi.py").write_text(GOOD)
    (tmp_path / "crash_wsgi.py").write_text("1 / 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules = set(sys.modules)
    importlib.invalidate_caches()
    yield tmp_path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def call(app: object) -> object:
    assert callable(app)
    return app({}, lambda status, headers, exc_info=None: None)


@pytest.mark.parametrize(
    ("spec", "body"),
    [
        ("goodapp:application", [b"default"]),
        ("goodapp", [b"default"]),  # MODULE alone means MODULE:application (uWSGI)
        ("goodapp:app", [b"app"]),
        ("goodapp:Factory.app", [b"app"]),  # dotted attribute
        ("pkgapp.wsgi:app", [b"app"]),
        ("pkgapp.wsgi", [b"default"]),
    ],
)
def test_import_forms(app_dir: Path, spec: str, body: list[bytes]) -> None:
    assert call(import_app(spec)) == body


def test_the_very_object_is_returned(app_dir: Path) -> None:
    assert import_app("goodapp:app") is sys.modules["goodapp"].app


@pytest.mark.parametrize(
    ("spec", "body"), [(None, [b"default"]), ("app", [b"app"]), (":app", [b"app"])]
)
def test_wsgi_file(app_dir: Path, spec: str | None, body: list[bytes]) -> None:
    app = import_app(spec, wsgi_file="wsgi.py")
    assert call(app) == body
    assert getattr(app, "__module__", "").startswith("muxwsgi_wsgi_file_")
    assert "wsgi" not in sys.modules  # loaded from the file, not imported by name


def test_chdir_and_sys_path(app_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert call(import_app("goodapp:app", chdir=str(app_dir))) == [b"app"]
    assert os.getcwd() == str(app_dir)
    assert sys.path[0] == str(app_dir)  # like gunicorn: the app's directory first
    import_app("goodapp:app")
    assert sys.path.count(str(app_dir)) == 1  # not inserted twice


def test_wsgi_file_relative_to_chdir(
    app_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert call(import_app("app", wsgi_file="wsgi.py", chdir=str(app_dir))) == [b"app"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("goodapp:", 'Import string "goodapp:" must be in format "<module>:<attribute>".'),
        (":app", 'Import string ":app" must be in format "<module>:<attribute>".'),
        ("a:b:c", 'Import string "a:b:c" must be in format "<module>:<attribute>".'),
        (".goodapp:app", 'Import string ".goodapp:app" must be in format "<module>:<attribute>".'),
        (None, 'Import string "None" must be in format "<module>:<attribute>".'),
        ("nosuchmodule:app", 'Could not import module "nosuchmodule".'),
        ("nosuchpkg.sub:app", 'Could not import module "nosuchpkg.sub".'),
        ("pkgapp.nosuch:app", 'Could not import module "pkgapp.nosuch".'),
        ("goodapp:nope", 'Attribute "nope" not found in module "goodapp".'),
        ("goodapp:Factory.nope", 'Attribute "Factory.nope" not found in module "goodapp".'),
        ("goodapp:notcallable",
         'Attribute "notcallable" in module "goodapp" is not callable (it is int): a WSGI '
         "application must be."),
        # The user's module imports something missing: name that, not the user's module.
        ("brokenapp:app",
         "No module named 'definitely_missing_dependency' (imported by module \"brokenapp\")."),
        ("pkgapp.sibling:app",
         "No module named 'pkgapp.missing_module' (imported by module \"pkgapp.sibling\")."),
        ("pkgapp.broken:app",
         "cannot import name 'missing_sibling' from 'pkgapp'"),
        ("pkgapp.relative:app",
         "cannot import name 'absent_module' from 'pkgapp'"),
        ("raisingapp:app",
         'Error while importing module "raisingapp": RuntimeError: config missing'),
    ],
)  # fmt: skip
def test_import_errors_are_one_clear_line(app_dir: Path, spec: str | None, message: str) -> None:
    with pytest.raises(AppImportError) as info:
        import_app(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_dependency_keeps_its_cause(app_dir: Path) -> None:
    with pytest.raises(AppImportError) as info:
        import_app("brokenapp:app")
    assert str(info.value) == (
        "No module named 'definitely_missing_dependency' (imported by module \"brokenapp\")."
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert info.value.__cause__.name == "definitely_missing_dependency"


def test_an_exception_in_the_module_is_chained(app_dir: Path) -> None:
    with pytest.raises(AppImportError) as info:
        import_app("raisingapp:app")
    assert (
        str(info.value) == 'Error while importing module "raisingapp": RuntimeError: config missing'
    )
    assert isinstance(info.value.__cause__, RuntimeError)  # its traceback stays available


@pytest.mark.parametrize(
    ("spec", "wsgi_file", "message"),
    [
        (None, "missing.py", 'wsgi-file "missing.py" does not exist.'),
        (None, "crash_wsgi.py",
         'Error while importing wsgi-file "crash_wsgi.py": ZeroDivisionError: division by zero'),
        ("nope", "wsgi.py", 'Attribute "nope" not found in module "wsgi.py".'),
        ("goodapp:app", "wsgi.py",
         'With a wsgi-file, the application must be an attribute name ("app"), not '
         '"goodapp:app".'),
    ],
)  # fmt: skip
def test_wsgi_file_errors(app_dir: Path, spec: str | None, wsgi_file: str, message: str) -> None:
    modules = set(sys.modules)
    with pytest.raises(AppImportError) as info:
        import_app(spec, wsgi_file=wsgi_file)
    assert str(info.value) == message
    if "crash" in wsgi_file:
        assert set(sys.modules) == modules  # a failed load leaves no half-made module behind


def test_chdir_to_a_missing_directory(app_dir: Path) -> None:
    with pytest.raises(AppImportError) as info:
        import_app("goodapp:app", chdir=str(app_dir / "nowhere"))
    assert str(info.value) == (
        f'Could not change to directory "{app_dir / "nowhere"}": No such file or directory.'
    )
