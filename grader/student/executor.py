"""The side of the boundary that runs student code.

An Executor imports the graded modules, calls their functions with decoded arguments, keeps
whatever cannot cross the boundary (a model, a hook function, a Figure) as a numbered handle, and
answers with data. It runs in the worker process when grading is isolated, and in the grader's
own process for local self-grading: both take the same bytes in and give the same bytes out, so
a check behaves the same either way.

Nothing here decides a grade. Student code can change anything in this process, this module
included; all it can spoil that way is its own answers.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from grader.student import codec
from grader.student.figure_png import figure_png
from grader.student.frames import MAX_MESSAGE, describe_exception, student_frames
from grader.student.imports import (
    KERNEL_NAMESPACE,
    ImportFailed,
    import_file,
    import_notebook,
)
from grader.student.model_guard import ModelGuard, attached_hooks
from grader.student.notebook_cells import not_defined
from grader.student.runtime import serve_model

TENSOR_ARRAY_WARNING = "__array__ implementation doesn't accept a copy keyword"
MAX_TRACEBACK = 8000  # characters of a traceback sent back


def preload() -> None:
    """Import, once in the template, what student code and this module use: a worker then never
    reads the grader's or the root user's files for it (it may not be allowed to)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import transformer_lens  # noqa: F401
    from transformer_lens import ActivationCache  # noqa: F401
    from transformer_lens.model_bridge import TransformerBridge  # noqa: F401

    # Not the student's doing (matplotlib copying a torch tensor the way numpy 2 deprecates): a
    # worker's warnings reach the student's output, and this one would follow the hint's advice.
    warnings.filterwarnings("ignore", message=re.escape(TENSOR_ARRAY_WARNING), category=DeprecationWarning)

    # One picture drawn here loads the fonts and fills matplotlib's text caches for every worker
    # (each worker's first picture: 15 ms less; 4 of a submission's 7 workers draw one).
    fig, ax = matplotlib.pyplot.subplots()
    ax.imshow([[0.0, 1.0]])
    ax.set(title="title", xlabel="x", ylabel="y", xticks=[0, 1], xticklabels=["<|endoftext|>", " France"])
    figure_png(fig, dpi=80)
    matplotlib.pyplot.close(fig)


# ---- an ActivationCache crosses as its tensors, on either side ----


def encode_cache(value: Any, encoder: codec.Encoder) -> Any:
    """The extension tree of an ActivationCache, or None for anything else."""
    if type(value).__name__ == "ActivationCache" and hasattr(value, "cache_dict"):
        return {"$cache": encoder.encode(dict(value.cache_dict))}
    return None


def decode_cache(tensors: Any, model: Any) -> Any:
    """An ActivationCache over `model` from decoded data, which must map names to tensors."""
    import torch
    from transformer_lens import ActivationCache

    if type(tensors) is not dict or not all(type(k) is str and type(v) is torch.Tensor for k, v in tensors.items()):
        raise codec.CodecError("a cache must map names to tensors")
    return ActivationCache(tensors, model)


class HookPointName(SimpleNamespace):
    """What a hook function reads from TransformerLens's HookPoint: its name (``hook.name``)."""

    name: str


class Executor:
    def __init__(self, model: Callable[[], Any] | None = None, guard: Any = None,
                 passthrough: tuple[type[BaseException], ...] = ()) -> None:
        """`model` returns this side's graded model (None where the checks need none); `guard`
        repairs it between checks; `passthrough` exceptions are the grader's own (its time limit
        in local mode) and are re-raised, not reported as the student's."""
        self._model = model or (lambda: None)
        self.guard = guard
        self.device: str | None = None  # where arguments' tensors go; None: the model's cfg says
        self.passthrough = passthrough
        self.modules: dict[str, ModuleType] = {}
        # Modules read from a notebook: a function they lack was not attempted (key -> where).
        self.notebooks: dict[str, str] = {}
        self.handles: dict[int, Any] = {}
        self._next_handle = 1
        self.watch: ModelWatch | None = None

    # ---- the byte interface: one request in, one reply out ----

    def serve(self, request: bytes) -> bytes:
        try:
            message = codec.loads(request, self._decode_hooks(), device=self._device())
            reply = self._dispatch(message)
        except self.passthrough:
            raise
        except codec.CodecError as exc:
            reply = {"status": "refused", "message": f"the request could not be read: {exc}"}
        return self._encode_reply(reply)

    def _encode_reply(self, reply: dict[str, Any]) -> bytes:
        try:
            return codec.dumps(reply, self._encode_hook, self._keep_as_handle)
        except self.passthrough:
            raise
        except BaseException as exc:  # a value that breaks encoding: the student's answer is ungradable
            return codec.dumps({"status": "refused", "message": f"the answer could not be sent to the grader: {describe_exception(exc)}"})

    def _dispatch(self, message: Any) -> dict[str, Any]:
        if type(message) is not dict or type(message.get("op")) is not str:
            return {"status": "refused", "message": "a request must name its op"}
        op = message["op"]
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            return {"status": "refused", "message": f"unknown op {op!r}"}
        return handler(message)

    # ---- ops ----

    def _op_ping(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"status": "ok", "value": os.getpid()}

    def _op_import(self, message: dict[str, Any]) -> dict[str, Any]:
        key, path = message["key"], str(message["path"])
        cwd, limit = os.getcwd(), sys.getrecursionlimit()
        notes: list[str] = []
        try:
            if path == KERNEL_NAMESPACE:
                self.modules[key] = sys.modules["__main__"]
            elif path.endswith(".ipynb"):
                serve_model(self._model)  # its setup cell's course_model() is this side's model
                self.modules[key], notes = import_notebook(Path(path), f"mechgrade_student_{key.replace('/', '_')}",
                                                           self.passthrough)
                if self.guard is not None:  # its cells ran at import, on this side's model perhaps
                    notes += [f"after the notebook ran, the grader repaired the model: {r}" for r in self.guard.repair()]
            else:
                self.modules[key] = import_file(Path(path), f"mechgrade_student_{key.replace('/', '_')}", self.passthrough)
        except ImportFailed as exc:
            return {"status": "import_failed", "message": str(exc)}
        finally:
            _restore_process(cwd, limit)
        if path == KERNEL_NAMESPACE or path.endswith(".ipynb"):
            self.notebooks[key] = "the notebook" if path == KERNEL_NAMESPACE else Path(path).name
        return {"status": "ok", "value": notes}

    def _op_call(self, message: dict[str, Any]) -> dict[str, Any]:
        target = self._target(message)
        if isinstance(target, dict):
            return target  # a refusal
        return self._run(target, message.get("args", ()), message.get("kwargs", {}))

    def _op_put(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"status": "ok", "value": _Keep(message["value"])}

    def _op_fetch(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"status": "ok", "value": message["value"]}  # a handle's object, sent by value if it can be

    def _op_hooks(self, message: dict[str, Any]) -> dict[str, Any]:
        model = self._model()
        return {"status": "ok", "value": attached_hooks(model) if model is not None else []}

    def _op_watch(self, message: dict[str, Any]) -> dict[str, Any]:
        """Start (``on``) or stop watching what calls do with the model; stopping returns the record."""
        record = self._stop_watching()
        if message.get("on") is True:
            self.watch = ModelWatch(self._model())
        return {"status": "ok", "value": record}

    def _stop_watching(self) -> dict[str, Any] | None:
        watch, self.watch = self.watch, None
        return watch.stop() if watch is not None else None

    def _op_repair(self, message: dict[str, Any]) -> dict[str, Any]:
        self._stop_watching()  # a watch never outlives its check, nor leaves its hook for the guard to find
        repaired = self.guard.repair() if self.guard is not None else []
        if self.guard is not None and getattr(self.guard, "broken", False):
            return {"status": "refused", "message": "; ".join(repaired)}
        return {"status": "ok", "value": [str(r) for r in repaired]}

    # ---- calling student code ----

    def _target(self, message: dict[str, Any]) -> Callable[..., Any] | dict[str, Any]:
        name = message.get("name")
        if "module" in message:
            module = self.modules.get(message["module"])
            if module is None:
                return {"status": "refused", "message": f"module {message['module']!r} is not imported"}
            owner = module
            where = self.notebooks.get(message["module"])
            if where is not None and type(name) is str and name not in vars(module):
                return {"status": "raised", "error": _error_of(not_defined(name, where))}
        else:
            owner = message.get("handle")
        if name is None:
            return owner if callable(owner) else {"status": "raised", "error": _error_of(TypeError(f"a {type(owner).__name__} is not callable"))}
        try:
            return getattr(owner, name)
        except BaseException as exc:
            if isinstance(exc, self.passthrough):
                raise
            return {"status": "raised", "error": _error_of(exc)}

    def _run(self, function: Callable[..., Any], args: Any, kwargs: Any) -> dict[str, Any]:
        cwd, limit = os.getcwd(), sys.getrecursionlimit()
        stdout, stderr = sys.stdout, sys.stderr
        try:
            value = function(*args, **kwargs)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, pytest.exit: all the student's
            if isinstance(exc, self.passthrough):
                raise
            return {"status": "raised", "error": _error_of(exc)}
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            _restore_process(cwd, limit)
        return {"status": "ok", "value": value}

    # ---- encoding hooks ----

    def move_model_to(self, device: str) -> None:
        """In a fresh worker: put the model on the graded device (CUDA does not survive a fork,
        so the template keeps it on the CPU) and guard it there."""
        model = self._model()
        if model is not None:
            model.to(device)
            self.guard = ModelGuard(model)
        self.device = device

    def _device(self) -> str | None:
        if self.device is not None:
            return self.device
        model = self._model()
        device = getattr(getattr(model, "cfg", None), "device", None)
        return str(device) if device is not None else None

    def _decode_hooks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "$model": lambda _: self._model(),
            "$handleref": self._lookup,
            "$cache": lambda tensors: decode_cache(tensors, self._model()),
            "$hookpoint": lambda name: HookPointName(name=str(name)),
        }

    def _lookup(self, number: Any) -> Any:
        if type(number) is not int or number not in self.handles:
            raise codec.CodecError("that value was lost: the worker holding it was replaced")
        return self.handles[number]

    def _encode_hook(self, value: Any, encoder: codec.Encoder) -> Any:
        if isinstance(value, _Keep):
            return self._keep_as_handle(value.value, encoder)
        return encode_cache(value, encoder)

    def _keep_as_handle(self, value: Any, encoder: codec.Encoder) -> Any:
        number = self._next_handle
        self._next_handle += 1
        self.handles[number] = value
        kind, info = describe(value)
        return {"$handle": encoder.encode({"id": number, "kind": kind, "type": _type_name(value), "info": info})}


class ModelWatch:
    """What calls do with the model while a check watches: the hook points they attach hooks to
    (a full ``run_with_cache`` hooks every one; a targeted ``run_with_hooks`` only those it names)
    and how many forward passes they make (calls of the model's ``embed``).

    It wraps TransformerLens's ``HookPoint.add_hook`` for the whole process while it runs, so a
    check runs nothing of its own on the model between start and stop. Student code could undo
    the wrapper: the record measures cost for feedback, it does not guard against forgery.
    """

    def __init__(self, model: Any) -> None:
        import torch
        from transformer_lens.hook_points import HookPoint

        self.hooked: list[str] = []
        self.forward_passes = 0
        self._point_class = HookPoint
        self._add_hook = HookPoint.__dict__["add_hook"]
        original, hooked = self._add_hook, self.hooked

        def add_hook(point: Any, *args: Any, **kwargs: Any) -> Any:
            hooked.append(str(point.name))
            return original(point, *args, **kwargs)

        HookPoint.add_hook = add_hook  # type: ignore[method-assign]
        embed = getattr(model, "embed", None)
        self._counter = embed.register_forward_pre_hook(self._count) if isinstance(embed, torch.nn.Module) else None

    def _count(self, module: Any, args: Any) -> None:
        self.forward_passes += 1

    def stop(self) -> dict[str, Any]:
        self._point_class.add_hook = self._add_hook  # type: ignore[method-assign]
        if self._counter is not None:
            self._counter.remove()
        return {"hooked": sorted(set(self.hooked)), "hook_calls": len(self.hooked),
                "forward_passes": self.forward_passes if self._counter is not None else None}


class _Keep:
    """A value the grader asked to keep here (``put``): sent back as a handle, not by value."""

    def __init__(self, value: Any) -> None:
        self.value = value


# ---- describing what cannot cross ----


def describe(value: Any) -> tuple[str, dict[str, Any]]:
    """(kind, plain-data description) of an object kept as a handle."""
    try:
        if _is_instance(value, "matplotlib.figure", "Figure"):
            return "figure", describe_figure(value)
        if _is_instance(value, "torch.nn", "Module"):
            return "model", describe_model(value)
        if callable(value):
            return "callable", {"name": str(getattr(value, "__name__", ""))[:200]}
    except Exception as exc:
        return "object", {"error": describe_exception(exc)}
    return "object", {}


def describe_model(model: Any) -> dict[str, Any]:
    import torch

    try:
        device = str(next(model.parameters()).device)
    except StopIteration:
        device = "none"
    bridge = sys.modules.get("transformer_lens.model_bridge")
    cfg = getattr(model, "cfg", None)
    sizes = {key: getattr(cfg, key) for key in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx")
             if type(getattr(cfg, key, None)) is int}
    return {
        "is_bridge": bool(bridge is not None and isinstance(model, bridge.TransformerBridge)),
        "device": device,
        "training": bool(torch.nn.Module.__getattribute__(model, "training")),
        "compatibility_mode": bool(getattr(model, "compatibility_mode", False) is True),
        "cfg": sizes,
    }


def describe_figure(fig: Any) -> dict[str, Any]:
    """What a check can grade about a matplotlib Figure, and a PNG of it for the report."""
    import matplotlib.pyplot as plt
    import numpy as np

    try:
        png = figure_png(fig, dpi=80)  # a draw: it also fills in the tick labels read below
    except BaseException:
        plt.close(fig)
        raise
    axes = []
    for ax in fig.axes:
        axes.append({
            "images": [np.asarray(image.get_array(), dtype=float) for image in ax.images],
            # A line's y values and a bar chart's heights, for plots that are not images.
            "lines": [np.asarray(line.get_ydata(), dtype=float) for line in ax.lines],
            "bars": [np.asarray([bar.get_height() for bar in container], dtype=float)
                     for container in ax.containers if type(container).__name__ == "BarContainer"],
            # A scatter's (x, y) points, then each line's: a plot of one value against another.
            "points": [np.asarray(c.get_offsets(), dtype=float).reshape(-1, 2)
                       for c in ax.collections if type(c).__name__ == "PathCollection"]
                      + [np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2) for line in ax.lines],
            "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
            "yticklabels": [t.get_text() for t in ax.get_yticklabels()],
            "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(),
            "title": ax.get_title(),
        })
    plt.close(fig)
    return {"axes": axes, "suptitle": fig.get_suptitle(), "png": png}


def _is_instance(value: Any, module: str, name: str) -> bool:
    owner = sys.modules.get(module)
    cls = getattr(owner, name, None) if owner is not None else None
    return isinstance(cls, type) and isinstance(value, cls)


def _type_name(value: Any) -> str:
    return str(type(value).__name__)[:200]


# ---- errors ----


def _error_of(exc: BaseException) -> dict[str, Any]:
    """An exception as data: its type's name, the nearest built-in type it derives from, its
    message, and the traceback cut to the student's own frames."""
    builtin = next((c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"), "BaseException")
    try:
        message = str(exc)
    except BaseException:
        message = ""
    error: dict[str, Any] = {
        "type": _type_name(exc),
        "builtin": builtin,
        "message": message[:MAX_MESSAGE],
        "traceback": student_frames(exc)[:MAX_TRACEBACK],
    }
    if isinstance(exc, OSError):  # which file, and why: the grader tells the machine's faults from the student's
        number, filename = exc.errno, exc.filename
        if type(number) is int:
            error["errno"] = number
        if isinstance(filename, (str, bytes)):
            error["filename"] = os.fsdecode(filename)[:4000]
    return error


def _restore_process(cwd: str, recursion_limit: int) -> None:
    """Undo process-wide slips that would break the next call: a changed working directory or
    recursion limit."""
    try:
        os.chdir(cwd)
    except OSError:
        pass
    sys.setrecursionlimit(recursion_limit)
