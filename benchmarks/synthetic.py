"""Synthetic FLAN-format sources of any size, for tests and benchmarks (not for training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from builders.prompts.flan_source import OPENORCA_PREFIX

SOURCE_NAME = {"cot": "CoT", "niv2": "NIv2", "t0": "P3", "flan2021": "Flan2021", "dialog": "Dialog"}
_WORDS = np.array(
    [
        "river",
        "stone",
        "lamp",
        "orbit",
        "cedar",
        "violet",
        "harbor",
        "signal",
        "meadow",
        "copper",
        "lantern",
        "quartz",
        "thunder",
        "maple",
    ]
)


def synthetic_table(submix: str, task_sizes: list[int], seed: int = 0, fs_share: float = 0.0) -> pa.Table:
    """Rows of one submix: task `k` has `task_sizes[k]` rows; a share are few-shot."""
    rng = np.random.default_rng(seed)
    n = int(sum(task_sizes))
    task_idx = np.repeat(np.arange(len(task_sizes)), task_sizes)
    words = _WORDS[rng.integers(0, len(_WORDS), size=(n, 6))]
    opt = rng.random(n) < 0.5
    few = rng.random(n) < fs_share
    template = np.where(few, "fs_", "zs_") + np.where(opt, "opt", "noopt")
    inputs = [
        f"Task {submix}-{t} item {i}: {' '.join(w)}?" + ("\nOPTIONS:\n- yes\n- no" if o else "")
        for i, (t, w, o) in enumerate(zip(task_idx, words, opt, strict=True))
    ]
    return pa.table(
        {
            "inputs": pa.array(inputs, pa.string()),
            "targets": pa.array([f"answer {i}" for i in range(n)], pa.string()),
            "task_source": pa.array([SOURCE_NAME[submix]] * n, pa.string()),
            "task_name": pa.array([f"{submix}_task_{t:04d}" for t in task_idx], pa.string()),
            "template_type": pa.array(template.tolist(), pa.string()),
        }
    )


def write_source(root: str | Path, tables: dict[str, pa.Table], layout: str = "dpi", shards: int = 1) -> Path:
    """Write per-submix tables under `root` in the `dpi` or `openorca` layout."""
    root = Path(root)
    for submix, table in tables.items():
        if layout == "dpi":
            folder = root / f"{submix}_submix_original" / "data"
            folder.mkdir(parents=True, exist_ok=True)
            step = -(-table.num_rows // shards)
            for k in range(shards):
                pq.write_table(table.slice(k * step, step), folder / f"train-{k:05d}-of-{shards:05d}.parquet")
        elif layout == "openorca":
            for tt in ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt"):
                part = table.filter(pc.equal(table["template_type"], tt))
                if part.num_rows == 0:
                    continue
                folder = root / f"{OPENORCA_PREFIX[submix]}_{tt.replace('_', '')}_data"
                folder.mkdir(parents=True, exist_ok=True)
                renamed = part.rename_columns(
                    [c if c in ("inputs", "targets") else f"_{c}" for c in part.column_names]
                )
                pq.write_table(renamed, folder / "part.0.parquet")
        else:
            raise ValueError(f"unknown layout {layout!r}")
    return root
