"""The fixtures graded checks receive: the model, the graded and reference modules, expected
values, soft checks, and the grader's own runs of the model.

They live on the GradingSession that grader.plugin creates for a run with graded checks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from grader.grading.session import GRADE_KEY, GradingSession, exercise_of, session_of
from grader.judging.fixtures import Expected
from grader.judging.scoring import Grade
from grader.sandbox.client import Sandbox, StudentModule


def _require_session(request: pytest.FixtureRequest) -> GradingSession:
    grading = session_of(request.config)
    if grading is None:
        raise RuntimeError("mechgrade fixtures are only available to exercises/NN/test_NN_*.py checks")
    return grading


# ---- fixtures for checks ----


@pytest.fixture
def model(request: pytest.FixtureRequest) -> Any:
    """The grader's TransformerBridge: loaded once per session. Passed to a student function,
    it stands for the sandbox's own copy of the model."""
    return _require_session(request).model


@pytest.fixture(scope="module")
def student(request: pytest.FixtureRequest) -> StudentModule:
    """The graded module for this check file (its TOPIC), from exercises/, solutions/ or
    --submission, as a proxy: ``student.fn(...)`` runs fn in the sandbox and returns data."""
    grading = _require_session(request)
    exercise, topic = _exercise_and_topic(request)
    with grading.check_time_limit(f"importing {topic}.py"):
        return grading.graded_module(exercise, topic)


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """Where student code runs: ``sandbox.put(value)`` keeps a value there (a cache a hook may
    write into) as a Handle, ``handle.fetch()`` brings it back, ``sandbox.hooks_on_model()``."""
    return _require_session(request).sandbox


@pytest.fixture(scope="module")
def reference(request: pytest.FixtureRequest) -> ModuleType | None:
    """The reference solution, or None where solutions/ is absent (expected values come from fixtures)."""
    grading = _require_session(request)
    exercise, topic = _exercise_and_topic(request)
    return grading.reference_module(exercise, topic)


@pytest.fixture
def expected(request: pytest.FixtureRequest) -> Callable[..., Expected]:
    """``expected(key, compute, atol=..., rtol=...)``: the expected value for `key` (see grader.judging.fixtures)."""
    grading = _require_session(request)
    exercise, topic = _exercise_and_topic(request)
    store = grading.store

    hidden = request.node.get_closest_marker("hidden") is not None

    def get(key: str, compute: Callable[[], Any] | None = None, atol: float = 1e-5, rtol: float = 1e-4) -> Expected:
        if compute is not None and grading.reference_module(exercise, topic) is None:
            compute = None  # no solutions/: the lambda would call None.<function>
        return store.get(exercise, key, compute, atol, rtol, hidden=hidden)

    return get


@pytest.fixture
def held_out(request: pytest.FixtureRequest) -> Any:
    """The held-out inputs of a hidden check (grader.judging.held_out.HeldOut): the fixed ones, or
    the file --held-out names (a bundle's, drawn with its seed). Only for @pytest.mark.hidden checks:
    a public check that read them would put them in every release."""
    if request.node.get_closest_marker("hidden") is None:
        raise RuntimeError(f"{request.node.name} asks for held-out inputs but is not @pytest.mark.hidden")
    return _require_session(request).held_out


@pytest.fixture
def grade(request: pytest.FixtureRequest) -> Grade:
    """Soft checks with partial credit: ``grade.compare(...)``, ``grade.check(...)``, ``grade.figure(...)``."""
    recorder = Grade()
    request.node.stash[GRADE_KEY] = recorder
    return recorder


@pytest.fixture(scope="module")
def model_id(request: pytest.FixtureRequest) -> str:
    """The graded model's id: "gpt2-small" or "toy-gpt2"."""
    return _require_session(request).choice.spec.id


@pytest.fixture(scope="module")
def model_source(request: pytest.FixtureRequest) -> str:
    """What boot_transformers receives for the graded model: a hub name or a local folder (in
    isolated grading, the worker's own copy of that folder)."""
    grading = _require_session(request)
    return grading.sandbox.model_source_override or grading.choice.spec.source


@pytest.fixture(scope="module")
def device(request: pytest.FixtureRequest) -> str:
    """The device the graded model runs on."""
    return _require_session(request).device


@pytest.fixture
def run_cached(request: pytest.FixtureRequest, model: Any) -> Callable[[str], tuple[Any, Any]]:
    """``run_cached(prompt) -> (logits, cache)`` from the grader's own run of the model.

    One forward pass per prompt (see GradingSession.remembered); every call returns fresh
    copies, since student code may modify what it receives.
    """
    from transformer_lens import ActivationCache

    session = _require_session(request)

    def forward(prompt: str) -> tuple[Any, dict[str, Any]]:
        import torch

        with torch.no_grad():
            logits, cache = model.run_with_cache(model.to_tokens(prompt))
        return logits, dict(cache.items())

    def run(prompt: str) -> tuple[Any, ActivationCache]:
        logits, stored = session.remembered(("run_with_cache", prompt), lambda: forward(prompt))
        return logits.clone(), ActivationCache({k: v.clone() for k, v in stored.items()}, model)

    return run


def _exercise_and_topic(request: pytest.FixtureRequest) -> tuple[str, str]:
    exercise = exercise_of(Path(str(request.node.path)))
    topic = getattr(request.module, "TOPIC", None)
    if exercise is None or not topic:
        raise RuntimeError(f"{request.node.path.name} must be exercises/NN/test_NN_*.py and set TOPIC")
    return exercise, topic
