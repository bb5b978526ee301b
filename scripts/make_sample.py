"""Write the embedded FLAN-v2 sample (`sample/flan/`), in the DataProvenanceInitiative layout.

The texts live in `sample/texts/<submix>.jsonl`, one row per line in the real FLAN export format:
`inputs`, `targets`, `task_source`, `task_name`, `template_type`. Every text is written for this
project (templates and facts of our own); task names are real FLAN task names, so license
resolution works on the sample. The sample plants exact duplicates (same text up to case, spaces
and punctuation), near duplicates (a few words changed), few-shot rows, multiple-choice rows with
options, and BIG-Bench-style T0 rows the default exclusion removes. A row may carry a `note`
saying which of these it is ("near duplicate of line 4": lines of the same file, from 1); notes
are documentation and are not written to the sample.

Run: `python scripts/make_sample.py sample/flan` (deterministic: same bytes every time).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TEXTS = Path(__file__).resolve().parent.parent / "sample" / "texts"
SCHEMA = pa.schema(
    [
        ("inputs", pa.string()),
        ("targets", pa.string()),
        ("task_source", pa.string()),
        ("task_name", pa.string()),
        ("template_type", pa.string()),
    ]
)
SOURCES = {"cot": "CoT", "niv2": "NIv2", "t0": "P3", "flan2021": "Flan2021", "dialog": "Dialog"}


def read_texts(path: Path, submix: str) -> list[dict[str, str]]:
    """The rows of one submix's JSONL file, without their notes; a malformed row stops the run."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        rec = json.loads(line)
        rec.pop("note", None)
        if set(rec) != set(SCHEMA.names) or not all(isinstance(v, str) for v in rec.values()):
            raise SystemExit(f"{path}:{n}: a row needs exactly the string fields {SCHEMA.names} (and a note)")
        if rec["task_source"] != SOURCES[submix]:
            raise SystemExit(f"{path}:{n}: task_source {rec['task_source']!r}, expected {SOURCES[submix]!r}")
        rows.append(rec)
    return rows


def build(out: Path, texts: Path = TEXTS) -> dict[str, int]:
    """Write one Parquet shard per submix under `out`, DPI layout; return the row counts."""
    counts = {}
    for submix in SOURCES:
        rows = read_texts(texts / f"{submix}.jsonl", submix)
        folder = out / f"{submix}_submix_original" / "data"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        pq.write_table(table, folder / "train-00000-of-00001.parquet", compression="zstd")
        counts[submix] = len(rows)
    return counts


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="sample/flan", type=Path, help="where to write the sample")
    ap.add_argument("--texts", default=TEXTS, type=Path, help="folder of <submix>.jsonl files")
    args = ap.parse_args()
    print(build(args.out, args.texts))
