"""Stage `traces`: teacher responses to every (system message, question), resumable and filtered.

`python -m builders.traces --params params.yaml --prompts data/dedup/prompts.parquet
--out data/traces --cache data/traces_cache`

For each teacher of `traces.teachers` (all prompts, or a seeded `fraction` of them chosen by a
stable hash of (id, base.seed)), prompts not yet in the generation cache go to the teacher;
completed generations are written to cache shards as they arrive (none later than `flush_s`), so a
killed run loses at most its last `flush_s` of answers and a rerun sends only what is missing. Then
every (prompt, teacher) pair is either a row of `traces.parquet` or a row of `removed.parquet`
(prompt_too_long, truncated, empty_response, refusal, too_short, request_error). `stats.json`'s
funnel counts (prompt, teacher) pairs: rows_in is the number of pairs selected (a prompt outside a
teacher's fraction is not a pair, not a removal).

The bill before the run: the same command with `--estimate [--pilot N]` prints, per teacher, the
prompts still to send, their input and output tokens and what they cost (low / expected / high,
online and batch), and writes nothing; `--pilot N` first sends each teacher N of its prompts (cached
like any answer) so the expected output comes from its own answers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from builders.license.policy import LicenseConfig
from builders.traces.config import TracesConfig
from builders.traces.estimate import estimate_traces, format_estimate
from builders.traces.run import run_traces
from core.config import load_params, load_stage, parse_section
from core.errors import ParamsError
from core.models import check_model
from core.stage import run_stage, stage_main

logger = logging.getLogger(__name__)


def load(params: Path) -> tuple[TracesConfig, int, LicenseConfig]:
    """The `traces` section, `base.seed` and the typed `license` section (the teachers' terms), from
    one read of the params file."""
    doc = load_params(params)
    cfg, seed = load_stage(TracesConfig, params, "traces", doc)
    terms = parse_section(LicenseConfig, doc.get("license"), section="license", source=str(params))
    return cfg, seed, terms


def check_teacher_terms(cfg: TracesConfig, terms: LicenseConfig, params: Path) -> None:
    """Every teacher has its terms of use under `license.teachers` (checked before any request)."""
    missing = [t.name for t in cfg.teachers if t.name not in terms.teachers]
    if missing:
        raise ParamsError(
            f"{params}: teacher {missing[0]!r} has no terms of use; add license.teachers.{missing[0]} "
            "(license, outputs_may_train_models, commercial_use, url) before generating"
            + (f" (also missing: {missing[1:]})" if len(missing) > 1 else "")
        )


def run(params: Path, prompts: Path, out: Path, cache: Path) -> None:
    """Load params and prompts; generate, filter and write the trace tables."""
    cfg, seed, terms = load(params)
    check_teacher_terms(cfg, terms, params)
    for k, t in enumerate(cfg.teachers):  # an openai teacher's model is a served name, not a Hub id
        check_model(t.model, f"traces.teachers[{k}].model ({t.name})", t.revision, hub=t.backend == "vllm")
    stats = run_traces(prompts, cfg, seed, out, cache, source=str(prompts))
    logger.info("traces funnel: %s", stats["funnel"])


def estimate(params: Path, prompts: Path, cache: Path, pilot: int = 0) -> str:
    """Print (and return) the bill of what the stage would send; `pilot` prompts per teacher first."""
    cfg, seed, terms = load(params)
    if pilot:
        check_teacher_terms(cfg, terms, params)
    text = format_estimate(estimate_traces(prompts, cfg, seed, cache, pilot=pilot, source=str(prompts)))
    print(text)
    return text


def estimate_args(argv: list[str]) -> argparse.Namespace:
    """The `--estimate` command line: the stage's options (`--out` accepted, unused) and `--pilot`."""
    p = argparse.ArgumentParser(prog="python -m builders.traces --estimate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--estimate", action="store_true", required=True)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--prompts", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, help="unused (the stage's own option)")
    p.add_argument("--pilot", type=int, default=0, help="send each teacher this many prompts first")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `traces` stage (and of its `--estimate`)."""
    args = sys.argv[1:] if argv is None else argv
    if "--estimate" in args:
        a = estimate_args(args)
        return run_stage("traces", lambda: estimate(a.params, a.prompts, a.cache, a.pilot))
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
