"""Keep the model that student code runs on sound between tests.

Student code may leave hooks on the model, switch it to training mode, change its config
(``model.cfg.default_prepend_bos = False`` is a plausible slip), change its weights, or flip
global torch switches. After every test the guard puts all of that back (copying the weights back
from its snapshot only when they changed) and says what it had to repair, so a slip in one check
never costs the checks after it.

In isolated grading the guard runs in the worker, where hostile code can disable it; all that
spoils is that student's own answers until the exercise ends and the worker is replaced.
"""

from __future__ import annotations

import copy
import ctypes
import sys
from collections.abc import Callable
from typing import Any

import torch
from numpy import equal as _elementwise_equal  # bound now, as torch.equal below
from torch import (
    equal as _tensors_equal,  # bound now: student code may replace torch.equal later
)

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _hook_keys(model: torch.nn.Module) -> set[tuple[str, str, int]]:
    return _survey(model)[0]


def _survey(model: torch.nn.Module) -> tuple[set[tuple[str, str, int]], list[torch.Tensor]]:
    """One walk over the modules: the hooks on them, and every tensor they hold (parameters and
    buffers, the objects themselves: a replaced one shows as another object). The order of
    named_modules, walked by hand: its nested generators made it 2.5 times slower."""
    keys: set[tuple[str, str, int]] = set()
    tensors: list[torch.Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[str, torch.nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:  # a module reachable twice is walked once, as named_modules does
            continue
        seen.add(id(module))
        state = vars(module)
        for attribute in _HOOK_DICTS:
            keys.update((name, attribute, key) for key in state.get(attribute) or ())
        for store in ("_parameters", "_buffers"):
            tensors.extend(t for t in (state.get(store) or {}).values() if isinstance(t, torch.Tensor))
        children = state.get("_modules") or {}
        prefix = f"{name}." if name else ""
        stack.extend((prefix + child, sub) for child, sub in reversed(children.items()) if sub is not None)
    return keys, tensors


def attached_hooks(model: torch.nn.Module) -> list[str]:
    """Names of TransformerLens hook points that have a hook on them right now."""
    hook_dict: dict[str, Any] = getattr(model, "hook_dict", {}) or {}
    return sorted(
        name
        for name, point in hook_dict.items()
        if getattr(point, "_forward_hooks", None) or getattr(point, "_forward_pre_hooks", None)
    )


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of the model's state dict, by torch's own names: a TransformerBridge's
    state_dict also renames every key, which made it 2 ms of each check."""
    return torch.nn.Module.state_dict(model, keep_vars=True)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every tensor of the state dict, on the model's device: exact comparison later
    costs one memory pass, and catches any edit, a permutation of weights included."""
    return _copies(_state(model))


def _copies(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` copied, one copy of a tensor it names twice or more (`state` holds every tensor
    while it is read: their ids stay theirs)."""
    copies: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for tensor in state.values():
            if id(tensor) not in copies:
                copies[id(tensor)] = tensor.detach().clone()
    return {name: copies[id(tensor)] for name, tensor in state.items()}


def _config_changes(model: torch.nn.Module, saved_object: object, saved: dict[str, object]) -> list[str]:
    """Names of the config fields that differ from `saved` (and restore them)."""
    if getattr(model, "cfg", None) is not saved_object:
        try:
            model.cfg = saved_object
        except Exception:
            object.__setattr__(model, "cfg", saved_object)
    now = vars(saved_object)
    changed = [key for key in set(now) | set(saved) if key not in now or key not in saved or not _same(now[key], saved[key])]
    for key in changed:
        if key in saved:
            now[key] = copy.deepcopy(saved[key])
        else:
            del now[key]
    return sorted(changed)


# An integer type for each element size: a tensor viewed as one compares bit for bit.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
SMALL_TENSOR = 1 << 20  # elements: below this, a parallel torch.equal costs more in waiting than in work


def _c_memcmp() -> Callable[[int, int, int], int] | None:
    """The C library's memcmp, bound now (student code may replace names later); None where no C
    library can be loaded: the comparison then goes through numpy and torch."""
    try:
        libc = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
        memcmp = libc.memcmp
    except (OSError, AttributeError):
        return None
    memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    memcmp.restype = ctypes.c_int
    return memcmp


_memcmp = _c_memcmp()


def _plain_cpu(tensor: torch.Tensor) -> bool:
    """Its value is exactly its bytes, in one block of CPU memory that it owns (no conjugate or
    negative view flag, no quantization, no strides that skip or repeat)."""
    return (tensor.device.type == "cpu" and tensor.layout == torch.strided and not tensor.is_quantized
            and not tensor.is_conj() and not tensor.is_neg() and tensor.is_contiguous())


def _bytes_needed(tensor: torch.Tensor) -> int:
    """The storage a strided tensor reads: up to its last element."""
    if tensor.numel() == 0:
        return 0
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    return (tensor.storage_offset() + last + 1) * tensor.element_size()


def _fits_its_storage(tensor: torch.Tensor) -> bool:
    """False where student code shrank the storage under the tensor (`untyped_storage().resize_(0)`):
    reading or writing what its shape says would then touch freed memory, and crash the process."""
    return tensor.layout != torch.strided or tensor.untyped_storage().nbytes() >= _bytes_needed(tensor)


def _bitwise_equal(now: torch.Tensor, saved: torch.Tensor) -> bool:
    """`now` holds exactly the bits of `saved` (a NaN equals itself; -0.0 is not 0.0).

    A CPU tensor is compared by the C library's memcmp, on this thread, with no temporary:
    GPT-2 small's 703 MiB of weights in 45 ms of CPU time, where torch.equal spread over torch's
    threads (2 here) took 300 ms, most of it waiting for the other thread on a busy machine, once
    after every check. Without memcmp, a small CPU tensor is compared by numpy, on this thread,
    and a large one by torch."""
    if now.shape != saved.shape or now.dtype != saved.dtype or not _fits_its_storage(now):
        return False
    if _memcmp is not None and _plain_cpu(now) and _plain_cpu(saved):
        size = now.numel() * now.element_size()
        return size == 0 or _memcmp(now.data_ptr(), saved.data_ptr(), size) == 0
    bits = _BITS.get(now.element_size())
    if bits is None:
        return bool(_tensors_equal(now, saved))
    # A conjugate or negative view's value is not its bytes: compare the value's.
    now, saved = (t.detach().resolve_conj().resolve_neg().view(bits) for t in (now, saved))
    if now.device.type == "cpu" and now.numel() <= SMALL_TENSOR:
        return bool(_elementwise_equal(now.numpy(), saved.numpy()).all())
    return bool(_tensors_equal(now, saved))


def _same(a: object, b: object) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


class ModelGuard:
    def __init__(self, model: torch.nn.Module, reload: Callable[[], torch.nn.Module] | None = None) -> None:
        """`reload` gives a fresh model when the weights cannot be copied back (a parameter
        replaced by one of another shape, say); without it, repair says the model is broken."""
        self._reload = reload
        self._take_snapshot(model)
        self._grad_enabled = torch.is_grad_enabled()
        self._default_dtype = torch.get_default_dtype()
        self.broken = False

    def _take_snapshot(self, model: torch.nn.Module) -> None:
        self.model = model
        self._hooks, held = _survey(model)
        state = _state(model)
        self._weights = _copies(state)
        self._pair_up(held, state)
        self._cfg_object = getattr(model, "cfg", None)
        self._cfg = copy.deepcopy(vars(self._cfg_object)) if self._cfg_object is not None else {}

    def repair(self) -> list[str]:
        """Undo what a test did to the model and torch's global state; return what was undone."""
        repaired: list[str] = []
        try:
            hooks, held = _survey(self.model)
        except Exception:  # a module tree the student broke: the slow checks below say what
            hooks, held = set(), []
        if hooks != self._hooks and hasattr(self.model, "reset_hooks"):
            self.model.reset_hooks(including_permanent=True)  # 1 ms a test where nothing was left
            hooks = _hook_keys(self.model)
        extra = hooks - self._hooks
        for name, attribute, key in extra:
            getattr(self.model.get_submodule(name), attribute).pop(key, None)
        if extra:
            repaired.append(f"removed {len(extra)} hook(s) left on the model")
        if self.model.training:
            self.model.eval()
            repaired.append("put the model back in eval mode")
        if torch.is_grad_enabled() != self._grad_enabled:
            torch.set_grad_enabled(self._grad_enabled)
            repaired.append("restored torch's grad mode")
        if torch.get_default_dtype() != self._default_dtype:
            torch.set_default_dtype(self._default_dtype)
            repaired.append("restored torch's default dtype")
        if self._cfg_object is not None:
            changed = _config_changes(self.model, self._cfg_object, self._cfg)
            if changed:
                repaired.append(f"restored the model's config ({', '.join(changed[:5])})")
        unchanged = self._fast and self._holds_the_same_tensors(held) and self._pairs_equal()
        if not unchanged and not self._weights_intact():
            repaired.append(self._restore_weights())
        return repaired

    def _pair_up(self, held: list[torch.Tensor], state: dict[str, torch.Tensor]) -> None:
        """Each tensor the model holds now (`held`, from _survey; `state`, its state dict), with its
        snapshot: while the model holds these same tensor objects, comparing the pairs is the
        whole weight check."""
        self._held = held  # kept, so that their ids stay theirs
        names = {id(tensor): name for name, tensor in state.items()}
        self._pairs = [(t, self._weights[names[id(t)]]) for t in self._held if id(t) in names]
        # Only where the pairs cover every tensor of the state dict (none that a hook adds).
        self._fast = {id(t) for t, _ in self._pairs} == set(names)

    def _holds_the_same_tensors(self, held: list[torch.Tensor]) -> bool:
        return len(held) == len(self._held) and all(now is then for now, then in zip(held, self._held))

    def _pairs_equal(self) -> bool:
        try:
            return all(_bitwise_equal(now, saved) for now, saved in self._pairs)
        except Exception:
            return False

    def _restore_weights(self) -> str:
        try:
            with torch.no_grad():
                now = _state(self.model)
                for name, saved in self._weights.items():
                    if not _fits_its_storage(now[name]):  # shrunk under it: grown back before the copy
                        now[name].untyped_storage().resize_(_bytes_needed(now[name]))
                    now[name].copy_(saved)
            if self._weights_intact():
                # A replaced tensor, now holding the snapshot's values, is checked as its own.
                self._pair_up(_survey(self.model)[1], now)
                return "the model's weights were changed: copied them back"
        except Exception:
            pass
        if self._reload is None:
            self.broken = True
            return "the model's weights were changed and could not be copied back"
        self._take_snapshot(self._reload())
        return "the model's weights were changed: reloaded them"

    def _weights_intact(self) -> bool:
        try:
            now = _state(self.model)
            return now.keys() == self._weights.keys() and all(
                _bitwise_equal(now[name], saved)
                for name, saved in self._weights.items()
            )
        except Exception:  # a state dict the student broke is not intact
            return False
