"""Unit tests of dedup: normalization, bulk MinHash vs datasketch, LSH, decontamination."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH

from core.config import ParamsError, parse_section
from dedup.config import DedupConfig, EvalSetSpec
from dedup.decontam import DedupInputError, load_eval_texts
from dedup.lsh import band_keys, candidate_pairs, lsh_params
from dedup.minhash import (
    MinHashParams,
    batch_shingles,
    bulk_signatures,
    datasketch_minhash,
    shingle_hash,
    shingle_hash64,
    shingles,
    to_datasketch,
)
from dedup.normalize import exact_keys, normalize_arrow, normalize_batch, normalize_text
from dedup.pipeline import dedup_frame
from dedup.set_kernels import star_clusters

DATA = Path(__file__).parent / "data" / "dedup"
SEED = 20231101
BBH = Path(__file__).parent / "data" / "bbh"  # a BIG-Bench Hard subset (see its README.md)


def golden() -> pl.DataFrame:
    return pl.read_ndjson(DATA / "prompts.jsonl")


def golden_eval() -> EvalSetSpec:
    return EvalSetSpec(name="golden", path=str(DATA / "eval.jsonl"), text_column="prompt")


def test_normalize_arrow_slices_match_the_list_path() -> None:
    texts = ["Hello World!", "Ça va? Très  bien", None, "abc DEF", "X  y", "ﬁnal One", "?!", "ẞ STRASSE"]
    want_all = [normalize_text(t or "") for t in texts]
    assert want_all[-1] == "ss strasse" and want_all[3] == "abc def"
    for kind in (pa.string(), pa.large_string()):
        arr = pa.array(texts, kind)
        for lo in range(len(texts)):
            for size in range(len(texts) - lo + 1):
                got = normalize_arrow(arr.slice(lo, size))
                assert [got.text(i) for i in range(size)] == want_all[lo : lo + size]
                assert got.offsets[0] == 0


def test_normalize_case_whitespace_punctuation() -> None:
    assert normalize_text("  What IS the capital,  of France?! ") == "what is the capital of france"
    assert normalize_text("Straße — “quoted”\ttext…") == "strasse quoted text"
    assert normalize_text("ﬁne  \n ①") == "fine 1"
    assert normalize_text("???") == ""
    batch = normalize_batch(["A  b.", "", " c,d ", "!!", "E"])
    assert [batch.text(i) for i in range(len(batch))] == ["a b", "", "c d", "", "e"]
    hi, lo = exact_keys(normalize_batch(["Hello, World!", "hello world", "hello worlds"]))
    assert (hi[0], lo[0]) == (hi[1], lo[1])
    assert (hi[0], lo[0]) != (hi[2], lo[2])


def test_punctuation_only_questions_are_not_merged() -> None:
    df = pl.DataFrame({"id": ["a", "b", "c"], "question": ["?", "!!!", " ? "]})
    result = dedup_frame(df, DedupConfig(), SEED)
    assert result.kept["id"].to_list() == ["a", "b"]
    assert result.removed.select("id", "reason", "kept_id").rows() == [("c", "exact_duplicate", "a")]


def test_bulk_shingle_hashes_equal_scalar() -> None:
    texts = ["The quick brown fox jumps over the lazy dog!", "two words", "", "Ünïcödé text, here and there"]
    sh = batch_shingles(normalize_batch(texts), 3)
    expected = [shingle_hash64(s) for t in texts for s in shingles(t, 3)]
    assert sh.hash64.tolist() == expected
    assert sh.counts().tolist() == [7, 1, 0, 3]


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
def test_signatures_equal_datasketch_hashvalues(scheme: str) -> None:
    params = MinHashParams(num_perm=128, seed=SEED, ngram=5, scheme=scheme)  # type: ignore[arg-type]
    texts = [*golden()["question"].to_list()[:12], "", "tiny"]
    sig = bulk_signatures(texts, params, chunk_size=5, workers=2)
    for text, row in zip(texts, sig, strict=True):
        ref = datasketch_minhash(text, params)  # datasketch's own update(), one shingle at a time
        assert np.array_equal(ref.hashvalues.astype(np.uint64), row.astype(np.uint64))
        wrapped = to_datasketch(row, params)
        assert wrapped.jaccard(ref) == 1.0


def test_signatures_interoperate_with_minhashlsh() -> None:
    params = MinHashParams(num_perm=128, seed=SEED)
    df = golden()
    sig = bulk_signatures(df["question"].to_list(), params)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for i, row in enumerate(sig):
        lsh.insert(str(i), to_datasketch(row, params))
    query = MinHash(num_perm=128, seed=SEED, hashfunc=shingle_hash)
    query.update_batch(shingles(df["question"][3], 5))
    assert "3" in lsh.query(query) and "4" in lsh.query(query)  # the planted near-duplicate pair


def test_bands_rows_must_match_num_perm() -> None:
    assert lsh_params(128, 0.8) == (9, 13)
    assert DedupConfig(lsh_threshold=None).lsh() == (32, 4)
    assert DedupConfig().lsh() == (42, 3)  # tuned below the threshold: pairs at 0.5 are found
    assert lsh_params(128, 0.8, 16, 8) == (16, 8)
    with pytest.raises(ValueError, match="bands x rows must equal num_perm"):
        lsh_params(128, 0.8, 10, 13)
    with pytest.raises(ParamsError, match=r"bands x rows must equal num_perm: 10 x 13 != 128"):
        parse_section(DedupConfig, {"bands": 10, "rows": 13}, section="dedup", source="params.yaml")


def test_star_clusters_have_no_chains_and_candidates() -> None:
    # 0~1 and 1~2 but not 0~2: 1 joins 0, and 2, linked only to a removed row, stays
    target = star_clusters(3, np.array([0, 1]), np.array([1, 2]), np.array([0.9, 0.9]))
    assert target.tolist() == [0, 0, 2]
    # a row joins its most similar kept row of a smaller index (ties: the smallest index)
    target = star_clusters(4, np.array([0, 1, 0, 1]), np.array([2, 2, 3, 3]), np.array([0.6, 0.8, 0.7, 0.7]))
    assert target.tolist() == [0, 1, 1, 0]
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 7, 3, 4], [5, 5, 5, 5]], dtype=np.uint32)
    u, v = candidate_pairs(band_keys(sig, 2, 2))
    assert list(zip(u.tolist(), v.tolist(), strict=True)) == [(0, 1), (0, 2)]
    # a bucket of 3 gives its 3 pairs; one of 20 a star of 19 from its smallest row
    keys = np.array([7] * 20 + [3, 9, 3, 3], dtype=np.uint64)[::-1].copy()[:, None]
    u, v = candidate_pairs(keys, np.arange(100, 124))
    pairs = set(zip(u.tolist(), v.tolist(), strict=True))
    assert {(100, 101), (100, 103), (101, 103)} <= pairs and (100, 102) not in pairs
    assert {p for p in pairs if p[0] >= 104} == {(104, w) for w in range(105, 124)}


def test_golden_dedup_and_decontamination() -> None:
    df = golden()
    cfg = DedupConfig(eval_sets=[golden_eval()])
    result = dedup_frame(df, cfg, SEED, {"golden": load_eval_texts(golden_eval())})
    removed = result.removed
    by_task = df.select("id", "task_name").join(removed, on="id")
    ids = df["id"].to_list()
    # case/whitespace/punctuation variants collapse onto the smallest id
    exact = by_task.filter(pl.col("reason") == "exact_duplicate")
    group = sorted(df.filter(pl.col("task_name") == "exact_group")["id"].to_list())
    assert sorted(exact["id"].to_list()) == group[1:]
    assert set(exact["kept_id"].to_list()) == {group[0]} == set(exact["cluster_id"].to_list())
    # the planted near duplicate (one word changed in 70) is removed, the smaller id kept
    near = by_task.filter(pl.col("reason") == "near_duplicate")
    pair = sorted(df.filter(pl.col("task_name") == "near_group")["id"].to_list())
    assert near["id"].to_list() == [pair[1]] and near["kept_id"].to_list() == [pair[0]]
    # 30 distinct prompts sharing a ~95-word template: the boilerplate alone merges none of them
    assert result.kept.filter(pl.col("task_name") == "template_group").height == 30
    assert result.stats["content"]["tasks_with_template"] >= 1
    # the prompt embedding an evaluation item is removed and names the set
    cont = by_task.filter(pl.col("reason") == "contaminated")
    assert cont["task_name"].to_list() == ["contaminated_group"]
    assert cont["detail"][0].startswith("golden: item 0")
    assert result.stats["contaminated"] == {"golden": 1}
    funnel = result.stats["funnel"]
    assert funnel["rows_in"] == funnel["rows_out"] + sum(funnel["removed"].values()) == len(ids)
    # kept rows carry their own id as cluster_id
    assert (result.kept["cluster_id"] == result.kept["id"]).all()


def test_kept_row_is_deterministic_under_shuffle_and_workers() -> None:
    df = golden()
    a = dedup_frame(df, DedupConfig(workers=1, chunk_size=7), SEED)
    b = dedup_frame(df.sample(fraction=1.0, shuffle=True, seed=3), DedupConfig(workers=2, chunk_size=4), SEED)
    assert a.kept.equals(b.kept)
    assert a.removed.equals(b.removed)


def test_unrecognised_templates_merge_distinct_prompts() -> None:
    # with the template never recognised, the shared ~95-word boilerplate merges distinct prompts
    blind = dedup_frame(golden(), DedupConfig(template_min_prompts=255), SEED)
    assert blind.kept.filter(pl.col("task_name") == "template_group").height < 30


def test_previous_release() -> None:
    df = golden()
    previous = df.filter(pl.col("task_name") == "near_group").head(1).with_columns(pl.lit("old1").alias("id"))
    previous = pl.concat(
        [previous.select("id", "question"), pl.DataFrame({"id": ["old2"], "question": ["x"]})]
    )
    result = dedup_frame(df, DedupConfig(), SEED, previous=previous)
    prev = result.removed.filter(pl.col("reason") == "in_previous_release")
    # both members of the near-duplicate pair match the old release's row
    assert prev.height == 2 and set(prev["kept_id"].to_list()) == {"old1"}
    assert result.stats["funnel"]["removed"]["near_duplicate"] == 0


def test_empty_question_is_an_error() -> None:
    df = golden().with_columns(
        pl.when(pl.col("task_name") == "misc")
        .then(pl.lit("   "))
        .otherwise(pl.col("question"))
        .alias("question")
    )
    with pytest.raises(DedupInputError, match=r"5 row\(s\) with an empty question \(ids: "):
        dedup_frame(df, DedupConfig(), SEED)


def test_missing_eval_text_column_is_an_error(tmp_path: Path) -> None:
    spec = EvalSetSpec(name="golden", path=str(DATA / "eval.jsonl"), text_column="question")
    with pytest.raises(DedupInputError, match=r"eval\.jsonl: text column 'question' not found .*qid, prompt"):
        load_eval_texts(spec)
    parquet = tmp_path / "e.parquet"
    pl.DataFrame({"text": ["a b c"]}).write_parquet(parquet)
    with pytest.raises(DedupInputError, match=r"e\.parquet: text column 'input' not found"):
        load_eval_texts(EvalSetSpec(name="p", path=str(parquet), text_column="input"))
    with pytest.raises(ValueError, match="exactly one of `path` or `hub_id`"):
        EvalSetSpec(name="x", text_column="t")


def test_eval_set_through_datasets_load_dataset(tmp_path: Path) -> None:
    # the Hub path (`hub_id`) goes through datasets.load_dataset; a local dataset folder exercises it offline
    folder = tmp_path / "my_eval"
    folder.mkdir()
    (folder / "test.jsonl").write_text((DATA / "eval.jsonl").read_text(), encoding="utf-8")
    spec = EvalSetSpec(name="hub", hub_id=str(folder), split="test", text_column="prompt")
    assert load_eval_texts(spec) == load_eval_texts(golden_eval())
    with pytest.raises(DedupInputError, match=r"text column 'input' not found in eval set 'hub'"):
        load_eval_texts(spec.model_copy(update={"text_column": "input"}))


def test_bbh_item_inside_a_flan_prompt_is_caught() -> None:
    spec = EvalSetSpec(
        name="bbh_date", path=str(BBH / "date_understanding.json"), json_field="examples", text_column="input"
    )
    items = load_eval_texts(spec)
    item = json.loads((BBH / "date_understanding.json").read_text())["examples"][5]["input"]
    df = pl.concat(
        [
            golden(),
            pl.DataFrame(
                {"id": ["zzz_bbh"], "question": [f"Answer the following question.\n\n{item}\nAnswer:"]}
            ),
        ],
        how="diagonal",
    )
    result = dedup_frame(df, DedupConfig(), SEED, {"bbh_date": items})
    cont = result.removed.filter(pl.col("reason") == "contaminated")
    assert "zzz_bbh" in cont["id"].to_list()
    assert result.stats["contaminated"]["bbh_date"] >= 1


def test_template_thresholds_fit_one_byte_counters() -> None:
    with pytest.raises(ValueError, match="counted in one byte"):
        DedupConfig(template_share=0.5, template_sample=1000)
