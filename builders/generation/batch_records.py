"""The batch backend's record of what it submitted, kept in the generation cache folder.

One JSON file per request file under `<cache>/batches/`, written (atomically, fsynced) before the
file is uploaded, again with its file id before the batch is created, and again with the batch id
as soon as the provider returns it. A killed or repeated run reads these records first: a batch id
is polled and collected, never submitted again; a file id without a batch id is looked up among
the provider's batches by its input file (the create may have happened just before the kill). A
record is deleted once every answer of its batch is cached, so a finished run leaves none (and
the cache folder holds the same files on every machine).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builders.generation.cache import _fsync_dir
from core.io import atomic_path

FOLDER = "batches"


@dataclass
class BatchRecord:
    """One request file: its requests (custom id = cache key -> prompt id) and what the provider
    called it."""

    name: str  # sha256 of the request file (the record's file name)
    attempt: int  # 0: first submission; k: the k-th resubmission of failed requests
    requests: dict[str, str] = field(default_factory=dict)
    file_id: str | None = None
    batch_id: str | None = None


class BatchRecords:
    """The `batches/` folder of a generation cache."""

    def __init__(self, cache_root: str | Path) -> None:
        self.root = Path(cache_root) / FOLDER

    def load(self) -> list[BatchRecord]:
        """Every record, in name order."""
        if not self.root.is_dir():
            return []
        return [BatchRecord(**json.loads(p.read_text())) for p in sorted(self.root.glob("*.json"))]

    def save(self, record: BatchRecord) -> None:
        """Write `record` durably (a kill at any moment leaves the old or the new version)."""
        with atomic_path(self.root / f"{record.name}.json") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(record), fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(self.root)

    def drop(self, record: BatchRecord) -> None:
        """Forget `record` (its answers are cached); the folder goes with the last one."""
        (self.root / f"{record.name}.json").unlink(missing_ok=True)
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()
