"""The grader's view of student code: a proxy module, data back, handles for what cannot cross.

These run the in-process sandbox (the one `pytest exercises/NN` uses) and the isolated one on the
same small module, and expect the same answers from both.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from grader.judging.compare import compare
from grader.sandbox.client import Handle, InProcessSandbox, StudentError, WorkerLost
from grader.student.executor import Executor, HookPointName
from grader.sandbox.isolated import IsolatedSandbox, Template, WorkerLimits
from grader.student.submission import SubmissionImportError
from grader.sandbox.timeouts import GradingTimeout

MODULE = """
    import os, sys, time
    import torch
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def double(x):
        return x * 2

    def frozen_objects():
        import gc
        return gc.get_freeze_count()

    def shout(word):
        raise ValueError(f"no {word}")

    def stub():
        raise NotImplementedError("write me")

    def leave(code):
        sys.exit(code)

    def vanish():
        os._exit(7)

    def spin():
        while True:
            try:
                time.sleep(0.01)
            except BaseException:
                pass

    def figure():
        fig, ax = plt.subplots()
        ax.imshow([[0.0, 1.0], [0.5, 0.25]])
        ax.set_xticks([0, 1], ["a", "b"])
        ax.set_title("t")
        return fig

    def line_and_bars():
        fig, (left, right) = plt.subplots(1, 2)
        left.plot([0, 1, 2], [3.0, -1.0, 2.5])
        right.bar(["a", "b"], [4.0, 0.5])
        return fig

    def scatter():
        fig, ax = plt.subplots()
        ax.scatter([0.5, 1.0], [0.25, -2.0])
        ax.plot([0, 1], [0, 1])
        return fig

    def an_object():
        return object()

    def adder(n):
        return lambda x: x + n

    def shift_hook(n):
        def hook(activation, hook):
            return activation + n
        return hook

    def write_into(cache, name, hook):
        cache[name][0] = -1.0
        return hook.name

    def hook_two_points(model):
        handles = [model.hook_a.add_hook(lambda x, hook: x), model.hook_b.add_hook(lambda x, hook: x)]
        model.embed(torch.ones(1))
        model.embed(torch.ones(1))
        model.hook_a.remove_hooks(), model.hook_b.remove_hooks()
        return len(handles)

    def chatty():
        print("x" * 1_000_000)
        return 1

    class Affine(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(n))
            self.bias = torch.nn.Parameter(torch.zeros(n))

        def forward(self, x):
            return x * self.weight + self.bias

    class Fibbing(torch.Tensor):
        def tolist(self):
            return [42.0]

    class Boasting(Affine):
        def state_dict(self, *args, **kwargs):  # parameters that claim other values
            return {name: value.detach().as_subclass(Fibbing) for name, value in super().state_dict().items()}
"""


@pytest.fixture(scope="module")
def module_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("student") / "work.py"
    path.write_text(textwrap.dedent(MODULE))
    return path


class Model(torch.nn.Module):
    """Stands for the graded model: a forward pass that runs a hook on its activation; an `embed`
    whose calls count as forward passes and two TransformerLens hook points, for sandbox.watching()."""

    def __init__(self) -> None:
        from transformer_lens.hook_points import HookPoint

        super().__init__()
        self.embed = torch.nn.Identity()
        self.hook_a, self.hook_b = HookPoint(), HookPoint()
        self.hook_a.name, self.hook_b.name = "blocks.0.hook_a", "blocks.0.hook_b"

    def run_with_hook(self, x: torch.Tensor, hook) -> torch.Tensor:
        return hook(x * 2, HookPointName(name="blocks.0.hook_resid_pre")) + 1


MODEL = Model()


@pytest.fixture(scope="module", params=["in-process", "isolated"])
def sandbox(request: pytest.FixtureRequest, module_path: Path, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "in-process":
        box = InProcessSandbox(model=lambda: MODEL, passthrough=(GradingTimeout,))
    else:
        template = Template.fork(lambda: Executor(model=lambda: MODEL))
        box = IsolatedSandbox(lambda: MODEL, template, tmp_path_factory.mktemp("scratch"),
                              WorkerLimits(output_bytes=10_000), timeout=3.0, device="cpu", user=None, model_source=None)
    box.start_exercise("99")
    box.student = box.module("99/work", module_path)
    yield box
    box.close()


def test_a_call_runs_over_there_and_returns_data(sandbox) -> None:
    got = sandbox.student.double(torch.arange(3))
    assert type(got) is torch.Tensor and got.tolist() == [0, 2, 4]
    assert sandbox.student.double("ab") == "abab"


def test_a_student_error_comes_back_as_the_builtin_type_with_the_students_message(sandbox) -> None:
    with pytest.raises(ValueError, match="no Paris") as caught:
        sandbox.student.shout("Paris")
    assert isinstance(caught.value, StudentError)
    assert "work.py" in caught.value.student_traceback and "raise ValueError" in caught.value.student_traceback


def test_a_stub_is_a_not_implemented_error(sandbox) -> None:
    with pytest.raises(NotImplementedError, match="write me"):
        sandbox.student.stub()


def test_sys_exit_is_an_error_of_the_call_not_the_end_of_grading(sandbox) -> None:
    with pytest.raises(StudentError, match="3") as caught:
        sandbox.student.leave(3)
    assert caught.value.type_name == "SystemExit"
    assert sandbox.student.double(2) == 4


def test_an_object_that_cannot_cross_stays_as_a_handle_that_cannot_be_graded(sandbox) -> None:
    got = sandbox.student.an_object()
    assert isinstance(got, Handle) and got.kind == "object"
    result = compare(got, 1.0)
    assert not result.ok and "returned a object, which cannot be graded" in result.headline


def test_a_figure_comes_back_described(sandbox) -> None:
    fig = sandbox.student.figure().figure
    assert fig is not None and fig.png.startswith(b"\x89PNG")
    ax = next(a for a in fig.axes if a.images)
    assert ax.images[0].tolist() == [[0.0, 1.0], [0.5, 0.25]]
    assert ax.xticklabels == ["a", "b"] and ax.title == "t"


def test_a_figure_brings_its_lines_and_bars(sandbox) -> None:
    left, right = sandbox.student.line_and_bars().figure.axes
    assert [line.tolist() for line in left.lines] == [[3.0, -1.0, 2.5]] and left.bars == []
    assert [bars.tolist() for bars in right.bars] == [[4.0, 0.5]] and right.xticklabels == ["a", "b"]


def test_a_figure_brings_its_points_scatter_first(sandbox) -> None:
    (ax,) = sandbox.student.scatter().figure.axes
    assert [points.tolist() for points in ax.points] == [[[0.5, 0.25], [1.0, -2.0]], [[0.0, 0.0], [1.0, 1.0]]]


def test_a_returned_function_can_be_called_back(sandbox) -> None:
    add_two = sandbox.student.adder(2)
    assert add_two.kind == "callable" and add_two(40) == 42


def test_a_returned_hook_runs_in_a_forward_pass_of_the_model_over_there(sandbox) -> None:
    hook = sandbox.student.shift_hook(10)  # stands for a student's patch_hook: a function kept there
    assert sandbox.call_model("run_with_hook", torch.ones(2), hook).tolist() == [13.0, 13.0]


def test_watching_records_the_hook_points_and_forward_passes_of_the_calls_inside(sandbox) -> None:
    from transformer_lens.hook_points import HookPoint

    add_hook = HookPoint.__dict__["add_hook"]
    with sandbox.watching() as activity:
        assert sandbox.student.hook_two_points(MODEL) == 2
    assert activity.known and activity.hooked == ["blocks.0.hook_a", "blocks.0.hook_b"]
    assert activity.hook_calls == 2 and activity.forward_passes == 2
    assert HookPoint.__dict__["add_hook"] is add_hook and not MODEL.embed._forward_pre_hooks  # nothing left
    with sandbox.watching() as quiet:
        sandbox.student.double(1)
    assert quiet.known and quiet.hooked == [] and quiet.forward_passes == 0


def test_a_value_put_there_shows_what_student_code_did_to_it(sandbox) -> None:
    kept = sandbox.put({"resid": torch.zeros(2)})
    assert sandbox.student.write_into(kept, "resid", HookPointName(name="blocks.0.hook_resid_pre")) == "blocks.0.hook_resid_pre"
    assert kept.fetch()["resid"].tolist() == [-1.0, 0.0]


def test_a_missing_function_is_an_attribute_error(sandbox) -> None:
    with pytest.raises(AttributeError):
        sandbox.student.nowhere()


def test_a_module_that_does_not_import_is_an_import_error(sandbox, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    with pytest.raises(SubmissionImportError, match="SyntaxError"):
        sandbox.module("99/broken", broken)
    sandbox._paths.pop("99/broken")
    if isinstance(sandbox, IsolatedSandbox):
        sandbox._imported = [k for k in sandbox._imported if k != "99/broken"]


# ---- what only isolation can do ----


def isolated_only(sandbox) -> None:
    if not isinstance(sandbox, IsolatedSandbox):
        pytest.skip("in-process grading cannot survive this (local self-grading only)")


def test_os_exit_costs_the_call_and_a_fresh_worker_takes_over(sandbox) -> None:
    isolated_only(sandbox)
    with pytest.raises(WorkerLost, match="exited with status 7"):
        sandbox.student.vanish()
    assert sandbox.student.double(5) == 10  # the module was imported again in the new worker


def test_a_loop_that_swallows_every_exception_is_killed_at_the_deadline(sandbox) -> None:
    isolated_only(sandbox)
    import time

    started = time.monotonic()
    with pytest.raises(GradingTimeout, match="timed out after 3 s"):
        sandbox.student.spin()
    assert time.monotonic() - started < 10  # measured 3.08-3.15 s at load 4.5-5.7: the 3 s deadline and a kill
    assert sandbox.student.double(1) == 2


def test_handles_from_a_replaced_worker_are_refused(sandbox) -> None:
    isolated_only(sandbox)
    add_two = sandbox.student.adder(2)
    with pytest.raises(WorkerLost):
        sandbox.student.vanish()
    with pytest.raises(StudentError, match="lost when the worker was replaced"):
        add_two(1)


def test_printed_output_is_capped_and_nothing_blocks(sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    isolated_only(sandbox)
    assert sandbox.student.chatty() == 1
    out = capsys.readouterr().out
    assert len(out) < 20_000 and "more bytes of output dropped" in out


def test_a_modules_weights_can_be_set_and_its_state_dict_comes_back_as_plain_tensors(sandbox) -> None:
    module = sandbox.student.Affine(3)
    assert isinstance(module, Handle) and module.kind == "model"
    module.call_method("load_state_dict", {"weight": torch.tensor([1.0, 2.0, 3.0]), "bias": torch.full((3,), 0.5)})
    params = module.call_method("state_dict")
    assert type(params) is dict and set(params) == {"weight", "bias"}
    assert all(type(value) is torch.Tensor for value in params.values())  # Parameters arrive as their data
    assert params["weight"].tolist() == [1.0, 2.0, 3.0] and params["bias"].tolist() == [0.5] * 3
    assert module(torch.ones(3)).tolist() == [1.5, 2.5, 3.5]  # the module the weights went into


def test_a_tensor_subclass_in_a_state_dict_arrives_as_its_data(sandbox) -> None:
    params = sandbox.student.Boasting(2).call_method("state_dict")
    assert type(params["weight"]) is torch.Tensor and params["weight"].tolist() == [1.0, 1.0]


def test_a_worker_leaves_what_it_inherited_to_no_garbage_collection(sandbox) -> None:
    # The template freezes its heap before it forks: a collection in a worker must not walk (and,
    # by writing each object's header, copy) the libraries and the model every worker shares.
    if not sandbox.isolated:
        pytest.skip("in-process grading forks nothing")
    assert sandbox.student.frozen_objects() > 10_000  # torch, TransformerLens, matplotlib: far more


ESCAPING = """
    import os, time

    def escape(path):
        '''Leave behind a process outside this worker's group and parentage (setsid, double fork).'''
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open(path + ".tmp", "w") as handle:
                    handle.write(str(os.getpid()))
                os.rename(path + ".tmp", path)
                while True:
                    time.sleep(0.05)
            os._exit(0)
        while not os.path.exists(path):
            time.sleep(0.01)
        return os.getpid()
"""


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("then", ["the next exercise starts", "the run ends"])
def test_an_exercises_worker_and_what_it_left_are_gone_before_anything_else_runs(then: str, tmp_path: Path) -> None:
    # The template ends the last exercise's worker while it forks the next one: the two overlap
    # only while the new one starts, and nothing of the old is left once it can be sent work.
    path = tmp_path / "escaping.py"
    path.write_text(textwrap.dedent(ESCAPING))
    box = IsolatedSandbox(lambda: None, Template.fork(Executor), tmp_path / "scratch", WorkerLimits(), timeout=10.0,
                          device="cpu", user=None, model_source=None)
    (tmp_path / "scratch").mkdir()
    try:
        box.start_exercise("01")
        worker = box.module("01/escaping", path).escape(str(tmp_path / "stray.pid"))
        stray = int((tmp_path / "stray.pid").read_text())
        assert _exists(worker) and _exists(stray)
        box.start_exercise("02")
        if then == "the next exercise starts":
            assert box.module("02/escaping", path).escape(str(tmp_path / "second.pid")) != worker
        else:
            box.close_workers()
        assert not _exists(worker) and not _exists(stray)
    finally:
        box.close()


SECRETS = """
    import os

    def the_graders_token():
        from huggingface_hub import get_token
        return [os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"), get_token()]
"""


def test_a_worker_never_sees_the_graders_hugging_face_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither from the environment nor from the token file the grader's hub client would read."""
    import huggingface_hub.constants

    (tmp_path / "token").write_text("hf_the_graders_secret\n")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_the_old_name")
    (tmp_path / "secrets.py").write_text(textwrap.dedent(SECRETS))
    (tmp_path / "scratch").mkdir()
    box = IsolatedSandbox(lambda: None, Template.fork(Executor), tmp_path / "scratch", WorkerLimits(), timeout=30.0,
                          device="cpu", user=None, model_source=None)
    try:
        box.start_exercise("01")
        assert box.module("01/secrets", tmp_path / "secrets.py").the_graders_token() == [None, None, None]
    finally:
        box.close()
