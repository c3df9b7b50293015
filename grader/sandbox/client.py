"""The grader's side of the boundary: proxies for the graded module, handles for what stays in
the sandbox, and student errors rebuilt from data.

A check sees ``student.attention_pattern(cache, 1, 1)``: the proxy encodes the arguments (the
grader's model becomes "the model over there", a cache becomes its tensors), the sandbox runs the
call, and the answer comes back as plain data, decoded by code that never runs anything the
student wrote.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grader.sandbox.faults import os_error_fault
from grader.student import codec
from grader.student.executor import Executor, HookPointName, decode_cache, encode_cache
from grader.student.submission import SubmissionImportError

# Built-in exception types a student error is rebuilt as, so that a check can ``except ValueError``
# around a call. AssertionError is left out: the grader reads it as a failed check of its own.
REBUILT_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("ValueError", "TypeError", "KeyError", "IndexError", "AttributeError", "NotImplementedError",
                 "RuntimeError", "ZeroDivisionError", "LookupError", "ArithmeticError", "NameError",
                 "ImportError", "ModuleNotFoundError", "OverflowError", "RecursionError", "MemoryError",
                 "UnboundLocalError", "FileNotFoundError", "PermissionError", "OSError")
}
MAX_PNG = 4 * 1024 * 1024


class StudentError(Exception):
    """Student code raised (or ended its process, or ran out of time in a way that is its fault).
    Rebuilt from data: `type_name`, `message` and `student_traceback` are all the grader knows."""

    type_name: str = "Exception"
    function: str | None = None  # the graded function that raised, when a check called one

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.student_traceback = message  # replaced by the student's frames where there are any

    @property
    def headline(self) -> str:
        """'your token_index raised ValueError: 'John' is not in list', in one line."""
        who = f"your {self.function}" if self.function else "your code"
        message = " ".join(str(self).split())
        return f"{who} raised {self.type_name}" + (f": {message[:300]}" if message else "")

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_rebuilt: dict[str, type[StudentError]] = {}


def student_error(type_name: str, builtin: str, message: str, student_traceback: str) -> StudentError:
    base = REBUILT_BUILTINS.get(builtin)
    cls: type[StudentError] = StudentError
    if base is not None:
        if builtin not in _rebuilt:
            _rebuilt[builtin] = type(f"Student{builtin}", (StudentError, base), {})
        cls = _rebuilt[builtin]
    error = cls(message)
    error.type_name = type_name
    error.student_traceback = student_traceback or f"{type_name}: {message}"
    return error


class WorkerLost(StudentError):
    """The worker process ended (the student's code exited it or crashed it) during a call."""


# ---- what stays on the other side ----


@dataclass(frozen=True)
class ModelInfo:
    is_bridge: bool
    device: str
    training: bool
    compatibility_mode: bool
    cfg: dict[str, int]

    @classmethod
    def from_data(cls, info: Any) -> ModelInfo | None:
        try:
            return cls(bool(info["is_bridge"]), str(info["device"]), bool(info["training"]),
                       bool(info["compatibility_mode"]), {str(k): int(v) for k, v in dict(info["cfg"]).items()})
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]


@dataclass(frozen=True)
class AxesInfo:
    images: list[np.ndarray]
    lines: list[np.ndarray]  # each line's y values
    bars: list[np.ndarray]  # each bar chart's heights
    xticklabels: list[str]
    yticklabels: list[str]
    xlabel: str
    ylabel: str
    title: str
    points: list[np.ndarray] = field(default_factory=list)  # [n, 2]: each scatter's (x, y), then each line's


@dataclass(frozen=True)
class FigureInfo:
    axes: list[AxesInfo]
    suptitle: str
    png: bytes = field(repr=False)

    @classmethod
    def from_data(cls, info: Any) -> FigureInfo | None:
        try:
            axes = [
                AxesInfo([np.asarray(i, dtype=float) for i in a["images"]],
                         [np.asarray(line, dtype=float) for line in a["lines"]],
                         [np.asarray(bars, dtype=float) for bars in a["bars"]], [str(t) for t in a["xticklabels"]],
                         [str(t) for t in a["yticklabels"]], str(a["xlabel"]), str(a["ylabel"]), str(a["title"]),
                         [np.asarray(p, dtype=float).reshape(-1, 2) for p in a.get("points", [])])
                for a in info["axes"]
            ]
            png = info["png"]
            if type(png) is not bytes or len(png) > MAX_PNG or not png.startswith(b"\x89PNG\r\n\x1a\n"):
                png = b""
            return cls(axes, str(info["suptitle"]), png)
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class ModelActivity:
    """What student code did with the sandbox's model inside ``sandbox.watching()``: the hook
    points it attached hooks to, how many hooks it attached, and its forward passes (None where
    the model has no ``embed`` to count them on). `known` is False when the record was lost (the
    worker was replaced during the block)."""

    hooked: list[str] = field(default_factory=list)
    hook_calls: int = 0
    forward_passes: int | None = None
    known: bool = False

    def fill(self, record: Any) -> None:
        if type(record) is not dict:
            return
        try:
            self.hooked = [str(name) for name in record["hooked"]]
            self.hook_calls = int(record["hook_calls"])
            passes = record["forward_passes"]
            self.forward_passes = None if passes is None else int(passes)
        except (KeyError, TypeError, ValueError):
            return
        self.known = True


class Handle:
    """An object that stays in the sandbox (a model, a hook function, a Figure, anything else
    that cannot cross), with a description of it. Pass it back into calls, call it, or fetch it."""

    def __init__(self, sandbox: Sandbox, number: int, generation: int, kind: str, type_name: str, info: Any) -> None:
        self._sandbox = sandbox
        self.number = number
        self.generation = generation
        self.kind = kind
        self.type_name = type_name
        self.model = ModelInfo.from_data(info) if kind == "model" else None
        self.figure = FigureInfo.from_data(info) if kind == "figure" else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._sandbox.call_handle(self, None, args, kwargs)

    def call_method(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._sandbox.call_handle(self, name, args, kwargs)

    def fetch(self) -> Any:
        """The object itself, by value, where it can cross (a cache the grader put there)."""
        return self._sandbox.fetch(self)

    @property
    def ungradable_reason(self) -> str:
        return f"returned a {self.type_name}, which cannot be graded: return a tensor, a number, a string or a list"

    def __repr__(self) -> str:
        return f"<{self.type_name} kept in the sandbox>"


class StudentModule:
    """The graded module, as checks see it: ``student.fn(...)`` runs fn in the sandbox."""

    def __init__(self, sandbox: Sandbox, key: str, notes: list[str] | None = None) -> None:
        self._sandbox = sandbox
        self._key = key
        self._notes = notes or []  # what importing it said (a notebook's skipped magics, cells that raised)

    @property
    def import_notes(self) -> list[str]:
        return list(self._notes)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._sandbox.call_function(self._key, name, args, kwargs)

        call.__name__ = name
        return call

    def __repr__(self) -> str:
        return f"<graded module {self._key}>"


# ---- the sandbox: a transport for bytes, and everything around it ----


class Sandbox:
    """Runs requests on the student's side. Subclasses move the bytes: InProcessSandbox calls an
    Executor directly, grader.sandbox.isolated.IsolatedSandbox talks to a worker process."""

    isolated = False

    def __init__(self, model: Callable[[], Any]) -> None:
        self._model = model  # the grader's model: it never crosses, it becomes "the model over there"
        self.generation = 0  # bumped whenever the other side is replaced: older handles are void
        self.deadline: float | None = None  # monotonic time the current check must end by
        self._paths: dict[str, Any] = {}  # module key -> path, to import again in a new worker
        self.own_paths: list[Path] = []  # the submission and scratch folders: errors there are the student's
        self.faults: list[str] = []  # environment faults seen since the last check (grader.sandbox.faults)

    # ---- the transport ----

    def _exchange(self, request: bytes, what: str) -> bytes:
        raise NotImplementedError

    def start_exercise(self, exercise: str) -> None:
        """A new exercise begins: isolated sandboxes start a fresh worker."""

    def close(self) -> None:
        """Stop everything on the other side; after this, nothing of the student's runs."""

    @property
    def model_source_override(self) -> str | None:
        return None

    # ---- requests ----

    def module(self, key: str, path: Any) -> StudentModule:
        self._paths[key] = path
        notes = self._import(key)
        return StudentModule(self, key, notes)

    def _import(self, key: str) -> list[str]:
        """Import the module; what the import said about it (a notebook's notes), as lines."""
        reply = self._request({"op": "import", "key": key, "path": str(self._paths[key])}, f"importing {key}")
        if reply.get("status") == "import_failed":
            raise SubmissionImportError(str(reply.get("message", "")))
        notes = self._value(reply)
        return [str(n)[:4000] for n in notes][:50] if type(notes) is list else []

    def call_function(self, key: str, name: str, args: tuple, kwargs: dict) -> Any:
        try:
            return self._value(self._request({"op": "call", "module": key, "name": name, "args": args,
                                              "kwargs": kwargs}, f"{name}()"))
        except StudentError as error:
            error.function = error.function or name
            raise

    def call_handle(self, handle: Handle, name: str | None, args: tuple, kwargs: dict) -> Any:
        message: dict[str, Any] = {"op": "call", "handle": handle, "args": args, "kwargs": kwargs}
        if name is not None:
            message["name"] = name
        return self._value(self._request(message, f"calling the {handle.type_name}"))

    def call_model(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a method of the sandbox's own model, where handles can be arguments:
        ``sandbox.call_model("run_with_hooks", tokens, fwd_hooks=[(name, student_hook)])``."""
        model = self._model()
        if model is None:
            raise RuntimeError("these checks loaded no model")
        message = {"op": "call", "handle": model, "name": name, "args": args, "kwargs": kwargs}
        return self._value(self._request(message, f"model.{name}()"))

    def put(self, value: Any) -> Handle:
        """Keep `value` on the other side (a cache a student's hook may write into) as a handle."""
        handle = self._value(self._request({"op": "put", "value": value}, "sending a value"))
        assert isinstance(handle, Handle)
        return handle

    def fetch(self, handle: Handle) -> Any:
        return self._value(self._request({"op": "fetch", "value": handle}, "fetching a value"))

    @contextmanager
    def watching(self) -> Iterator[ModelActivity]:
        """Record what student code does with the sandbox's model inside the block (see
        grader.student.executor.ModelWatch); the record is filled in when the block ends. Run no
        forward pass of the grader's own inside it: in local mode it would be counted too."""
        activity = ModelActivity()
        self._value(self._request({"op": "watch", "on": True}, "watching the model"))
        try:
            yield activity
        finally:
            try:
                activity.fill(self._value(self._request({"op": "watch", "on": False}, "watching the model")))
            except StudentError:
                pass  # the worker was replaced: the record is lost, activity.known stays False

    def hooks_on_model(self) -> list[str]:
        """Hook points of the sandbox's model that have a hook on them now."""
        return [str(h) for h in self._value(self._request({"op": "hooks"}, "inspecting the model"))]

    def after_check(self) -> list[str]:
        """Repair the sandbox's model after a check; what had to be repaired, in words."""
        try:
            return [str(r)[:300] for r in self._value(self._request({"op": "repair"}, "repairing the model"))][:10]
        except StudentError as exc:
            return [f"the model could not be repaired ({exc}); the next check gets a fresh worker"]

    # ---- encoding ----

    def _request(self, message: dict[str, Any], what: str) -> dict[str, Any]:
        reply = codec.loads(self._exchange(codec.dumps(message, self._encode_hook), what), self._decode_hooks())
        if type(reply) is not dict:
            raise StudentError("the sandbox sent something that is not a reply")
        return reply

    def _value(self, reply: dict[str, Any]) -> Any:
        status = reply.get("status")
        if status == "ok":
            return reply.get("value")
        if status == "raised":
            error = reply.get("error") if type(reply.get("error")) is dict else {}
            raised = student_error(*(str(error.get(k, ""))[:8000] for k in ("type", "builtin", "message", "traceback")))
            number, filename = error.get("errno"), error.get("filename")
            fault = os_error_fault(str(error.get("builtin", "")), number if type(number) is int else None,
                                   filename if type(filename) is str else None, self.own_paths)
            if fault is not None:
                self.faults.append(fault)
            raise raised
        raise StudentError(str(reply.get("message", "the sandbox refused the request"))[:4000])

    def _encode_hook(self, value: Any, encoder: codec.Encoder) -> Any:
        if value is self._model() and value is not None:
            return {"$model": None}
        if isinstance(value, Handle):
            if value.generation != self.generation:
                raise StudentError(f"this {value.type_name} was lost when the worker was replaced (after a crash or a time-out)")
            return {"$handleref": value.number}
        if isinstance(value, HookPointName):
            return {"$hookpoint": value.name}
        return encode_cache(value, encoder)

    def _decode_hooks(self) -> dict[str, Callable[[Any], Any]]:
        return {"$handle": self._handle, "$cache": lambda tensors: decode_cache(tensors, self._model())}

    def _handle(self, data: Any) -> Handle:
        if type(data) is not dict or type(data.get("id")) is not int:
            raise codec.CodecError("a handle must have a number")
        return Handle(self, data["id"], self.generation, str(data.get("kind", "object")),
                      str(data.get("type", "object"))[:200], data.get("info"))


class InProcessSandbox(Sandbox):
    """Local self-grading: student code runs in this process (fast, and a student's own machine
    has nothing to protect), through the same codec, so checks behave as in isolation."""

    def __init__(self, model: Callable[[], Any], guard: Callable[[], Any] | None = None,
                 passthrough: tuple[type[BaseException], ...] = ()) -> None:

        super().__init__(model)
        self._guard = guard
        self.executor = Executor(model=model, guard=None, passthrough=passthrough)

    def _exchange(self, request: bytes, what: str) -> bytes:
        self.executor.guard = self._guard() if self._guard is not None else None
        return self.executor.serve(request)
