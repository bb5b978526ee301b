"""The backends: one module each, one entry here. A teacher's config is the config of the backend
its `backend` names (`vllm` when it is left out), looked up when params are read, so a backend
registered later (`register`) is accepted like the built-in ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator, SerializeAsAny, TypeAdapter
from pydantic_core import PydanticCustomError

from builders.generation import openai_backend, openai_batch_backend, vllm_backend
from builders.generation.base import Backend, BackendEntry, TeacherBase

BACKENDS: dict[str, BackendEntry] = {}
DEFAULT_BACKEND = "vllm"


def register(entry: BackendEntry) -> BackendEntry:
    """Add a backend: teachers with `backend: <entry.name>` then parse into `entry.config` and run
    on `entry.create`."""
    BACKENDS[entry.name] = entry
    return entry


for _entry in (vllm_backend.ENTRY, openai_backend.ENTRY, openai_batch_backend.ENTRY):
    register(_entry)


def _teacher(value: Any) -> TeacherBase:
    """The config of the backend `value["backend"]` names, validated (its errors keep their keys)."""
    if isinstance(value, TeacherBase):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("teacher", "a teacher is a mapping of its settings")
    entry = BACKENDS.get(value.get("backend", DEFAULT_BACKEND))
    if entry is None:
        raise PydanticCustomError("backend", "backend must be one of {names}", {"names": ", ".join(BACKENDS)})
    return entry.config.model_validate(value)


TeacherConfig = Annotated[SerializeAsAny[TeacherBase], PlainValidator(_teacher)]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(TeacherConfig)


def parse_teacher(data: dict[str, Any]) -> Any:
    """A teacher's config from its mapping (pydantic's ValidationError when it is not one)."""
    return _ADAPTER.validate_python(data)


def make_backend(teacher: Any, workdir: Path) -> Backend:
    """The backend `teacher.backend` names, keeping any state it needs in `workdir`."""
    return BACKENDS[teacher.backend].create(teacher, workdir)
