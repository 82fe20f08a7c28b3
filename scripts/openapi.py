#!/usr/bin/env python3
"""Rewrite docs/openapi.json from the job API's routes (reportrelay.handlers.api); --check only compares.

The document is generated from the code, never edited by hand: change a route, run this, commit both.
tests/api/test_openapi_document.py fails while the committed document differs from the generated one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "openapi.json"
sys.path.insert(0, str(ROOT / "functions"))


def render() -> str:
    """The document as committed: two-space indents, keys in the generator's order, one final newline."""
    from reportrelay.handlers.api import openapi_document

    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/openapi.json is out of date")
    args = parser.parse_args(argv)
    text = render()
    current = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
    if args.check:
        if current != text:
            print(f"{DOCUMENT.relative_to(ROOT)} is out of date: run make openapi", file=sys.stderr)
            return 1
        return 0
    if current != text:
        DOCUMENT.write_text(text, encoding="utf-8")
        print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
