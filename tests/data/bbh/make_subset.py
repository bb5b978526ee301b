"""Rebuild the BBH subset here from a full BIG-Bench Hard copy (../shared/data/eval/bbh by default).

    python -m tests.data.bbh.make_subset [SOURCE]   # from the repository root

Keeps the multiple-choice tasks only (the ones the scorer's option parser reads), each with its
first `ROWS` examples plus the examples whose target is not an option letter or whose options are
cut off (the cases the scorer test must step over). Same JSON layout as the source: {"canary",
"examples": [{"input", "target"}]}. Source: github.com/suzgunmirac/BIG-Bench-Hard (MIT, see LICENSE).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = HERE.parents[2] / ".." / "shared" / "data" / "eval" / "bbh"
ROWS = 10


def is_multiple_choice(example: dict) -> bool:
    return example["input"].count("\n(") >= 2 and example["target"].startswith("(")


def main(argv: list[str] | None = None) -> None:
    source = Path((argv or sys.argv[1:] or [SOURCE])[0])
    for old in HERE.glob("*.json"):
        old.unlink()
    for path in sorted(source.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        examples = data["examples"]
        if not any(is_multiple_choice(ex) for ex in examples):
            continue
        keep = [ex for i, ex in enumerate(examples) if i < ROWS or not is_multiple_choice(ex)]
        subset = {"canary": data["canary"], "examples": keep}
        (HERE / path.name).write_text(json.dumps(subset, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
