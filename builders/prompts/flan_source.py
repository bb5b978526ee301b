"""Read FLAN-v2 submixes from a local folder or the Hub, in either Hub layout.

Layouts:
- DataProvenanceInitiative: `{root}/{submix}_submix_original/**/*.parquet` (on the Hub, one
  dataset repository per submix: `DataProvenanceInitiative/{submix}_submix_original`).
- Open-Orca/FLAN: `{root}/{prefix}_{zs,fs}{opt,noopt}_data/*.parquet`, prefix `flan` for
  flan2021; columns may carry a leading underscore (`_task_name`).

Every file is checked before its rows are used: a missing column or a non-text column is a
`SourceError` naming the file and column. Row-level faults (null fields, empty inputs, invalid
UTF-8) become rows of `removed.parquet` with a reason, never a crash inside polars.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders.prompts.control_chars import control_char_fault
from core.errors import InputError
from core.io import reading
from core.schema import TEMPLATE_TYPES

logger = logging.getLogger(__name__)

FIELDS: tuple[str, ...] = ("inputs", "targets", "task_source", "task_name", "template_type")
OPENORCA_PREFIX = {"cot": "cot", "niv2": "niv2", "t0": "t0", "flan2021": "flan", "dialog": "dialog"}
DPI_HUB_TEMPLATE = "DataProvenanceInitiative/{submix}_submix_original"
OPENORCA_HUB_ID = "Open-Orca/FLAN"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.{}-]+$")
BATCH_ROWS = 16_384  # rows per batch read (a batch of long prompts decodes into several copies)


class SourceError(InputError):
    """A FLAN source file or folder cannot be used as it is."""


@dataclass(frozen=True)
class SourceFiles:
    """The Parquet files of each submix, and the layout they were found in."""

    layout: str
    files: dict[str, list[Path]]
    revision: dict[str, str] = field(default_factory=dict)
    roots: dict[str, Path] = field(default_factory=dict)

    def relative(self, submix: str, path: Path) -> str:
        """`path` relative to its submix's root, so outputs do not depend on where the source lies."""
        root = self.roots.get(submix)
        try:
            return path.relative_to(root).as_posix() if root else path.as_posix()
        except ValueError:
            return path.as_posix()


def template_of(folder: str) -> str | None:
    """The template type of an Open-Orca/FLAN folder name (`cot_zsopt_data` -> `zs_opt`), else None."""
    m = re.fullmatch(r"[a-z0-9]+_(zs|fs)(opt|noopt)_data", folder)
    return f"{m.group(1)}_{m.group(2)}" if m else None


def discover(root: str | Path, submixes: Iterable[str]) -> SourceFiles:
    """Find the Parquet files of `submixes` under a local `root` in either layout."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root}: FLAN source folder not found")
    submixes = list(submixes)
    dpi = {s: sorted((root / f"{s}_submix_original").rglob("*.parquet")) for s in submixes}
    orca = {
        s: sorted(
            p
            for d in sorted(root.glob(f"{OPENORCA_PREFIX[s]}_*_data"))
            if template_of(d.name)
            for p in d.rglob("*.parquet")
        )
        for s in submixes
    }
    n_dpi, n_orca = sum(map(len, dpi.values())), sum(map(len, orca.values()))
    if n_dpi and n_orca:
        raise SourceError(f"{root}: holds both the DataProvenanceInitiative and the Open-Orca/FLAN layout")
    if not n_dpi and not n_orca:
        raise SourceError(
            f"{root}: no Parquet files for submixes {submixes} in either layout "
            "('{submix}_submix_original/**/*.parquet' or '{prefix}_{zs,fs}{opt,noopt}_data/*.parquet')"
        )
    roots = {s: root for s in submixes}
    return SourceFiles("dpi", dpi, roots=roots) if n_dpi else SourceFiles("openorca", orca, roots=roots)


def is_hub_id(source: str) -> bool:
    """True when `source` names a Hub dataset rather than a local folder.

    `owner/name` is a Hub id unless it exists locally or its first part is a local folder
    (`data/nothing_here` is a missing folder under `data/`, not a dataset of a user `data`).
    """
    path = Path(source)
    return not path.exists() and not Path(path.parts[0]).is_dir() and bool(_HUB_ID.match(source))


def fetch_from_hub(
    source: str, submixes: Iterable[str], template_types: Iterable[str], revision: str | None
) -> SourceFiles:
    """Download only the needed submixes (and template folders) of a Hub dataset."""
    from huggingface_hub import snapshot_download

    submixes, template_types = list(submixes), list(template_types)
    if "{submix}" in source:
        files, revs, roots = {}, {}, {}
        for s in submixes:
            repo = source.format(submix=s)
            path = Path(
                snapshot_download(
                    repo, repo_type="dataset", revision=revision, allow_patterns=["*.parquet", "**/*.parquet"]
                )
            )
            files[s] = sorted(path.rglob("*.parquet"))
            revs[s] = path.name
            roots[s] = path
        return SourceFiles("dpi", files, revs, roots)
    patterns = [
        f"{OPENORCA_PREFIX[s]}_{t.replace('_', '')}_data/*.parquet" for s in submixes for t in template_types
    ]
    path = Path(snapshot_download(source, repo_type="dataset", revision=revision, allow_patterns=patterns))
    found = discover(path, submixes)
    return SourceFiles(found.layout, found.files, {s: path.name for s in submixes}, found.roots)


def resolve_source(
    source: str, submixes: Iterable[str], template_types: Iterable[str], revision: str | None = None
) -> SourceFiles:
    """A local folder, or a Hub dataset id fetched with `snapshot_download(allow_patterns=...)`."""
    if is_hub_id(source):
        logger.info("fetching %s (revision %s) from the Hub", source, revision or "main")
        try:
            return fetch_from_hub(source, submixes, template_types, revision)
        except (OSError, ValueError) as exc:  # huggingface_hub's errors derive from these
            raise SourceError(
                f"prompts.source {source!r}: no such local folder, and fetching it as a Hub dataset "
                f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
    return discover(source, submixes)


def _column_map(path: Path, schema: pa.Schema) -> dict[str, str]:
    names = set(schema.names)
    mapping = {}
    for f in FIELDS:
        if f in names:
            mapping[f] = f
        elif f"_{f}" in names:
            mapping[f] = f"_{f}"
        else:
            raise SourceError(f"{path}: missing column '{f}' (columns: {sorted(names)})")
        typ = schema.field(mapping[f]).type
        if not (
            pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
            or pa.types.is_binary(typ)
            or pa.types.is_large_binary(typ)
            or pa.types.is_string_view(typ)
        ):
            raise SourceError(f"{path}: column '{mapping[f]}' must be text, found {typ}")
    return mapping


def _decode(col: pa.ChunkedArray | pa.Array) -> tuple[pl.Series, list[int]]:
    """A text column as a polars String series; rows that are not valid UTF-8 become null.

    Returns the series and the positions of the invalid rows. Valid batches stay in Arrow and
    polars (no Python objects); only a batch with an invalid value is decoded row by row.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    binary = arr if pa.types.is_large_binary(arr.type) else arr.cast(pa.large_binary())
    text = binary.view(pa.large_string())
    try:
        text.validate(full=True)
        return pl.Series(values=text, dtype=pl.String), []
    except pa.ArrowInvalid:
        values: list[str | None] = []
        bad: list[int] = []
        for i, raw in enumerate(binary.to_pylist()):
            try:
                values.append(None if raw is None else raw.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(None)
                bad.append(i)
        return pl.Series(values=values, dtype=pl.String), bad


def read_batches(path: Path, submix: str, label: str | None = None) -> Iterator[pl.DataFrame]:
    """Yield frames of one file: the five FLAN fields plus `fault` (null, or `reason:column`)."""
    with reading(path):
        yield from _read_batches(path, submix, label)


def _read_batches(path: Path, submix: str, label: str | None) -> Iterator[pl.DataFrame]:
    pf = pq.ParquetFile(path)
    mapping = _column_map(path, pf.schema_arrow)
    columns = [mapping[f] for f in FIELDS]
    # one row group at a time: iter_batches over the whole file reads ahead across row groups
    batches = (b for g in range(pf.num_row_groups) for b in pf.iter_batches(BATCH_ROWS, [g], columns))
    for batch in batches:
        cols: dict[str, pl.Series] = {}
        faults: list[str | None] = [None] * batch.num_rows
        any_fault = False
        for f in FIELDS:
            series, bad = _decode(batch.column(mapping[f]))
            cols[f] = series.alias(f)
            for i in bad:
                any_fault = True
                faults[i] = faults[i] or f"invalid_utf8:{f}"
        fault = pl.Series("fault", faults if any_fault else None, dtype=pl.String)
        if not any_fault:
            fault = pl.repeat(None, batch.num_rows, dtype=pl.String, eager=True).alias("fault")
        df = pl.DataFrame([*cols.values(), fault])
        null_fault = pl.lit(None, dtype=pl.String)
        for f in reversed(FIELDS):
            null_fault = pl.when(pl.col(f).is_null()).then(pl.lit(f"null_field:{f}")).otherwise(null_fault)
        df = df.with_columns(
            pl.coalesce(
                "fault",
                null_fault,
                pl.when(pl.col("inputs").str.strip_chars().str.len_chars() == 0).then(
                    pl.lit("empty_input:inputs")
                ),
                pl.when(~pl.col("template_type").is_in(list(TEMPLATE_TYPES))).then(
                    pl.lit("unknown_template_type:template_type")
                ),
                control_char_fault(["inputs", "targets"]),
            ).alias("fault"),
            pl.lit(submix).alias("submix"),
            pl.lit(label or str(path)).alias("file"),
        )
        yield df
