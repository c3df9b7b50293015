"""grader.student.model_guard: after each test the shared model is put back as it was, and the guard says
what it repaired. A small torch module stands in for the TransformerBridge."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from types import SimpleNamespace

import torch
from torch import nn

from grader.student.model_guard import SMALL_TENSOR, ModelGuard, attached_hooks, snapshot


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(3, 4)
        self.blocks = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        self.register_buffer("counts", torch.arange(3))  # an integer buffer: guarded too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.embed(x))


class Reloads:
    """A fake `reload`: counts calls and returns a fresh Tiny."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Tiny:
        self.calls += 1
        return Tiny().eval()


@pytest.fixture(autouse=True)
def torch_globals() -> Iterator[None]:
    """Tests here change torch's global switches on purpose; never leak them."""
    grad, dtype = torch.is_grad_enabled(), torch.get_default_dtype()
    yield
    torch.set_grad_enabled(grad)
    torch.set_default_dtype(dtype)


@pytest.fixture
def reload() -> Reloads:
    return Reloads()


@pytest.fixture
def guard(reload: Reloads) -> ModelGuard:
    return ModelGuard(Tiny().eval(), reload=reload)


def _hook(module: nn.Module, inputs: object, output: object) -> None:
    return None


def test_an_untouched_model_needs_no_repair(guard: ModelGuard, reload: Reloads) -> None:
    model = guard.model
    with torch.no_grad():
        model(torch.ones(1, 3))
    assert guard.repair() == []
    assert guard.model is model
    assert reload.calls == 0


def test_extra_forward_hooks_are_removed_everywhere_in_the_model(guard: ModelGuard, reload: Reloads) -> None:
    model = guard.model
    model.register_forward_hook(_hook)
    model.blocks[0].register_forward_hook(_hook)
    model.blocks[2].register_forward_pre_hook(lambda module, inputs: None)
    assert guard.repair() == ["removed 3 hook(s) left on the model"]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert reload.calls == 0
    assert guard.repair() == []


def test_a_hook_that_changes_outputs_no_longer_does_after_repair(guard: ModelGuard) -> None:
    model = guard.model
    x = torch.ones(1, 3)
    with torch.no_grad():
        before = model(x)
        model.blocks[2].register_forward_hook(lambda module, inputs, output: output * 0)
        assert torch.equal(model(x), torch.zeros_like(before))
        guard.repair()
        assert torch.equal(model(x), before)


def test_hooks_present_when_the_guard_was_made_are_kept(reload: Reloads) -> None:
    model = Tiny().eval()
    model.blocks[0].register_forward_hook(_hook)  # the grader's own hook
    guard = ModelGuard(model, reload=reload)
    model.blocks[2].register_forward_hook(_hook)
    assert guard.repair() == ["removed 1 hook(s) left on the model"]
    assert len(model.blocks[0]._forward_hooks) == 1
    assert not model.blocks[2]._forward_hooks


def test_backward_hooks_are_removed_too(guard: ModelGuard) -> None:
    guard.model.blocks[0].register_full_backward_hook(lambda module, gin, gout: None)
    assert guard.repair() == ["removed 1 hook(s) left on the model"]
    assert not guard.model.blocks[0]._backward_hooks


def test_transformer_lens_hooks_are_reset_through_reset_hooks(reload: Reloads) -> None:
    class WithResetHooks(Tiny):
        def __init__(self) -> None:
            super().__init__()
            self.resets: list[bool] = []

        def reset_hooks(self, including_permanent: bool = False) -> None:
            self.resets.append(including_permanent)

    model = WithResetHooks().eval()
    guard = ModelGuard(model, reload=reload)
    assert guard.repair() == [] and model.resets == []  # nothing left: nothing to reset
    model.blocks[1].register_forward_hook(lambda module, args, output: output)
    assert guard.repair() == ["removed 1 hook(s) left on the model"]
    assert model.resets == [True]  # permanent hooks included


def test_attached_hooks_names_hook_points_with_hooks() -> None:
    class Bridge(Tiny):
        @property
        def hook_dict(self) -> dict[str, nn.Module]:
            return {"blocks.0.hook_out": self.blocks[0], "blocks.2.hook_out": self.blocks[2]}

    model = Bridge()
    assert attached_hooks(model) == []
    model.blocks[2].register_forward_hook(_hook)
    assert attached_hooks(model) == ["blocks.2.hook_out"]


def test_training_mode_is_reset_to_eval(guard: ModelGuard, reload: Reloads) -> None:
    guard.model.train()
    assert guard.repair() == ["put the model back in eval mode"]
    assert not any(m.training for m in guard.model.modules())
    assert reload.calls == 0


COPIED_BACK = "the model's weights were changed: copied them back"


def test_changed_weights_are_copied_back_without_a_reload(guard: ModelGuard, reload: Reloads) -> None:
    old = guard.model
    with torch.no_grad():
        old.blocks[0].weight[0, 0] += 1.0
    assert guard.repair() == [COPIED_BACK]
    assert reload.calls == 0
    assert guard.model is old
    fresh = Tiny().state_dict()
    assert all(torch.equal(t, fresh[name]) for name, t in guard.model.state_dict().items())
    assert guard.repair() == []


def test_weights_that_cannot_be_copied_back_without_a_reload_mark_the_model_broken() -> None:
    guard = ModelGuard(Tiny().eval())  # no reload: the worker's case, where a fresh worker is the cure
    guard.model.blocks[0].bias = nn.Parameter(torch.zeros(7))
    assert guard.repair() == ["the model's weights were changed and could not be copied back"]
    assert guard.broken


def test_a_changed_config_is_restored() -> None:
    model = Tiny().eval()
    model.cfg = SimpleNamespace(default_prepend_bos=True, n_layers=3)
    guard = ModelGuard(model)
    model.cfg.default_prepend_bos = False  # a plausible slip that would cost every later check
    model.cfg.extra = 1
    assert guard.repair() == ["restored the model's config (default_prepend_bos, extra)"]
    assert vars(model.cfg) == {"default_prepend_bos": True, "n_layers": 3}


def test_a_replaced_config_object_is_put_back() -> None:
    model = Tiny().eval()
    model.cfg = original = SimpleNamespace(n_layers=3)
    guard = ModelGuard(model)
    model.cfg = SimpleNamespace(n_layers=99)
    guard.repair()
    assert model.cfg is original and model.cfg.n_layers == 3


def test_a_replaced_parameter_of_another_shape_triggers_a_reload(guard: ModelGuard, reload: Reloads) -> None:
    guard.model.blocks[0].bias = nn.Parameter(torch.zeros(7))
    assert "the model's weights were changed: reloaded them" in guard.repair()
    assert reload.calls == 1


def test_a_removed_parameter_triggers_a_reload(guard: ModelGuard, reload: Reloads) -> None:
    del guard.model.blocks[2].bias
    guard.model.blocks[2].bias = None
    assert guard.repair() == ["the model's weights were changed: reloaded them"]
    assert reload.calls == 1


def test_a_replaced_state_dict_method_does_not_hide_changed_weights(guard: ModelGuard, reload: Reloads) -> None:
    saved = {name: tensor.clone() for name, tensor in guard.model.state_dict().items()}
    guard.model.state_dict = lambda *args, **kwargs: saved  # type: ignore[method-assign]
    with torch.no_grad():
        guard.model.blocks[0].weight.add_(1.0)
    assert guard.repair() == [COPIED_BACK]  # the guard reads the tensors through torch itself
    assert torch.equal(guard.model.blocks[0].weight, saved["blocks.0.weight"])


def test_weights_permuted_in_place_are_caught_and_copied_back(guard: ModelGuard, reload: Reloads) -> None:
    with torch.no_grad():
        weight = guard.model.blocks[0].weight
        weight.copy_(weight.flip(0))  # swap rows: same sum, different model
    assert guard.repair() == [COPIED_BACK]


def test_torch_grad_mode_and_default_dtype_are_restored(guard: ModelGuard) -> None:
    grad = torch.is_grad_enabled()
    torch.set_grad_enabled(not grad)
    torch.set_default_dtype(torch.float64)
    assert guard.repair() == ["restored torch's grad mode", "restored torch's default dtype"]
    assert torch.is_grad_enabled() == grad
    assert torch.get_default_dtype() == torch.float32


def test_the_repair_list_names_every_repair_in_order(guard: ModelGuard, reload: Reloads) -> None:
    guard.model.blocks[0].register_forward_hook(_hook)
    guard.model.train()
    with torch.no_grad():
        guard.model.embed.bias.zero_()
    assert guard.repair() == [
        "removed 1 hook(s) left on the model",
        "put the model back in eval mode",
        COPIED_BACK,
    ]
    assert reload.calls == 0


def test_a_changed_integer_buffer_is_copied_back(guard: ModelGuard, reload: Reloads) -> None:
    guard.model.counts += 1
    assert guard.repair() == [COPIED_BACK]
    assert reload.calls == 0


def test_a_parameter_replaced_by_one_of_the_same_shape_is_caught_and_checked_from_then_on(guard: ModelGuard) -> None:
    block = guard.model.blocks[0]
    block.weight = torch.nn.Parameter(block.weight.detach() + 1.0)  # a new object, other values
    assert guard.repair() == [COPIED_BACK]
    with torch.no_grad():
        block.weight.mul_(2.0)  # the replacement is what the model holds now: it is watched too
    assert guard.repair() == [COPIED_BACK]
    assert guard.repair() == []


def test_a_weight_changed_through_data_is_caught(guard: ModelGuard) -> None:
    guard.model.blocks[0].weight.data[0] = 0.0  # .data bypasses autograd's version counter
    assert guard.repair() == [COPIED_BACK]


def test_a_tensor_the_state_dict_names_twice_is_copied_once() -> None:
    # A TransformerBridge names each weight two or three times (its components and the wrapped
    # Hugging Face model's): one copy each keeps the snapshot as large as the model, not a multiple.
    model = Tiny().eval()
    model.tied = model.embed  # the same module under a second name
    saved = snapshot(model)
    assert saved["tied.weight"] is saved["embed.weight"]
    guard = ModelGuard(model)
    with torch.no_grad():
        model.tied.weight.add_(1.0)
    assert guard.repair() == [COPIED_BACK]
    assert torch.equal(model.embed.weight, saved["embed.weight"])


class Wide(nn.Module):
    """A weight over SMALL_TENSOR elements (compared by torch.equal) beside small ones (numpy)."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Parameter(torch.zeros(SMALL_TENSOR + 1))
        self.small = nn.Parameter(torch.zeros(3, 4).T)  # not contiguous: compared as it is laid out


@pytest.mark.parametrize("name", ["big", "small"])
def test_weights_are_compared_bit_for_bit_at_every_size(name: str) -> None:
    model = Wide().eval()
    guard = ModelGuard(model)
    weight = getattr(model, name)
    with torch.no_grad():
        weight[-1] = -0.0  # equal to 0.0 for torch.equal, and harmless; but not the same bits
    assert guard.repair() == [COPIED_BACK]
    assert not weight.signbit().any()
    assert guard.repair() == []


def test_a_nan_weight_left_as_it_was_needs_no_repair() -> None:
    # NaN != NaN for torch.equal: a model that holds a NaN would be copied back after every check.
    model = Tiny().eval()
    with torch.no_grad():
        model.blocks[0].bias[0] = float("nan")
    guard = ModelGuard(model)
    assert guard.repair() == []


class Large(nn.Module):
    """One weight of GPT-2 small's embedding size order (4M elements, 16 MiB) beside a small one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.big = nn.Parameter(torch.randn(2048, 2048))
        self.small = nn.Parameter(torch.randn(8))


def _write_through_data(weight: torch.Tensor, row: int, column: int) -> None:
    weight.data[row, column] += 1.0


def _write_through_numpy(weight: torch.Tensor, row: int, column: int) -> None:
    weight.detach().numpy()[row, column] += 1.0  # no torch op at all: autograd's version counter stays


def _write_through_a_storage_view(weight: torch.Tensor, row: int, column: int) -> None:
    flat = torch.empty(0).set_(weight.untyped_storage())  # another tensor over the same memory
    flat[row * weight.shape[1] + column] += 1.0


@pytest.mark.parametrize("write", [_write_through_data, _write_through_numpy, _write_through_a_storage_view])
@pytest.mark.parametrize("where", [(0, 0), (1024, 777), (2047, 2047)])
def test_an_in_place_write_to_one_element_of_a_large_weight_is_caught_and_copied_back(write, where) -> None:
    model = Large().eval()
    before = model.big.detach().clone()
    guard = ModelGuard(model)
    write(model.big, *where)
    assert guard.repair() == [COPIED_BACK]
    assert torch.equal(model.big, before)
    assert guard.repair() == []


def test_a_weight_check_on_the_cpu_never_waits_for_torchs_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.equal splits a large tensor over torch's threads: on a busy machine the check after
    # every test waited for the second one (GPT-2 small: 300 ms of CPU time a check, 45 ms now).
    from grader.student import model_guard

    def no_torch_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
        raise AssertionError("a CPU weight was compared by torch.equal")

    monkeypatch.setattr(model_guard, "_tensors_equal", no_torch_equal)
    model = Large().eval()
    guard = ModelGuard(model)
    assert guard.repair() == []
    model.big.data[5, 5] = 7.0
    assert guard.repair() == [COPIED_BACK]


@pytest.mark.parametrize("view", ["conj", "neg"])
def test_a_view_that_differs_only_by_a_flag_is_not_the_same_weight(view: str) -> None:
    # A conjugate (or negative) view shares the bytes of its tensor, and not its value.
    from grader.student.model_guard import _bitwise_equal

    saved = torch.randn(64, dtype=torch.complex64)
    now = saved.conj() if view == "conj" else torch._neg_view(saved)
    assert not _bitwise_equal(now, saved)
    assert _bitwise_equal(saved.clone(), saved)



@pytest.mark.parametrize("kept_bytes", [0, 4])
def test_a_weight_whose_storage_was_shrunk_is_caught_and_grown_back_without_a_crash(kept_bytes: int) -> None:
    """`weight.untyped_storage().resize_(0)`: reading or copying what the shape says would touch
    freed memory and end the grading process (it did, with a segmentation fault): in a child here."""
    code = f"""
import torch
from grader.student.model_guard import ModelGuard
model = torch.nn.Linear(64, 64).eval()
before = model.weight.detach().clone()
guard = ModelGuard(model)
model.weight.untyped_storage().resize_({kept_bytes})
said = guard.repair()
print("REPAIRED", said, guard.broken, torch.equal(model.weight, before), guard.repair())
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-2000:]}"
    assert "REPAIRED [\"the model's weights were changed: copied them back\"] False True []" in done.stdout, done.stdout
