"""The course's model in a student's process: ``course_model()``, which a notebook's setup cell
calls, loaded once per process; and, where a submitted notebook is graded, the model the grader's
side already holds instead (``serve_model``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grader.models import (
    MODELS,
    ModelChoiceError,
    choose_device,
    choose_model,
    get_spec,
    load_model,
)

_loaded: dict[tuple[str, str], Any] = {}  # (model id, device) -> a model course_model loaded
_model_ids: dict[int, str] = {}  # id(model) -> its model id, for the models this kernel may grade on
_graded_model: Callable[[], Any] | None = None  # set where a submitted notebook is graded


def serve_model(model: Callable[[], Any]) -> None:
    """Where a submitted notebook is graded (grader.student.executor): `course_model()` in its
    cells returns the model the grader's side already holds, instead of loading another."""
    global _graded_model
    _graded_model = model


def graded_elsewhere() -> bool:
    """True where a submitted notebook is being graded: its own check() cell must do nothing."""
    return _graded_model is not None


def model_id(model: Any) -> str:
    """The grader's id (``--model``) of a model that course_model or kernel_model gave."""
    return _model_ids[id(model)]


def course_model(name: str | None = None, device: str | None = None) -> Any:
    """The course's model as a TransformerBridge in compatibility mode, loaded once per kernel:
    `name` as ``--model`` takes it (default: $MECHGRADE_MODEL, else GPT-2 small when reachable,
    else the practice model, with a banner that says so); `device` as ``--device``."""
    if _graded_model is not None and _graded_model() is not None:
        return _graded_model()
    choice, chosen_device = choose_model(name), choose_device(device)
    key = (choice.spec.id, chosen_device)
    if key not in _loaded:
        if choice.banner():
            print(choice.banner(), file=sys.stderr)
        _loaded[key] = load_model(choice.spec, chosen_device)
        _model_ids[id(_loaded[key])] = choice.spec.id if choice.spec.id in MODELS else choice.spec.source
    return _loaded[key]


def kernel_model() -> Any:
    """The model to grade on: one course_model loaded, else a sound TransformerBridge found in
    the notebook's namespace (in compatibility mode, of a model the grader knows), else a new
    course_model()."""
    namespace = vars(sys.modules["__main__"])
    bridges = [value for value in list(namespace.values()) if _is_bridge(value)]
    for model in bridges:
        if id(model) in _model_ids:
            return model
    for model in bridges:
        known = _known_id(model)
        if known is not None and getattr(model, "compatibility_mode", False) is True:
            _model_ids[id(model)] = known
            return model
    return course_model()


def _is_bridge(value: Any) -> bool:
    bridge = sys.modules.get("transformer_lens.model_bridge")
    return bridge is not None and isinstance(value, bridge.TransformerBridge)


def _known_id(model: Any) -> str | None:
    """The grader's id of a model booted from a hub name or a folder ("gpt2" -> gpt2-small)."""
    source = str(getattr(getattr(getattr(model, "original_model", None), "config", None), "_name_or_path", "") or "")
    for spec in MODELS.values():
        if source == spec.source or (spec.local and Path(source).resolve() == Path(spec.source).resolve()):
            return spec.id
    try:
        return str(Path(source).resolve()) if source and get_spec(source) else None
    except ModelChoiceError:
        return None
