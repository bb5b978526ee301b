"""Models named in params: checked before any work, and saved the same whatever the environment.

A model is a local folder (with a `config.json`) or a Hub id. A name that can only be a path
(`./x`, `/x`, `a/b/c`, or `a/b` where `a` is a local folder) and is missing is named as a
missing folder, never looked up on the Hub; a Hub id must be known to the Hub (or, offline, to the
local Hub cache).

`save_tokenizer` writes a tokenizer without the loading options transformers keeps in
`tokenizer_config.json` (`local_files_only` is true when HF_HUB_OFFLINE=1 was set at load time), so
a saved model folder depends on its inputs only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.errors import ParamsError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# Options of `from_pretrained` that transformers records in tokenizer_config.json: how a tokenizer
# was loaded (the environment), not what it is.
LOADING_OPTIONS = frozenset(
    {"local_files_only", "cache_dir", "force_download", "proxies", "token", "use_auth_token", "_commit_hash"}
)


def is_path_like(name: str) -> bool:
    """Whether `name` can only be a local path (not a Hub id `name` or `owner/name`)."""
    path = Path(name)
    if path.exists() or name.startswith((".", "/", "~")) or not _HUB_ID.match(name):
        return True
    return len(path.parts) > 1 and Path(path.parts[0]).is_dir()


def check_model(model: str, key: str, revision: str | None = None, *, hub: bool = True) -> None:
    """`ParamsError` naming `key` unless `model` is a model folder or (with `hub`) a known Hub model."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ParamsError(f"{key}: {model} is a folder without config.json, not a model")
        return
    if path.exists():
        raise ParamsError(f"{key}: {model} is a file, not a model folder")
    if is_path_like(model):
        raise ParamsError(f"{key}: model folder {model} not found")
    if hub:
        _check_hub_model(model, key, revision)


def _check_hub_model(model: str, key: str, revision: str | None) -> None:
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        found = try_to_load_from_cache(model, "config.json", revision=revision)
        if not isinstance(found, str):
            raise ParamsError(
                f"{key}: {model} is no local folder and not in the Hub cache (HF_HUB_OFFLINE is set)"
            )
        return
    try:
        HfApi().model_info(model, revision=revision)
    except (OSError, ValueError) as exc:  # huggingface_hub's errors derive from these
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamsError(f"{key}: {model} is no local folder and not a Hub model ({detail})") from None


def save_tokenizer(tokenizer: Any, folder: str | Path) -> None:
    """`tokenizer.save_pretrained(folder)`, its config without the loading options."""
    tokenizer.save_pretrained(folder)
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    kept = {k: v for k, v in config.items() if k not in LOADING_OPTIONS}
    if kept != config:
        path.write_text(
            json.dumps(kept, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
