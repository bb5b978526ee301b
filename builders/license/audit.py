"""Read the Data Provenance Initiative's audit of the Flan Collection into a license registry.

The audit (github.com/Data-Provenance-Initiative/Data-Provenance-Collection, Apache-2.0) has one
JSON file per Flan submix, an object of entries keyed by "Unique Dataset Identifier"; each entry
lists the FLAN `task_name` values it covers ("Dataset Filter IDs") and its "Licenses" (name and
URL). `license_classes.json` maps a license name, and `custom_license_classes.json` the URL of a
"Custom" license, to `[use, attribution, share-alike]`.

Resolution beyond exact task ids (`stems`, see `dataset_stems`) is computed here and committed
with the registry, so the pipeline never needs the audit at run time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from builders.license.classes import AUDIT_FLAG_CODES, AUDIT_USE_CODES, SPDX_IDS, most_restrictive
from core.errors import PipelineError

AUDIT_FILES: dict[str, str] = {
    "cot": "Flan Collection (Chain-of-Thought).json",
    "dialog": "Flan Collection (Dialog).json",
    "flan2021": "Flan Collection (Flan 2021).json",
    "t0": "Flan Collection (P3).json",
    "niv2": "Flan Collection (Super-NaturalInstructions).json",
}
CLASS_FILE = "license_classes.json"
CUSTOM_CLASS_FILE = "custom_license_classes.json"
AUDIT_SOURCE: dict[str, str] = {
    "name": "Data Provenance Initiative, Flan Collection audit",
    "repository": "https://github.com/Data-Provenance-Initiative/Data-Provenance-Collection",
    "commit": "ce6662d",
    "license": "Apache-2.0",
}
REGISTRY_FORMAT = 1
_NIV2_TASK = re.compile(r"^task\d+_(?P<slug>.+)$")
_MIN_STEM_CHARS = 4


class AuditError(PipelineError, ValueError):
    """An audit file is missing or malformed; the message names the file and the key."""


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise AuditError(f"{path}: audit file not found") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuditError(f"{path}: not valid JSON: {exc}") from exc


def _read_classes(path: Path) -> dict[str, tuple[str, bool, bool]]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise AuditError(f"{path}: expected an object of license name -> [use, attribution, share-alike]")
    out: dict[str, tuple[str, bool, bool]] = {}
    for name, triple in data.items():
        if (
            not isinstance(triple, list)
            or len(triple) != 3
            or triple[0] not in AUDIT_USE_CODES
            or triple[1] not in AUDIT_FLAG_CODES
            or triple[2] not in AUDIT_FLAG_CODES
        ):
            raise AuditError(
                f"{path}: {name!r}: expected [use in {sorted(AUDIT_USE_CODES)}, attribution, share-alike "
                f"in {sorted(AUDIT_FLAG_CODES)}], got {triple!r}"
            )
        out[name] = (AUDIT_USE_CODES[triple[0]], AUDIT_FLAG_CODES[triple[1]], AUDIT_FLAG_CODES[triple[2]])
    return out


def _license_record(
    lic: Any,
    where: str,
    classes: dict[str, tuple[str, bool, bool]],
    custom: dict[str, tuple[str, bool, bool]],
) -> dict[str, Any]:
    if not isinstance(lic, dict) or not isinstance(lic.get("License"), str):
        raise AuditError(f"{where}: expected an object with a string 'License', got {lic!r}")
    name = lic["License"]
    url = lic.get("License URL") or ""
    if not isinstance(url, str):
        raise AuditError(f"{where}.License URL: expected a string, got {url!r}")
    if name == "Custom":
        if url not in custom:
            raise AuditError(f"{where}: custom license URL {url!r} is not in {CUSTOM_CLASS_FILE}")
        use, attribution, share_alike = custom[url]
    elif name in classes:
        use, attribution, share_alike = classes[name]
    else:
        raise AuditError(f"{where}: license {name!r} is not in {CLASS_FILE}")
    return {
        "name": name,
        "spdx": SPDX_IDS.get(name),
        "url": url,
        "use": use,
        "attribution": attribution,
        "share_alike": share_alike,
    }


def _dataset_record(
    uid: str, entry: Any, where: str, submix: str, classes: Any, custom: Any
) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise AuditError(f"{where}: expected an object, got {type(entry).__name__}")
    ids = entry.get("Dataset Filter IDs")
    if not isinstance(ids, list) or not all(isinstance(x, str) and x for x in ids):
        raise AuditError(f"{where}.Dataset Filter IDs: expected a list of task names, got {ids!r}")
    lics = entry.get("Licenses")
    if not isinstance(lics, list):
        raise AuditError(f"{where}.Licenses: expected a list, got {lics!r}")
    records = [_license_record(lic, f"{where}.Licenses[{i}]", classes, custom) for i, lic in enumerate(lics)]
    if not records:  # no license recorded: nothing grants any use
        records = [_license_record({"License": "Unspecified"}, f"{where}.Licenses", classes, custom)]
    unique = sorted({(r["name"], r["url"]): r for r in records}.values(), key=lambda r: (r["name"], r["url"]))
    name = entry.get("Dataset Name")
    url = entry.get("Dataset URL") or entry.get("Hugging Face URL") or entry.get("GitHub URL") or ""
    if not isinstance(name, str) or not isinstance(url, str):
        raise AuditError(f"{where}: 'Dataset Name' and 'Dataset URL' must be strings")
    return {
        "name": name,
        "submix": submix,
        "url": url,
        "task_names": sorted(set(ids)),
        "licenses": unique,
        "license": " AND ".join(sorted({r["spdx"] or r["name"] for r in unique})),
        "license_use": most_restrictive(r["use"] for r in unique),
        "attribution_required": any(r["attribution"] for r in unique),
        "share_alike": any(r["share_alike"] for r in unique),
    }


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _common_token_prefix(names: list[str]) -> str:
    token_lists = [n.split("_") for n in names]
    prefix: list[str] = []
    for tokens in zip(*token_lists, strict=False):
        if len(set(tokens)) != 1:
            break
        prefix.append(tokens[0])
    return "_".join(prefix)


def dataset_stems(uid: str, record: dict[str, Any]) -> list[str]:
    """The keys under which other task names of the same source dataset resolve `by_dataset`.

    - cot, dialog: the task id without its `_ii` (inverted-template) suffix.
    - flan2021: the TFDS name without its `:version`.
    - t0: the longest common `_`-token prefix of the dataset's P3 task ids (when it has 2 or more).
    - niv2: the leading `_`-tokens of the audited `taskNNN_<slug>` whose letters and digits spell
      the audit's dataset name (uid without `fc-sni-`), e.g. `quoref` in
      `task001_quoref_question_generation`; at least 4 characters.
    """
    submix, names = record["submix"], record["task_names"]
    if submix in ("cot", "dialog"):
        return sorted({n.removesuffix("_ii") for n in names})
    if submix == "flan2021":
        return sorted({n.split(":", 1)[0] for n in names})
    if submix == "t0":
        prefix = _common_token_prefix(names) if len(names) > 1 else ""
        return [prefix] if prefix else []
    target = _norm(uid.removeprefix("fc-sni-"))
    stems: set[str] = set()
    for name in names:
        match = _NIV2_TASK.match(name)
        if not match or len(target) < _MIN_STEM_CHARS:
            continue
        tokens = match.group("slug").split("_")
        for i in range(1, len(tokens) + 1):
            if _norm("".join(tokens[:i])) == target:
                stems.add("_".join(tokens[:i]))
    return sorted(stems)


def build_registry(audit_dir: str | Path) -> dict[str, Any]:
    """Build the registry (datasets, exact task ids, by-dataset stems) from the audit folder."""
    audit_dir = Path(audit_dir)
    classes = _read_classes(audit_dir / CLASS_FILE)
    custom = _read_classes(audit_dir / CUSTOM_CLASS_FILE)
    datasets: dict[str, dict[str, Any]] = {}
    tasks: dict[str, str] = {}
    for submix, filename in AUDIT_FILES.items():
        path = audit_dir / filename
        data = _read_json(path)
        if not isinstance(data, dict):
            raise AuditError(f"{path}: expected an object of dataset entries, got {type(data).__name__}")
        for uid, entry in data.items():
            where = f"{path}: {uid}"
            if uid in datasets:
                raise AuditError(f"{where}: dataset id also appears in another audit file")
            record = _dataset_record(uid, entry, where, submix, classes, custom)
            for task in record["task_names"]:
                if task in tasks:
                    raise AuditError(f"{where}: task {task!r} is also listed under {tasks[task]!r}")
                tasks[task] = uid
            datasets[uid] = record
    stems: dict[str, dict[str, str]] = {submix: {} for submix in AUDIT_FILES}
    ambiguous: dict[str, set[str]] = {submix: set() for submix in AUDIT_FILES}
    for uid, record in datasets.items():
        table = stems[record["submix"]]
        for stem in dataset_stems(uid, record):
            if stem in table and table[stem] != uid:
                ambiguous[record["submix"]].add(stem)
            table[stem] = uid
    for submix, names in ambiguous.items():  # a stem two datasets share says nothing: drop it
        for stem in names:
            del stems[submix][stem]
    return {
        "format": REGISTRY_FORMAT,
        "source": AUDIT_SOURCE,
        "datasets": datasets,
        "tasks": tasks,
        "stems": stems,
    }


def registry_text(registry: dict[str, Any]) -> str:
    """The registry's committed text: sorted keys, one-space indent, trailing newline."""
    return json.dumps(registry, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
