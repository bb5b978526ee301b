"""License use classes, their order of restrictiveness, and the audit's class codes.

The Data Provenance Initiative's `license_classes.json` maps a license name to
`[use, attribution, share-alike]` with use codes `All`, `NC`, `Acad`, `Unspecified` and `?`
(could not be determined), and flags `"1"`, `"0"` or `"?"`.
"""

from __future__ import annotations

from collections.abc import Iterable

COMMERCIAL = "commercial"
UNSPECIFIED = "unspecified"
NON_COMMERCIAL = "non-commercial"
ACADEMIC_ONLY = "academic-only"

# Least to most restrictive: the most restrictive use class of a dataset's licenses wins.
USE_CLASSES: tuple[str, ...] = (COMMERCIAL, UNSPECIFIED, NON_COMMERCIAL, ACADEMIC_ONLY)
_RANK = {name: i for i, name in enumerate(USE_CLASSES)}

# "?" (the audit could not tell) is read as `unspecified`: it is not a grant of commercial use.
AUDIT_USE_CODES: dict[str, str] = {
    "All": COMMERCIAL,
    "Unspecified": UNSPECIFIED,
    "?": UNSPECIFIED,
    "NC": NON_COMMERCIAL,
    "Acad": ACADEMIC_ONLY,
}
# "?" on attribution or share-alike is read as an obligation (fail closed).
AUDIT_FLAG_CODES: dict[str, bool] = {"1": True, "0": False, "?": True}

# SPDX ids for the audit's license names that have one. Names not listed keep the audit's name.
SPDX_IDS: dict[str, str] = {
    "Academic Free License v3.0": "AFL-3.0",
    "Apache License 2.0": "Apache-2.0",
    "Artistic License 2.0": "Artistic-2.0",
    "BSD 2-Clause License": "BSD-2-Clause",
    "BSD 3-Clause License": "BSD-3-Clause",
    "C-UDA": "C-UDA-1.0",
    "CC0 1.0": "CC0-1.0",
    "CC BY 2.0": "CC-BY-2.0",
    "CC BY 2.5": "CC-BY-2.5",
    "CC BY 3.0": "CC-BY-3.0",
    "CC BY 4.0": "CC-BY-4.0",
    "CC BY-NC 2.0": "CC-BY-NC-2.0",
    "CC BY-NC 3.0": "CC-BY-NC-3.0",
    "CC BY-NC 4.0": "CC-BY-NC-4.0",
    "CC BY-NC-ND 4.0": "CC-BY-NC-ND-4.0",
    "CC BY-NC-SA 3.0": "CC-BY-NC-SA-3.0",
    "CC BY-NC-SA 4.0": "CC-BY-NC-SA-4.0",
    "CC BY-SA 3.0": "CC-BY-SA-3.0",
    "CC BY-SA 4.0": "CC-BY-SA-4.0",
    "CDLA Sharing 1.0": "CDLA-Sharing-1.0",
    "CDLA Permissive 1.0": "CDLA-Permissive-1.0",
    "GNU General Public License v3.0": "GPL-3.0-only",
    "MIT License": "MIT",
    "ODC-By 1.0": "ODC-By-1.0",
}


def use_rank(use: str) -> int:
    """Position of `use` in the order commercial < unspecified < non-commercial < academic-only."""
    return _RANK[use]


def most_restrictive(uses: Iterable[str]) -> str:
    """The most restrictive of `uses` (unspecified when there are none)."""
    uses = list(uses)
    if not uses:
        return UNSPECIFIED
    return max(uses, key=use_rank)
