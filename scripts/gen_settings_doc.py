"""Write docs/configuration.md from the settings declared in server/config.py.

python scripts/gen_settings_doc.py          # rewrite the file
python scripts/gen_settings_doc.py --check  # exit 1 if the file is stale (CI, tests)
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from muxwsgi.server.config import render_settings_markdown

TARGET = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def main(argv: list[str]) -> int:
    text = render_settings_markdown()
    if "--check" in argv:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), text.splitlines(True), str(TARGET), "generated"
                )
            )
            print(f"\n{TARGET} is stale: run python scripts/gen_settings_doc.py", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
