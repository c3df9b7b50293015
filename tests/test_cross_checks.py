"""The reference solutions agree with implementations we did not write.

Every expected value the graders compare against is computed from ``solutions/``; if a reference
solution were wrong, the checks would teach the mistake. Here the solutions meet independent
implementations on the practice model: Hugging Face's own GPT-2 (eager attention, raw logits) and
TransformerLens's own activation-patching routine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from grader.judging.prompts import CLEAN_ANSWERS, CLEAN_PROMPT, CORRUPTED_PROMPT
from grader.judging.held_out import HELD_OUT_ANSWERS, HELD_OUT_CLEAN, HELD_OUT_CORRUPTED, HELD_OUT_PROMPT

REPO = Path(__file__).resolve().parent.parent
MODEL_ID = "toy-gpt2"
PROMPTS = [CLEAN_PROMPT, HELD_OUT_PROMPT]


def solution(exercise: str, topic: str) -> ModuleType:
    """solutions/NN/<topic>.py, imported from its path (solutions/ is not a package)."""
    path = REPO / "solutions" / exercise / f"{topic}.py"
    spec = importlib.util.spec_from_file_location(f"cross_check_solution_{exercise}_{topic}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The toy model is tiny: one thread is fastest, and on a busy machine two threads that spin-wait
    for each other make every forward pass tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder() -> Iterator[str]:
    from grader.models import MODELS

    spec = MODELS[MODEL_ID]
    if not (Path(spec.source) / "config.json").is_file():
        pytest.fail(f"the practice model is missing from {spec.source}: build it with `mechgrade toy build`")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # a local folder: nothing may ask the hub
        yield spec.source


@pytest.fixture(scope="module")
def model(folder: str) -> Any:
    """The TransformerBridge in compatibility mode, loaded the way the grader loads it."""
    from grader.models import MODELS, load_model

    return load_model(MODELS[MODEL_ID], "cpu")


@pytest.fixture(scope="module")
def hf_model(folder: str) -> Any:
    """The same weights through Hugging Face alone: no TransformerLens, eager attention."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_attention_pattern_equals_hugging_face_attentions(prompt: str, model: Any, hf_model: Any) -> None:
    attention = solution("03", "attention")
    tokens = model.to_tokens(prompt)
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id  # BOS first, as the exercises grade
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        hf = hf_model(tokens, output_attentions=True).attentions
    assert len(hf) == model.cfg.n_layers
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            ours = attention.attention_pattern(cache, layer, head)
            assert ours.shape == (tokens.shape[1], tokens.shape[1])
            torch.testing.assert_close(ours, hf[layer][0, head], atol=1e-5, rtol=1e-4,
                                       msg=lambda m, l=layer, h=head: f"layer {l}, head {h}: {m}")


@pytest.mark.parametrize("prompt", PROMPTS)
def test_logits_are_hugging_face_logits_centred_over_the_vocabulary(prompt: str, model: Any, hf_model: Any) -> None:
    cache_module = solution("02", "cache")
    logits, _ = cache_module.run_with_cache(model, prompt)
    with torch.no_grad():
        raw = hf_model(model.to_tokens(prompt)).logits
    assert logits.shape == raw.shape
    # Compatibility mode centres the unembedding, so each position's logits lose their mean.
    torch.testing.assert_close(logits, raw - raw.mean(dim=-1, keepdim=True), atol=1e-4, rtol=1e-4)
    assert cache_module.top_prediction(model, logits) == model.to_string(raw[0, -1].argmax().item())


PAIRS = {
    "France-Italy": (CLEAN_PROMPT, CORRUPTED_PROMPT, CLEAN_ANSWERS),
    "Germany-Spain": (HELD_OUT_CLEAN, HELD_OUT_CORRUPTED, HELD_OUT_ANSWERS),
}


@pytest.mark.parametrize("pair", list(PAIRS))
def test_patch_residual_stream_equals_transformer_lens_patching(pair: str, model: Any) -> None:
    from transformer_lens.patching import get_act_patch_resid_pre

    patching = solution("04", "patching")
    clean_prompt, corrupted_prompt, (correct_str, incorrect_str) = PAIRS[pair]
    correct, incorrect = model.to_single_token(correct_str), model.to_single_token(incorrect_str)
    clean_tokens, corrupted_tokens = model.to_tokens(clean_prompt), model.to_tokens(corrupted_prompt)
    assert clean_tokens.shape == corrupted_tokens.shape

    def metric(logits: torch.Tensor) -> torch.Tensor:  # independent of solutions/: raw logit difference
        return logits[0, -1, correct] - logits[0, -1, incorrect]

    with torch.no_grad():
        clean_diff = metric(model(clean_tokens))
        corrupted_diff = metric(model(corrupted_tokens))
        _, clean_cache = model.run_with_cache(clean_tokens)
        raw = get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)
        ours = patching.patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect)
    assert abs(float(clean_diff - corrupted_diff)) > 0.1, "the pair does not separate the answers on this model"
    want = (raw - corrupted_diff) / (clean_diff - corrupted_diff)
    assert ours.shape == want.shape == (model.cfg.n_layers, corrupted_tokens.shape[1])
    torch.testing.assert_close(ours.float(), want.float().cpu(), atol=1e-4, rtol=1e-4)
    # Sanity of the comparison itself: patching the differing token's resid_pre at layer 0 restores the clean run.
    differ = int((clean_tokens[0] != corrupted_tokens[0]).nonzero()[0, 0])
    assert float(want[0, differ]) == pytest.approx(1.0, abs=1e-4)
