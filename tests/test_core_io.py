"""core.io's Parquet table: `ParquetTable` (read a row group at a time) and `TableWriter` (atomic)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import InputError, PipelineError
from core.io import (
    ROW_GROUP_ROWS,
    ParquetTable,
    TableWriter,
    plain_strings,
    write_parquet,
    write_parquet_frames,
)

SCHEMA = pa.schema(
    [pa.field("id", pa.string(), nullable=False), pa.field("n", pa.int32()), pa.field("text", pa.string())]
)


def _frame(n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"{i:08d}" for i in range(start, start + n)],
            "n": pl.Series(range(start, start + n), dtype=pl.Int32),
            "text": [f"row {i} " * (i % 7) for i in range(start, start + n)],
        }
    )


def _group_sizes(path: Path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


@pytest.fixture
def small_groups(tmp_path: Path) -> Path:
    """10 rows in row groups of 4, 4 and 2, `n` stored as int64 and `text` as large strings."""
    path = tmp_path / "t.parquet"
    df = _frame(10).with_columns(pl.col("n").cast(pl.Int64))
    pq.write_table(df.to_arrow(), path, row_group_size=4)
    return path


def test_table_reads_its_footer_and_one_row_group_at_a_time(small_groups: Path) -> None:
    table = ParquetTable(small_groups)
    assert (table.num_rows, table.num_row_groups) == (10, 3)
    assert table.names == ["id", "n", "text"]
    assert table.row_group(1, ["id"])["id"].to_list() == [f"{i:08d}" for i in range(4, 8)]
    # a batch never spans two row groups
    assert [b.height for b in table.batches(["id"], rows=3)] == [3, 1, 3, 1, 2]
    assert [b["n"].to_list() for b in table.batches(["n"], groups=[2])] == [[8, 9]]
    assert [b.num_rows for b in table.arrow_batches(rows=100)] == [4, 4, 2]
    assert table.read().equals(pl.read_parquet(small_groups))
    assert table.lazy().select(pl.len()).collect().item() == 10
    assert table.null_count("text") == 0


def test_table_casts_to_its_schema(small_groups: Path) -> None:
    assert ParquetTable(small_groups).row_group(0)["n"].dtype == pl.Int64
    table = ParquetTable(small_groups, SCHEMA)
    assert table.row_group(0)["n"].dtype == pl.Int32
    assert {b["n"].dtype for b in table.batches()} == {pl.Int32}
    assert table.read(["n"])["n"].dtype == pl.Int32


def test_table_refuses_missing_columns_and_names_the_file(small_groups: Path, tmp_path: Path) -> None:
    class MyError(PipelineError):
        pass

    with pytest.raises(MyError, match=r"t\.parquet: missing columns \['reference'\]"):
        ParquetTable(small_groups, required=("id", "reference"), error=MyError)
    wider = pa.schema([*SCHEMA, pa.field("extra", pa.bool_())])
    with pytest.raises(InputError, match=r"missing columns \['extra'\]"):
        ParquetTable(small_groups, wider)
    with pytest.raises(InputError, match=r"nope\.parquet: Parquet file not found"):
        ParquetTable(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(small_groups.read_bytes()[:-20])
    with pytest.raises(InputError, match=r"bad\.parquet: unreadable Parquet file \(footer\)"):
        ParquetTable(bad)


def test_null_count_with_and_without_statistics(tmp_path: Path) -> None:
    df = pl.DataFrame({"id": ["a", "b", "c"], "text": ["x", None, None]})
    for stats in (True, False):
        path = tmp_path / f"s{stats}.parquet"
        pq.write_table(df.to_arrow(), path, write_statistics=stats, row_group_size=2)
        assert ParquetTable(path).null_count("text") == 2
        assert ParquetTable(path).null_count("id") == 0


def test_writer_keeps_each_call_as_row_groups(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    with TableWriter(out, SCHEMA) as writer:
        writer.write(_frame(5))
        writer.write(_frame(ROW_GROUP_ROWS + 10, 5))
        writer.write(_frame(0))  # an empty row group, as pyarrow writes it
        writer.write(_frame(3, 100_000).to_arrow())  # large strings and int32 from Arrow, cast
    assert writer.rows == ROW_GROUP_ROWS + 18
    assert _group_sizes(out) == [5, ROW_GROUP_ROWS, 10, 0, 3]
    assert pq.read_schema(out).remove_metadata() == SCHEMA
    assert pl.read_parquet(out)["n"].to_list()[-3:] == [100_000, 100_001, 100_002]


def test_regrouped_writer_gives_write_parquet_bytes(tmp_path: Path) -> None:
    df = _frame(ROW_GROUP_ROWS + 777)
    write_parquet(df, tmp_path / "whole.parquet", SCHEMA)
    with TableWriter(tmp_path / "parts.parquet", SCHEMA, regroup=True) as writer:
        for i in range(0, df.height, 10_000):
            part = df.slice(i, 10_000)
            writer.write(part if i % 20_000 else part.to_arrow())
    assert (tmp_path / "parts.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert _group_sizes(tmp_path / "parts.parquet") == [ROW_GROUP_ROWS, 777]
    assert write_parquet_frames([], tmp_path / "none.parquet", SCHEMA) == 0
    write_parquet(_frame(0), tmp_path / "empty.parquet", SCHEMA)
    assert (tmp_path / "none.parquet").read_bytes() == (tmp_path / "empty.parquet").read_bytes()


def test_writer_without_rows_writes_no_row_group(tmp_path: Path) -> None:
    with TableWriter(tmp_path / "e.parquet", SCHEMA):
        pass
    assert _group_sizes(tmp_path / "e.parquet") == []
    assert ParquetTable(tmp_path / "e.parquet", SCHEMA).num_rows == 0


def test_writer_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    write_parquet(_frame(2), out, SCHEMA)
    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="stop"), TableWriter(out, SCHEMA) as writer:
        writer.write(_frame(ROW_GROUP_ROWS + 1))
        raise RuntimeError("stop")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]  # no temp left
    with pytest.raises(ValueError, match="lacks columns"), TableWriter(out, SCHEMA, regroup=True) as writer:
        writer.write(_frame(3).drop("text"))
    assert out.read_bytes() == before


def test_long_text_columns_get_no_dictionary(tmp_path: Path) -> None:
    df = _frame(50).with_columns(pl.lit("same answer").alias("text"))
    for name, long_text in (("dict", ()), ("plain", ("text",))):
        with TableWriter(tmp_path / f"{name}.parquet", SCHEMA, long_text=long_text) as writer:
            writer.write(df)

    def encodings(name: str, column: int) -> tuple[str, ...]:
        return pq.ParquetFile(tmp_path / f"{name}.parquet").metadata.row_group(0).column(column).encodings

    assert "RLE_DICTIONARY" in encodings("dict", 2)
    assert "RLE_DICTIONARY" not in encodings("plain", 2)
    assert "RLE_DICTIONARY" in encodings("plain", 0)  # the other columns keep theirs


def test_plain_strings() -> None:
    a, c, extra = (
        pa.field("a", pa.large_string(), nullable=False),
        pa.field("c", pa.int8()),
        [pa.field("d", pa.bool_())],
    )
    wide = pa.schema([a, pa.field("b", pa.string_view()), c])
    want = [a.with_type(pa.string()), pa.field("b", pa.string()), c, *extra]
    assert plain_strings(wide, extra) == pa.schema(want)
    assert plain_strings(wide, keep_nullable=False).field("a").nullable is True
