"""DVC stage `publish`: upload the release folder to the Hub as one commit, tagged `v<version>`.

    python -m cards.publish --params params.yaml --release release --out data/publish/published.json

A tag is never moved: when `v<version>` exists with the same files the run is a no-op, and when it
exists with different files the run fails before uploading anything. With `publish.enabled: false`
it only reports what it would upload; enabled without a token (HF_TOKEN or the Hub's saved login)
it stops with one line, so the stage is not recorded as done and runs again once a token is set.
A Hub that cannot be reached, or that drops the connection mid-commit, is one line too; the rerun
finishes the publish (a commit that landed without its tag is tagged, not committed twice).
Before uploading it checks that the version can be rebuilt (`cards.provenance`): the git commit must
hold the `dvc.lock` entries that built the release and a default DVC remote must be configured.
Both go into the card it uploads, the Hub commit's description and published.json.
The token is never printed, logged or written (library: `cards.hub`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from cards.hub import (
    PublishConfig,
    PublishError,
    hub_endpoint,
    hub_errors,
    plan_summary,
    publish,
    resolve_token,
    scan_release,
    with_card,
)
from cards.provenance import ProvenanceError, collect, fill_card
from core.config import load_section
from core.io import write_json
from core.stage import stage_main

logger = logging.getLogger(__name__)


def run(params: Path, out: Path, release: Path = Path("release"), lock: Path = Path("dvc.lock")) -> None:
    """Publish `release` (or report the plan when disabled); write `out`.

    `lock` is the project's dvc.lock; the project is its folder (a git checkout).
    """
    from huggingface_hub.errors import HfHubHTTPError

    cfg = load_section(PublishConfig, params, "publish")
    logger.info("publish params: %s", cfg.model_dump())
    files = scan_release(release)
    token = resolve_token() if cfg.enabled else None
    if cfg.enabled and not token:
        raise PublishError(
            f"publish.enabled is true but there is no Hub token: set HF_TOKEN (or log in with `hf auth "
            f"login`) to publish {cfg.repo_id} {cfg.tag}, or set publish.enabled: false"
        )
    if not cfg.enabled:
        reason = "publish.enabled is false"
        plan = plan_summary(cfg, files)
        print(f"Not publishing ({reason}). Would upload to {cfg.repo_id} as tag {cfg.tag}:")
        for f in plan["files"]:
            print(f"  {f['path']}  {f['size']:,} bytes  sha256 {f['sha256'][:16]}")
        print(f"  total {plan['total_bytes']:,} bytes")
        try:  # printed, not written: published.json stays a function of the release and params
            prov = collect(lock.resolve().parent, lock)
            print(f"  built by git commit {prov.git_commit}; data in DVC remote {prov.dvc_remote_url}")
        except ProvenanceError as exc:
            print(f"  publishing would be refused: {exc}")
        write_json({"published": False, "reason": reason, **plan, "commit": None, "url": None}, out)
        return
    prov = collect(lock.resolve().parent, lock)
    with tempfile.TemporaryDirectory(prefix="publish-card-") as tmp:
        card = fill_card((release / "README.md").read_text(encoding="utf-8"), prov)
        files = with_card(files, card, Path(tmp))
        plan = plan_summary(cfg, files)
        try:
            result = publish(files, cfg, token, source=prov.describe())
        except HfHubHTTPError as exc:
            # The Hub's answer (status, URL, server message); requests never carry the token in the URL.
            raise PublishError(f"talking to the Hub: {' '.join(str(exc).split())}") from None
        except hub_errors() as exc:
            raise PublishError(
                f"cannot reach the Hub at {hub_endpoint()} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split()) or 'no detail'}); {cfg.tag} is not published: run again to "
                "finish (nothing is uploaded twice)"
            ) from None
    record = {
        **result,
        **{k: plan[k] for k in ("files", "total_bytes", "private")},
        "provenance": prov.dump(),
    }
    write_json(record, out)
    print(f"Published {cfg.repo_id} {cfg.tag} at commit {result['commit']}: {result['url']}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `publish` stage."""
    return stage_main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
