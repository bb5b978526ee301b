"""Benchmark: the answer checker on real FLAN rows, per submix and task, with a control.

    python -m benchmarks.answers                       # niv1_dev and flan_dev of ../shared/data/real
    python -m benchmarks.answers --baseline-ref <git ref>   # also the checker at that commit

The control: every row's prompt is checked with its FLAN reference (`targets`) against
- the right answer (FLAN's final answer: the `answer` column where the file has one, else the
  target), bare and inside an explanation ("Let me think step by step. <rationale> So the answer
  is X.", the row's own rationale, four phrasings in turn);
- another row's answer of the same task, a different one (another option, another number,
  another normal form), bare and in the same explanation, so the reasoning still argues for the
  right answer and only the final answer differs. Where the question lists options, an answer
  that names another of them is preferred (another row's "(C)", "Sentence B", "no", "3)." when
  this question labels its options so); failing that (ECQA's options differ per question) it is
  an answer that is none of them.

Printed per submix and task: rows, answer kinds, checkable rows (kind not `open`), how often the
right answer is `correct`, how often the other answer is `correct` and `wrong`. Then rows per CPU
second of `check_frame` over one explained response per row (every prompt seen once, as in `verify`)
against a plain normalised exact match of the final answer, measured in the same run; with
`--baseline-ref`, also the checker of that commit on the same rows (its control table and rate are
printed too). Each timing runs in a fresh process, the checkers taking turns; the best of
`--repeat` rounds is printed. Without ../shared, the tests/data/answers copies are used.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from answers.check import LABEL_FAMILIES, check_frame
from answers.options import parse_options, reference_option
from answers.text import as_number, normalize

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "real"
GOLDEN = ROOT / "tests" / "data" / "answers"
SUBMIXES = ("niv1_dev", "flan_dev")
SEED = 23
WRAPPERS = (  # the last one answers first, so it needs a rationale
    "Let me think step by step. {r}So the answer is {a}{p}",
    "{r}Therefore, the final answer is {a}{p}",
    "Let's think. {r}The answer: {a}{p}",
    "Answer: {a}{p}\nExplanation: {r}",
)
_LABELS = frozenset(x for family in LABEL_FAMILIES for x in family if " " not in x)
CONTROL_COLUMNS = ("right", "right_explained", "other", "other_explained")


def source_path(name: str, shared: Path = SHARED) -> Path:
    """The real rows of a submix: ../shared's file, else the tests/data/answers copy."""
    full = shared / f"{name}.parquet"
    return full if full.exists() else GOLDEN / f"{name}.jsonl"


def load_rows(path: Path) -> pl.DataFrame:
    """task_name, question, reference, answer and rationale of a real-rows file (Parquet or JSONL);
    the answer is the target where the file has no `answer` column."""
    df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_ndjson(path)
    cols = df.columns
    return df.select(
        "task_name",
        pl.col("inputs").alias("question"),
        pl.col("targets").alias("reference"),
        (pl.col("answer") if "answer" in cols else pl.col("targets").str.strip_chars()).alias("answer"),
        (pl.col("rationale") if "rationale" in cols else pl.lit("")).fill_null("").alias("rationale"),
    )


def explain(answer: str, rationale: str, i: int) -> str:
    """The answer inside an explanation, phrasing `i` of WRAPPERS."""
    r, a = rationale.strip(), answer.strip()
    form = WRAPPERS[i % len(WRAPPERS) if r else i % (len(WRAPPERS) - 1)]
    p = "" if a.endswith((".", "!", "?")) else "."
    return form.format(r=f"{r} " if r else "", a=a, p=p).strip()


def _key(question: str, answer: str) -> tuple[str, object]:
    """What makes two answers the same: the option they name in the question, else the number,
    else the label they start with (yes, no, true, ...), else the normal form."""
    options = parse_options(question)
    if options is not None:
        i = reference_option(answer, options)
        if i is not None:
            return "option", i
    num = as_number(answer)
    if num is not None:
        return "number", round(num.value, 6)
    norm = normalize(answer)
    first = norm.split(" ", 1)[0]
    if first in _LABELS:  # "No.\nreason: ..." is the answer "no"
        return "label", first
    return "text", norm


def control_frame(rows: pl.DataFrame, seed: int = SEED) -> pl.DataFrame:
    """The rows with the four control responses (CONTROL_COLUMNS); `other` is null where the task
    has no different answer to give. A benchmark helper: one Python pass over the rows."""
    rng = np.random.default_rng(seed)
    by_task: dict[str, list[str]] = {}
    for task, answer in zip(rows["task_name"], rows["answer"], strict=True):
        by_task.setdefault(task, []).append(answer)
    pools = {t: list(dict.fromkeys(a)) for t, a in by_task.items()}
    for pool in pools.values():
        rng.shuffle(pool)
    others: list[str | None] = []
    for q, a, task in zip(rows["question"], rows["answer"], rows["task_name"], strict=True):
        pool = pools[task]
        own = _key(q, a)
        start = int(rng.integers(len(pool)))
        fallback = None
        found = None
        for k in range(min(len(pool), 400)):
            cand = pool[(start + k) % len(pool)]
            key = _key(q, cand)
            if key == own or normalize(cand) == normalize(a):
                continue
            if own[0] != "option" or key[0] == "option":
                found = cand
                break
            fallback = fallback or cand
        others.append(found if found is not None else fallback)
    expl = [explain(a, r, i) for i, (a, r) in enumerate(zip(rows["answer"], rows["rationale"], strict=True))]
    other_expl = [
        None if o is None else explain(o, r, i)
        for i, (o, r) in enumerate(zip(others, rows["rationale"], strict=True))
    ]
    return rows.with_columns(
        pl.col("answer").alias("right"),
        pl.Series("right_explained", expl, pl.String),
        pl.Series("other", others, pl.String),
        pl.Series("other_explained", other_expl, pl.String),
    )


def check_column(control: pl.DataFrame, column: str) -> pl.DataFrame:
    """answer_kind and answer_check of one control column's responses (null responses: null)."""
    frame = control.select(
        "question",
        "reference",
        pl.col(column).fill_null("").alias("response"),
        pl.lit(False).alias("has_options"),
    )
    out = check_frame(frame).select("answer_kind", "answer_check")
    return out.with_columns(
        pl.when(control[column].is_null()).then(None).otherwise(pl.col("answer_check")).alias("answer_check")
    )


def verdicts(control: pl.DataFrame) -> pl.DataFrame:
    """task_name, kind, and the verdict of each control column."""
    cols = {c: check_column(control, c) for c in CONTROL_COLUMNS}
    return pl.DataFrame(
        {
            "task_name": control["task_name"],
            "kind": cols["right"]["answer_kind"],
            **{c: cols[c]["answer_check"] for c in CONTROL_COLUMNS},
        }
    )


def control_table(v: pl.DataFrame) -> pl.DataFrame:
    """Per task (and `all`): rows, kinds, checkable rows and the control's rates over checkable rows."""

    def rate(col: str, verdict: str) -> pl.Expr:
        checkable = pl.col("kind") != "open"
        num = (checkable & (pl.col(col) == verdict)).sum()
        den = (checkable & pl.col(col).is_not_null()).sum()
        return pl.when(den > 0).then(num / den).otherwise(None)

    aggs = [
        pl.len().alias("rows"),
        (pl.col("kind") == "open").sum().alias("open"),
        (pl.col("kind") == "closed").sum().alias("closed"),
        (pl.col("kind") == "multiple_choice").sum().alias("mc"),
        (pl.col("kind") != "open").sum().alias("checkable"),
        rate("right", "correct").alias("right_correct"),
        rate("right_explained", "correct").alias("right_expl_correct"),
        rate("other", "correct").alias("other_correct"),
        rate("other_explained", "correct").alias("other_expl_correct"),
        rate("other", "wrong").alias("other_wrong"),
        rate("other_explained", "wrong").alias("other_expl_wrong"),
        *(
            ((pl.col("kind") != "open") & (pl.col(col) == verdict)).sum().alias(f"n_{col}_{verdict}")
            for col in CONTROL_COLUMNS
            for verdict in ("correct", "wrong", "unverifiable")
        ),
    ]
    per_task = v.group_by("task_name").agg(aggs).sort("task_name")
    return pl.concat([per_task, v.select(pl.lit("all").alias("task_name"), *aggs)])


def counts_line(table: pl.DataFrame) -> str:
    """The `all` row's verdict counts over checkable rows, per control column."""
    r = table.filter(pl.col("task_name") == "all").row(0, named=True)
    parts = [
        f"{col}: " + " / ".join(f"{r[f'n_{col}_{v}']:,} {v}" for v in ("correct", "wrong", "unverifiable"))
        for col in CONTROL_COLUMNS
    ]
    return f"all {r['checkable']:,} checkable rows; " + "; ".join(parts)


def format_table(table: pl.DataFrame) -> str:
    """The control table as aligned text (rates in %)."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    head = (
        f"{'task':<40}{'rows':>7}{'open':>7}{'closed':>7}{'mc':>7}{'check':>7}"
        f"{'right%':>8}{'expl%':>8}{'oth ok%':>9}{'expl':>6}{'oth wr%':>9}{'expl':>6}"
    )
    lines = [head]
    for r in table.iter_rows(named=True):
        lines.append(
            f"{r['task_name'][:39]:<40}{r['rows']:>7}{r['open']:>7}{r['closed']:>7}{r['mc']:>7}"
            f"{r['checkable']:>7}{pct(r['right_correct']):>8}{pct(r['right_expl_correct']):>8}"
            f"{pct(r['other_correct']):>9}{pct(r['other_expl_correct']):>6}"
            f"{pct(r['other_wrong']):>9}{pct(r['other_expl_wrong']):>6}"
        )
    return "\n".join(lines)


def timing_frame(control: pl.DataFrame) -> pl.DataFrame:
    """One explained response per row (the right one on even rows, the other on odd rows)."""
    pick = pl.int_range(pl.len()) % 2 == 0
    response = pl.when(pick | pl.col("other_explained").is_null())
    return control.select(
        "question",
        "reference",
        response.then("right_explained").otherwise("other_explained").alias("response"),
        pl.lit(False).alias("has_options"),
    )


def exact_match_frame(df: pl.DataFrame) -> list[bool]:
    """The baseline: the response's last line equals the reference's final line, normalised."""
    out = []
    for ref, resp in zip(df["reference"], df["response"], strict=True):
        last_ref = ref.strip().splitlines()[-1] if ref.strip() else ""
        last = resp.strip().splitlines()[-1] if resp.strip() else ""
        out.append(normalize(last) == normalize(last_ref))
    return out


def rows_per_s(fn: Callable[[pl.DataFrame], object], df: pl.DataFrame, batch: int = 50_000) -> float:
    """Rows per CPU second of `fn` over `df` in batches, as `verify` calls it (the checker is
    single-threaded Python: CPU time, unlike wall time, does not count other processes' turns)."""
    t0 = time.process_time()
    for start in range(0, df.height, batch):
        fn(df.slice(start, batch))
    return df.height / max(time.process_time() - t0, 1e-9)


def _timed(answers_root: Path, control: Path, verdicts_out: Path | None = None) -> dict[str, float]:
    """Rows per CPU second of `check_frame` (the `answers` package under `answers_root`) and of the
    exact-match baseline over the control's timing frame, in a fresh process (each side on a small
    heap, so neither pays the other's garbage collection); `verdicts_out`: also its verdicts."""
    code = (
        "import sys, json; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import polars as pl; "
        "import benchmarks.answers as b; from answers.check import check_frame; "
        "c = pl.read_parquet(sys.argv[3]); sys.argv[4] and b.verdicts(c).write_parquet(sys.argv[4]); "
        "t = b.timing_frame(c); print(json.dumps({'checker': b.rows_per_s(check_frame, t), "
        "'exact_match': b.rows_per_s(b.exact_match_frame, t)}))"
    )
    args = [str(answers_root), str(ROOT), str(control), str(verdicts_out or "")]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(name: str, rows: pl.DataFrame, baseline_ref: str | None = None, repeat: int = 1) -> dict:
    """The control table and timings of one submix's rows; rates are the best of `repeat` rounds,
    ours and the baseline's (the checker at git `baseline_ref`) taking turns."""
    control = control_frame(rows)
    res: dict = {"submix": name, "table": control_table(verdicts(control))}
    ours, exact, old_rates = [], [], []
    with tempfile.TemporaryDirectory(prefix="answers-bench-") as tmp:
        path, old = Path(tmp) / "control.parquet", Path(tmp) / "old"
        control.write_parquet(path)
        if baseline_ref:
            old.mkdir()
            archive = subprocess.run(
                ["git", "archive", baseline_ref, "answers"], cwd=ROOT, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        for k in range(repeat):
            rates = _timed(ROOT, path)
            ours.append(rates["checker"])
            exact.append(rates["exact_match"])
            if baseline_ref:
                old_v = Path(tmp) / "old_verdicts.parquet" if k == 0 else None
                old_rates.append(_timed(old, path, old_v)["checker"])
                if old_v is not None:
                    res["baseline_table"] = control_table(pl.read_parquet(old_v))
    res["checker_rows_per_s"] = max(ours)
    res["exact_match_rows_per_s"] = max(exact)
    if old_rates:
        res["baseline_rows_per_s"] = max(old_rates)
    return res


def report(res: dict, baseline_ref: str | None = None) -> str:
    """The printed form of `run`'s result."""
    out = [f"== {res['submix']}", format_table(res["table"]), counts_line(res["table"])]
    if "baseline_table" in res:
        base = res["baseline_table"]
        out += [f"-- the checker at {baseline_ref}", format_table(base), counts_line(base)]
    rate, exact = res["checker_rows_per_s"], res["exact_match_rows_per_s"]
    out.append(
        f"checker: {rate:,.0f} rows/CPU-s; normalised exact match: {exact:,.0f} rows/CPU-s "
        f"({rate / exact:.3f}x)"
    )
    if "baseline_rows_per_s" in res:
        old = res["baseline_rows_per_s"]
        out.append(f"checker at {baseline_ref}: {old:,.0f} rows/CPU-s; ours / it: {rate / old:.3f}x")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the control on each submix and print the tables and rates."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=SHARED, help="folder of niv1_dev/flan_dev.parquet")
    ap.add_argument("--submix", choices=SUBMIXES, action="append", help="default: both")
    ap.add_argument("--limit", type=int, default=0, help="first N rows of each file (0: all)")
    ap.add_argument("--baseline-ref", help="git ref of a checker to compare against (e.g. a commit)")
    ap.add_argument("--repeat", type=int, default=3, help="timing rounds (best of)")
    args = ap.parse_args(argv)
    for name in args.submix or SUBMIXES:
        path = source_path(name, args.shared)
        rows = load_rows(path)
        if args.limit:
            rows = rows.head(args.limit)
        print(f"{name}: {rows.height} rows from {path}")
        print(report(run(name, rows, args.baseline_ref, args.repeat), args.baseline_ref), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
