"""Choosing and loading the model: ids, fallback, devices, broken files. No network is used."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

from grader import models
from grader.models import ModelChoiceError, ModelFilesError, ModelSpec


def test_an_unknown_model_id_lists_the_known_ones():
    with pytest.raises(ModelChoiceError, match=r"unknown model id 'gpt3'; known ids: gpt2-small, toy-gpt2"):
        models.choose_model("gpt3")


def test_model_comes_from_the_option_then_the_environment(monkeypatch):
    monkeypatch.setenv("MECHGRADE_MODEL", "gpt2-small")
    assert models.choose_model("toy-gpt2").spec.id == "toy-gpt2"
    assert models.choose_model(None) == models.ModelChoice(models.MODELS["gpt2-small"], "$MECHGRADE_MODEL")


def test_offline_without_a_cached_gpt2_falls_back_to_the_toy_model_with_a_banner(monkeypatch):
    monkeypatch.delenv("MECHGRADE_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "_in_hf_cache", lambda repo_id: False)
    choice = models.choose_model(None)
    assert choice.spec.id == "toy-gpt2" and choice.is_fallback
    assert "GRADED ON THE PRACTICE MODEL 'toy-gpt2'" in (choice.banner() or "")
    assert "HF_HUB_OFFLINE" in choice.reason


def test_an_unreachable_hub_is_decided_within_seconds(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_in_hf_cache", lambda repo_id: False)
    monkeypatch.setattr(models, "HUB_URL", "https://10.255.255.1/")  # nothing serves HTTP there
    monkeypatch.setattr(models, "HUB_PROBE_SECONDS", 1.0)
    started = time.monotonic()
    available, why = models.hub_model_available("gpt2")
    assert not available and "did not answer" in why
    assert time.monotonic() - started < 3  # measured 0.05-0.09 s at load 4.5-5.7 (the probe's limit: 1 s)


def test_a_cached_gpt2_is_the_default(monkeypatch):
    monkeypatch.delenv("MECHGRADE_MODEL", raising=False)
    monkeypatch.setattr(models, "_in_hf_cache", lambda repo_id: True)
    assert models.choose_model(None) == models.ModelChoice(models.MODELS["gpt2-small"], "default")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_asking_for_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ModelChoiceError, match="sees no CUDA device; leave --device out to use the CPU"):
        models.choose_device("cuda")


def test_the_default_device_is_cuda_when_available_else_cpu():
    assert models.choose_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")


def test_an_unknown_device_is_refused():
    with pytest.raises(ModelChoiceError, match="unknown device 'tpu'"):
        models.choose_device("tpu")


def _copy_of_toy(tmp_path: Path) -> ModelSpec:
    folder = tmp_path / "toy-gpt2"
    shutil.copytree(models.TOY_MODEL_DIR, folder)
    return ModelSpec("toy-gpt2", str(folder), "copy", local=True)


def test_missing_toy_weights_name_the_file_and_the_rebuild_command(tmp_path):
    spec = _copy_of_toy(tmp_path)
    (Path(spec.source) / "model.safetensors").unlink()
    with pytest.raises(ModelFilesError, match=r"model\.safetensors is missing or empty; rebuild it with `mechgrade toy build`"):
        models.load_model(spec, "cpu")


def test_corrupted_toy_weights_are_detected_before_loading(tmp_path):
    spec = _copy_of_toy(tmp_path)
    weights = Path(spec.source) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFilesError, match=r"is corrupted .*rebuild it with `mechgrade toy build`"):
        models.load_model(spec, "cpu")


def test_unreadable_toy_weights_name_the_file(tmp_path):
    spec = _copy_of_toy(tmp_path)
    (Path(spec.source) / "model.safetensors").write_bytes(b"not a safetensors file")
    (Path(spec.source) / "model.safetensors.sha256").unlink()
    with pytest.raises(ModelFilesError, match=r"could not load .*toy-gpt2.*rebuild it with `mechgrade toy build`"):
        models.load_model(spec, "cpu")


def test_the_toy_model_loads_offline_in_compatibility_and_eval_mode():
    model = models.load_model(models.MODELS["toy-gpt2"], "cpu")
    assert not model.training
    logits = model(model.to_tokens("The capital of France is"))
    assert abs(float(logits[0, -1].mean().detach())) < 1e-4  # compatibility mode centres the logits
