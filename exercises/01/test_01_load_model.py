"""Load the model"""

from __future__ import annotations

import pytest
import torch

from grader.judging.compare import Tolerance
from grader.judging.mistakes import Mistake
from grader.judging.prompts import CLEAN_PROMPT
from grader.judging.scoring import attempt

TOPIC = "load_model"
PROMPT = CLEAN_PROMPT
# Two models booted the same way on the same device: only summation order can differ.
SAME_CODE_PATH = Tolerance(atol=1e-4, rtol=1e-4)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def loaded(student, model_source, device):
    """The student's model, booted once for this file. Where the graded device is the default
    one (the usual case), it is booted with device=None, so one load serves both device checks."""
    if torch.device(device).type == _default_device():
        return student.load_model(model_source)
    return student.load_model(model_source, device=device)


@pytest.mark.points(4)
def test_load_model_gives_a_ready_model(loaded, model, device, grade):
    """load_model boots the model in compatibility mode, in eval mode, on the device asked for"""
    # The student's model stays where it was made; `loaded` is a handle with its description.
    info = getattr(loaded, "model", None)
    grade.check(
        "returns a TransformerBridge",
        info is not None and info.is_bridge,
        f"expected a TransformerBridge, got {getattr(loaded, 'type_name', type(loaded).__name__)}",
        hint="return the model that TransformerBridge.boot_transformers gave you",
    )
    if info is None or not info.is_bridge:
        return
    grade.check(
        "weights on the requested device",
        info.device_type == torch.device(device).type,
        f"weights are on {info.device_type}, the check asked for {device}",
        hint="pass device=device to boot_transformers",
    )
    grade.check(
        "eval mode",
        not info.training,
        "model.training is True: dropout is on, so the same prompt gives different activations",
        hint="call model.eval() after booting",
    )
    tokens = model.to_tokens(PROMPT)
    with torch.no_grad():
        want = model(tokens)[0, -1].cpu()  # the grader's model, loaded the supported way
    loaded.call_method("eval")  # compare numerics apart from dropout, which the check above grades
    got = loaded(tokens)[0, -1]
    centred = abs(float(got.mean())) < 1e-3
    grade.compare(
        "logits match a model in compatibility mode",
        got,
        want,
        tol=SAME_CODE_PATH,
        hint=None if centred else (
            "the logits are not centred (their mean is far from 0): "
            "call model.enable_compatibility_mode() after booting"
        ),
    )


@pytest.mark.points(1)
def test_load_model_chooses_a_device_when_none_is_given(student, model_source, device, request, grade):
    """load_model(name) with no device picks CUDA when available, else the CPU"""
    want = _default_device()
    booted = request.getfixturevalue("loaded") if torch.device(device).type == want else student.load_model(model_source)
    info = getattr(booted, "model", None)
    got = info.device_type if info is not None else f"no model ({getattr(booted, 'type_name', type(booted).__name__)})"
    grade.check(
        "default device",
        got == want,
        f"expected the weights on {want}, got {got}",
        hint="device=None means: 'cuda' if torch.cuda.is_available() else 'cpu'",
        expected=want,
        got=got,
    )


SUMMARY_KEYS = ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx")


@pytest.mark.points(2)
def test_model_summary_reports_the_shape(student, reference, model, expected, grade):
    """model_summary gives the seven sizes of the model"""
    got = attempt(student.model_summary, model)
    want = expected("summary", lambda: reference.model_summary(model), atol=0, rtol=0)
    if not isinstance(got, dict):
        grade.wrong_kind("returns a dict of sizes", got, "a dict", hint="return {'n_layers': model.cfg.n_layers, ...}")
        return
    right = [
        grade.compare(
            key,
            got.get(key),
            want.value[key],
            tol=want.tol,
            mistakes={Mistake("d_mlp read as d_model",
                              "d_mlp is the MLP's hidden width, 4 * d_model in GPT-2, not d_model"): want.value["d_model"]}
            if key == "d_mlp"
            else None,
            hint=f"read it from model.cfg.{key}" if key in got else f"the key {key!r} is missing: the keys are "
                 f"exactly {', '.join(SUMMARY_KEYS)}",
        )
        for key in SUMMARY_KEYS
    ]
    extra = sorted(set(map(str, got)) - set(SUMMARY_KEYS))
    grade.guard("no other keys", not extra, f"keys that are not sizes of the model: {extra}",
                hint=f"the keys are exactly {', '.join(SUMMARY_KEYS)}", given=any(right))
