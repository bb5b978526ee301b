"""The card's answer-checking section: each teacher's accuracy per submix and per answer kind, how
many traces could be checked, the policy and the judge, from the `verify` stage's `answer_checks`."""

from __future__ import annotations

from typing import Any

import polars as pl

from core.contracts import AnswerChecks

VERDICT_COLUMNS = ["correct", "wrong", "unverifiable"]


def counts_frame(checks: AnswerChecks) -> pl.DataFrame:
    """The verdict counts as a frame: teacher, submix, answer_kind, correct, wrong, unverifiable."""
    schema = {"teacher": pl.String, "submix": pl.String, "answer_kind": pl.String}
    schema |= {v: pl.Int64 for v in VERDICT_COLUMNS}
    return pl.DataFrame([c.dump() for c in checks.counts], schema=schema)


def _accuracy(correct: int, wrong: int) -> str:
    checked = correct + wrong
    return f"{100 * correct / checked:.1f}%" if checked else "n/a"


def accuracy_rows(checks: AnswerChecks, by: str) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) per teacher and `by` (submix or answer_kind): traces, verdicts, accuracy of
    the checked (correct or wrong) rows."""
    df = counts_frame(checks).group_by("teacher", by).agg(pl.col(VERDICT_COLUMNS).sum()).sort("teacher", by)
    rows: list[list[Any]] = []
    for r in df.iter_rows(named=True):
        total = sum(r[v] for v in VERDICT_COLUMNS)
        rows.append(
            [
                r["teacher"],
                r[by],
                total,
                *(r[v] for v in VERDICT_COLUMNS),
                _accuracy(r["correct"], r["wrong"]),
            ]
        )
    label = "answer kind" if by == "answer_kind" else by
    return ["teacher", label, "traces", *VERDICT_COLUMNS, "accuracy (of checked)"], rows


def checks_summary(checks: AnswerChecks) -> dict[str, Any]:
    """Totals the card's text quotes: traces, checked (correct + wrong), correct, wrong, unverifiable."""
    df = counts_frame(checks)
    totals = {v: int(df[v].sum()) for v in VERDICT_COLUMNS}
    return {
        **totals,
        "traces": sum(totals.values()),
        "checked": totals["correct"] + totals["wrong"],
        "accuracy": _accuracy(totals["correct"], totals["wrong"]),
    }


def judge_text(checks: AnswerChecks) -> str:
    """One paragraph on the judge of open answers (model, revision, prompt digest), or on its absence."""
    judge, judged = checks.judge, checks.judged
    if judge is None or judged is None:
        return (
            "No judge model was configured (`verify.judge`): open answers (generation, summaries, "
            "translation, long references) are `unverifiable`."
        )
    return (
        f"Open answers with a reference were judged by `{judge.model}` (revision `{judge.revision}`, "
        f"backend `{judge.backend}`, sampling `{judge.sampling}`) with the judging prompt "
        f"`{judge.prompt_file}` (sha256 `{judge.prompt_sha256}`), asked whether the answer agrees with "
        f"the reference: {judged.rows:,} rows judged, {judged.correct:,} correct, {judged.wrong:,} "
        f"wrong; left unverifiable: {judged.unparseable:,} replies without a verdict, "
        f"{judged.prompt_too_long:,} prompts too long for the judge, {judged.request_error:,} "
        "failed requests."
    )


def policy_text(checks: AnswerChecks) -> str:
    """What happened to wrong and unverifiable traces."""
    wrong = "removed (`wrong_answer`)" if checks.drop_wrong else "kept, flagged `wrong` in `answer_check`"
    unverifiable = (
        "removed (`unverifiable_answer`)"
        if checks.drop_unverifiable
        else "kept, flagged `unverifiable` in `answer_check`"
    )
    return f"Traces with a wrong answer were {wrong}; traces that could not be checked were {unverifiable}."
