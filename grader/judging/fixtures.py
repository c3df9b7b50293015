"""Expected values: one JSON file per exercise and model, made from the reference solutions.

A check asks for a value by key, giving the reference computation that produces it::

    want = expected("pattern_L1H2", lambda: reference.attention_pattern(cache, 1, 2), atol=1e-5)

What happens depends on the session's mode (syrupy's model):

- ``use``: the stored value is returned (with the tolerance stored beside it). Without a fixture
  file for this model, the reference is computed now and the exercise is marked "local reference".
- ``refresh``: the reference is computed now and queued; files are written once, at the end of
  the session, and only for exercises whose reference solutions passed every check.
- ``check``: the reference is computed now and compared with the stored value; nothing is written.
  The session ends with a report of created, changed (with the largest difference) and unused keys.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grader.judging.compare import Tolerance, compare, to_numpy
from grader.project import PROJECT_ROOT

FORMAT_VERSION = 1
FIXTURES_DIR = PROJECT_ROOT / "fixtures"
HIDDEN_SUFFIX = ".hidden.json"
HELD_OUT_KEY = "held_out_sha256"  # in a hidden file's provenance: the inputs its values belong to
# refresh-incomplete: also write exercises whose reference fails a check (benchmarks on random weights)
Mode = Literal["use", "refresh", "check", "refresh-incomplete"]


class FixtureError(Exception):
    """Expected values are missing or unreadable; the message says which command fixes it."""


@dataclass(frozen=True)
class Expected:
    key: str
    value: Any
    tol: Tolerance


def refresh_command(model_id: str, exercise: str | None = None) -> str:
    command = f"mechgrade fixtures refresh --model {model_id}"
    return f"{command} --exercise {exercise}" if exercise else command


def fixture_path(model_id: str, exercise: str, root: Path = FIXTURES_DIR, hidden: bool = False) -> Path:
    """NN.json holds the public checks' values; NN.hidden.json the hidden checks' (a release leaves
    it out, a bundle keeps it)."""
    return root / model_id / f"{exercise}{HIDDEN_SUFFIX if hidden else '.json'}"


# ---- encoding: tensors become {"tensor": nested list, "dtype": ...}; JSON handles the rest ----


def encode(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "dtype"):  # a torch tensor
        array = to_numpy(value)
        return {"tensor": array.tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        return {"tensor": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} as an expected value")


def decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"tensor", "dtype"}:
        import torch

        return torch.tensor(value["tensor"], dtype=getattr(torch, value["dtype"]))
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    return value


# ---- one exercise's file ----


@dataclass
class FixtureFile:
    path: Path
    provenance: dict[str, Any]
    checks: dict[str, dict[str, Any]]  # key -> {"value": ..., "atol": ..., "rtol": ...}

    @classmethod
    def read(cls, path: Path) -> FixtureFile:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FixtureError(f"{path} is unreadable ({exc}); regenerate it with the refresh command") from exc
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise FixtureError(
                f"{path} has format version {version!r}, this grader reads version {FORMAT_VERSION}; "
                "regenerate it with the refresh command"
            )
        return cls(path, data.get("provenance", {}), data.get("checks", {}))

    def write(self, exercise: str, model_id: str) -> None:
        document = {
            "format_version": FORMAT_VERSION,
            "exercise": exercise,
            "model": model_id,
            "provenance": self.provenance,
            "checks": dict(sorted(self.checks.items())),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(document, indent=1) + "\n")
        os.replace(temporary, self.path)


# ---- the session's view of all expected values ----


@dataclass
class Drift:
    """What a refresh or check found for one exercise."""

    created: list[str] = field(default_factory=list)
    changed: dict[str, float] = field(default_factory=dict)  # key -> largest absolute difference
    unchanged: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    largest: tuple[str, float] = ("", 0.0)  # the largest difference seen, within tolerance or not

    def saw(self, key: str, difference: float) -> None:
        if difference > self.largest[1]:
            self.largest = (key, difference)

    @property
    def clean(self) -> bool:
        return not (self.created or self.changed or self.unused)


class FixtureStore:
    """Serves expected values to checks and keeps what refresh/check need for the end of the run."""

    def __init__(self, model_id: str, mode: Mode, provenance: dict[str, Any], root: Path = FIXTURES_DIR,
                 held_out_digest: Callable[[], str] = lambda: "") -> None:
        self.model_id = model_id
        # The held-out inputs the hidden checks run on: a hidden file made for others is refused.
        self.held_out_digest = held_out_digest
        self.mode = mode
        self.provenance = provenance  # of this run: written into refreshed files
        self.root = root
        self._files: dict[tuple[str, bool], FixtureFile | None] = {}  # (exercise, hidden) -> its file
        self._computed: dict[tuple[str, bool], dict[str, dict[str, Any]]] = {}  # (exercise, hidden) -> key -> entry
        self._drift: dict[str, Drift] = {}

    def file(self, exercise: str, hidden: bool = False) -> FixtureFile | None:
        if (exercise, hidden) not in self._files:
            path = fixture_path(self.model_id, exercise, self.root, hidden)
            self._files[exercise, hidden] = FixtureFile.read(path) if path.exists() else None
        return self._files[exercise, hidden]

    def source(self, exercise: str) -> str:
        """'fixtures' or 'local reference', as reports show it (after a refresh: the new files)."""
        return "fixtures" if self.file(exercise) is not None else "local reference"

    def missing_message(self, exercise: str) -> str:
        return (
            f"no expected values for exercise {exercise} on model {self.model_id} "
            f"({fixture_path(self.model_id, exercise, self.root)}); make them with "
            f"`{refresh_command(self.model_id, exercise)}`"
        )

    def get(
        self,
        exercise: str,
        key: str,
        compute: Callable[[], Any] | None,
        atol: float,
        rtol: float,
        hidden: bool = False,
    ) -> Expected:
        """`hidden`: the value of a hidden check, kept in the exercise's NN.hidden.json."""
        stored = self.file(exercise, hidden)
        made_for_others = hidden and stored is not None and stored.provenance.get(HELD_OUT_KEY) != self.held_out_digest()
        if made_for_others and self.mode in ("refresh", "refresh-incomplete"):
            stored = None  # remade for this run's inputs: the old values are no measure of drift
        elif made_for_others:
            raise FixtureError(
                f"{stored.path} was made for other held-out inputs than this run's (--held-out): "
                f"grade with the inputs it was made for, or remake it with `{refresh_command(self.model_id, exercise)}`"
            )
        if self.mode == "use" and stored is not None:
            if key not in stored.checks:
                raise FixtureError(
                    f"{stored.path} has no value for {key!r}: the checks changed since it was made; "
                    f"run `{refresh_command(self.model_id, exercise)}`"
                )
            entry = stored.checks[key]
            return Expected(key, decode(entry["value"]), Tolerance(entry.get("atol", atol), entry.get("rtol", rtol)))
        if compute is None:
            raise FixtureError(self.missing_message(exercise) + ", or grade where solutions/ is present")
        value = compute()
        encoded = encode(value)  # fails here, not at the end of the run, for unstorable values
        self._computed.setdefault((exercise, hidden), {})[key] = {"value": encoded, "atol": atol, "rtol": rtol}
        if self.mode != "use":
            self._record_drift(exercise, key, value, stored)
        return Expected(key, value, Tolerance(atol, rtol))

    def _record_drift(self, exercise: str, key: str, value: Any, stored: FixtureFile | None) -> None:
        """How a value computed now (refresh, check) differs from the stored one."""
        drift = self._drift.setdefault(exercise, Drift())
        if stored is None or key not in stored.checks:
            drift.created.append(key)
            return
        entry = stored.checks[key]
        tol = Tolerance(entry.get("atol", 0.0), entry.get("rtol", 0.0))
        result = compare(value, decode(entry["value"]), tol)
        drift.saw(key, result.max_abs)
        if result.ok:
            drift.unchanged.append(key)
        else:
            drift.changed[key] = result.max_abs

    def finish(self, exercises_complete: dict[str, bool]) -> dict[str, Drift]:
        """End of session. `exercises_complete`: exercise -> every one of its checks ran and passed.

        refresh writes the files of complete exercises; check reports drift. Returns the drift.
        """
        if self.mode == "use":
            return {}
        for exercise, complete in sorted(exercises_complete.items()):
            drift = self._drift.setdefault(exercise, Drift())
            for hidden in (False, True):
                computed = self._computed.get((exercise, hidden), {})
                stored = self.file(exercise, hidden)
                if complete and stored is not None:
                    drift.unused += sorted(set(stored.checks) - set(computed))
                if computed and (self.mode == "refresh-incomplete" or (self.mode == "refresh" and complete)):
                    provenance = {**self.provenance, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                  **({HELD_OUT_KEY: self.held_out_digest()} if hidden else {})}
                    written = FixtureFile(fixture_path(self.model_id, exercise, self.root, hidden), provenance, computed)
                    written.write(exercise, self.model_id)
                    self._files[exercise, hidden] = written
        return self._drift


def render_drift(drift: dict[str, Drift], mode: Mode, model_id: str, written: bool = True) -> str:
    """The end-of-run summary for refresh and check, in the manner of a snapshot tool."""
    lines = []
    verb = {"refresh": "refreshed", "refresh-incomplete": "refreshed", "check": "checked"}.get(mode, mode)
    for exercise, d in sorted(drift.items()):
        parts = [f"{len(d.created)} created", f"{len(d.changed)} changed", f"{len(d.unused)} unused", f"{len(d.unchanged)} unchanged"]
        lines.append(f"exercise {exercise} ({model_id}): " + ", ".join(parts))
        if d.largest[0]:
            lines.append(f"  largest difference from the stored values: {d.largest[1]:.3g} ({d.largest[0]})")
        for key in d.created:
            lines.append(f"  created   {key}")
        for key, diff in d.changed.items():
            lines.append(f"  changed   {key} (largest difference {diff:.3g})")
        for key in d.unused:
            lines.append(f"  unused    {key}")
    if mode == "check" and any(not d.clean for d in drift.values()):
        lines.append(f"fixtures differ from the reference solutions: run `{refresh_command(model_id)}`")
    elif mode == "refresh" and not written:
        lines.append("nothing written: some reference checks failed (see above)")
    elif not lines:
        lines.append(f"no expected values were {verb}")
    return "\n".join(lines)
