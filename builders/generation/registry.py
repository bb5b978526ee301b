"""The backends: one module each, one entry here. A teacher's config is the union of their configs,
told apart by `backend` (`vllm` when it is left out)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag, TypeAdapter

from builders.generation import openai_backend, openai_batch_backend, vllm_backend
from builders.generation.base import Backend, BackendEntry

BACKENDS: dict[str, BackendEntry] = {
    e.name: e for e in (vllm_backend.ENTRY, openai_backend.ENTRY, openai_batch_backend.ENTRY)
}
DEFAULT_BACKEND = "vllm"


def _backend_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("backend", DEFAULT_BACKEND)
    return getattr(value, "backend", None)


TeacherConfig = Annotated[
    Union[tuple(Annotated[e.config, Tag(name)] for name, e in BACKENDS.items())],  # type: ignore[valid-type]  # noqa: UP007
    Discriminator(
        _backend_of,
        custom_error_type="backend",
        custom_error_message=f"backend must be one of {', '.join(BACKENDS)}",
    ),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(TeacherConfig)


def parse_teacher(data: dict[str, Any]) -> Any:
    """A teacher's config from its mapping (pydantic's ValidationError when it is not one)."""
    return _ADAPTER.validate_python(data)


def make_backend(teacher: Any, workdir: Path) -> Backend:
    """The backend `teacher.backend` names, keeping any state it needs in `workdir`."""
    return BACKENDS[teacher.backend].create(teacher, workdir)
