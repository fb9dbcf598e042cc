"""Write docs/configuration.md from the settings table in server/config.py.

    python scripts/gen_settings_doc.py          # rewrite the file
    python scripts/gen_settings_doc.py --check  # exit 1, printing a diff, if the file is stale

Needs the package importable (``pip install -e .``): server/ is ``muxwsgi.server``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from muxwsgi.server.config_docs import render_settings_markdown

TARGET = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, compare) the docs file; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 with a diff if the file is stale"
    )
    args = parser.parse_args(argv)
    text = render_settings_markdown()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(True), text.splitlines(True), str(TARGET), "generated"
        )
        sys.stdout.writelines(diff)
        print(f"\n{TARGET} is stale: run python scripts/gen_settings_doc.py", file=sys.stderr)
        return 1
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
