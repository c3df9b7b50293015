"""Keep the one shared model sound between tests.

Student code is untrusted: it may leave hooks on the model, switch it to training mode, change
its weights, or flip global torch switches. After every test the guard puts all of that back
(reloading the weights from disk only when they changed) and says what it had to repair, so a
mistake in one exercise never leaks into the grading of the next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _hook_keys(model: torch.nn.Module) -> set[tuple[str, str, int]]:
    keys = set()
    for name, module in model.named_modules():
        for attribute in _HOOK_DICTS:
            for key in getattr(module, attribute, {}) or {}:
                keys.add((name, attribute, key))
    return keys


def attached_hooks(model: torch.nn.Module) -> list[str]:
    """Names of TransformerLens hook points that have a hook on them right now."""
    hook_dict: dict[str, Any] = getattr(model, "hook_dict", {}) or {}
    return sorted(
        name
        for name, point in hook_dict.items()
        if getattr(point, "_forward_hooks", None) or getattr(point, "_forward_pre_hooks", None)
    )


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every tensor of the state dict, on the model's device: exact comparison later
    costs one memory pass, and catches any edit, a permutation of weights included."""
    with torch.no_grad():
        return {name: t.detach().clone() for name, t in model.state_dict().items()}


class ModelGuard:
    def __init__(self, model: torch.nn.Module, reload: Callable[[], torch.nn.Module]) -> None:
        self.model = model
        self._reload = reload
        self._hooks = _hook_keys(model)
        self._weights = snapshot(model)
        self._grad_enabled = torch.is_grad_enabled()
        self._default_dtype = torch.get_default_dtype()

    def repair(self) -> list[str]:
        """Undo what a test did to the model and torch's global state; return what was undone."""
        repaired: list[str] = []
        if hasattr(self.model, "reset_hooks"):
            self.model.reset_hooks(including_permanent=True)
        extra = _hook_keys(self.model) - self._hooks
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
        if not self._weights_intact():
            self.model = self._reload()
            self._hooks = _hook_keys(self.model)
            self._weights = snapshot(self.model)
            repaired.append("the model's weights were changed: reloaded them")
        return repaired

    def _weights_intact(self) -> bool:
        try:
            now = self.model.state_dict()
            return now.keys() == self._weights.keys() and all(
                now[name].shape == saved.shape and bool(torch.equal(now[name], saved))
                for name, saved in self._weights.items()
            )
        except Exception:  # a state dict the student broke is not intact
            return False
