"""dvc.yaml's code deps, derived from the import graph of each stage's entry module.

    python -m core.dvcdeps            # check: exit 1 and list the differences
    python -m core.dvcdeps --write    # rewrite the Python deps of every stage (comments kept)

A stage's command names its entry module (`python -m <package>.<stage>`, a package's `__main__`
when the stage is a package); every project module
that entry imports, directly or not (imports inside functions included), and the `__init__.py`
of every package on the way, is a dep. Deps that are not Python files (data, templates, inputs)
are written by hand and left alone.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "builders", "dedup", "cards", "train", "answers")
_ENTRY = re.compile(r"(?:^|\s)-m\s+([\w.]+)")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of project module `name` (a module or a package's `__init__.py`), if it exists."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> set[str]:
    """Project modules named by the imports of one file (`from pkg import mod` counts `pkg.mod`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


@cache
def closure(entry: str, root: Path = ROOT) -> frozenset[str]:
    """Repository-relative paths of every project file `entry` loads when run (`python -m` of a
    package runs its `__main__` after its `__init__`)."""
    seen: set[str] = set()
    todo = [entry]
    if module_file(f"{entry}.__main__", root) is not None:
        todo.append(f"{entry}.__main__")
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # each parent package's __init__ runs first
            path = module_file(".".join(parts[:i]), root)
            if path is None:
                continue
            rel = path.relative_to(root).as_posix()
            if rel not in seen:
                seen.add(rel)
                todo.extend(_imported(path))
    return frozenset(seen)


def entry_module(cmd: str) -> str | None:
    """The module a stage command runs with `-m`, if any."""
    m = _ENTRY.search(" ".join(cmd) if isinstance(cmd, list) else cmd)
    return m.group(1) if m else None


def _is_code_dep(dep: str) -> bool:
    return dep.endswith(".py") and dep.split("/")[0] in PACKAGES


def _dep_path(dep: object) -> str:
    return next(iter(dep)) if isinstance(dep, dict) else str(dep)


def differences(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, dict[str, list[str]]]:
    """Per stage, the code deps its imports need but dvc.yaml lacks, and those it lists in vain."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    out: dict[str, dict[str, list[str]]] = {}
    for name, stage in stages.items():
        entry = entry_module(stage["cmd"])
        if entry is None:
            continue
        want = closure(entry, dvc_yaml.parent)
        have = {_dep_path(d) for d in stage.get("deps", []) if _is_code_dep(_dep_path(d))}
        missing, extra = sorted(want - have), sorted(have - want)
        if missing or extra:
            out[name] = {"missing": missing, "extra": extra}
    return out


def write(dvc_yaml: Path = ROOT / "dvc.yaml") -> None:
    """Replace every stage's Python deps with its import closure, keeping the other deps and comments."""
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    doc = y.load(dvc_yaml.read_text(encoding="utf-8"))
    for stage in doc["stages"].values():
        entry = entry_module(stage["cmd"])
        if entry is None:
            continue
        deps = stage.setdefault("deps", [])
        others = [d for d in deps if not _is_code_dep(_dep_path(d))]
        deps.clear()
        deps.extend(sorted(closure(entry, dvc_yaml.parent)))
        deps.extend(others)
    with dvc_yaml.open("w", encoding="utf-8") as f:
        y.dump(doc, f)


def main(argv: list[str] | None = None) -> int:
    """Check dvc.yaml's code deps against the import graph, or rewrite them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the Python deps of dvc.yaml")
    ap.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    args = ap.parse_args(argv)
    if args.write:
        write(args.dvc_yaml)
    diff = differences(args.dvc_yaml)
    for stage, d in diff.items():
        for kind, paths in d.items():
            for p in paths:
                print(f"{stage}: {kind} dep {p}", file=sys.stderr)
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
