"""Exercise 05's reference solution agrees with implementations we did not write: Hugging Face's
GPT-2 for the logit lens (its own hidden states, final LayerNorm and language-model head, no
TransformerLens), and TransformerLens's cache methods for the head attributions."""

from __future__ import annotations

from typing import Any

import pytest
import test_cross_checks as shared
import torch

from grader.judging.prompts import CLEAN_ANSWERS, CLEAN_PROMPT
from grader.judging.held_out import HELD_OUT_IOI_ANSWERS, HELD_OUT_IOI_PROMPT

# The shared fixtures: the practice model through TransformerLens and through Hugging Face alone.
folder, model, hf_model, one_torch_thread = shared.folder, shared.model, shared.hf_model, shared.one_torch_thread
solution = shared.solution
CASES = {"France": (CLEAN_PROMPT, CLEAN_ANSWERS), "IOI": (HELD_OUT_IOI_PROMPT, HELD_OUT_IOI_ANSWERS)}


@pytest.mark.parametrize("case", list(CASES))
def test_logit_lens_equals_hugging_faces_hidden_states_through_its_head(case: str, model: Any, hf_model: Any) -> None:
    prompt, (answer, wrong) = CASES[case]
    residual = solution("05", "residual")
    tokens = model.to_tokens(prompt)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        hidden = hf_model(tokens, output_hidden_states=True).hidden_states  # the last is after ln_f already
        streams = [hf_model.transformer.ln_f(h[0, -1]) for h in hidden[:-1]] + [hidden[-1][0, -1]]
        logits = torch.stack([hf_model.lm_head(s) for s in streams])  # [n_layers + 1, d_vocab], raw
    ids = model.to_single_token(answer), model.to_single_token(wrong)
    want = logits[:, ids[0]] - logits[:, ids[1]]  # a difference: the centring of compatibility mode cancels
    torch.testing.assert_close(residual.logit_lens(model, cache, answer, wrong), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", list(CASES))
def test_head_attributions_equal_transformer_lens_stacked_head_results(case: str, model: Any) -> None:
    prompt, (answer, wrong) = CASES[case]
    residual = solution("05", "residual")
    with torch.no_grad():
        logits, cache = model.run_with_cache(model.to_tokens(prompt))
        direction = residual.logit_diff_direction(model, answer, wrong)
        ours = residual.head_attributions(model, cache, answer, wrong)
        stacked = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)[:, 0] @ direction
        torch.testing.assert_close(ours, stacked.reshape(model.cfg.n_layers, model.cfg.n_heads), atol=1e-5, rtol=1e-4)
        # Every part of the last position's stream, TransformerLens's decomposition with the heads
        # split out, plus the unembedding bias, is the model's logit difference.
        parts = cache.decompose_resid(layer=-1, mode="mlp", apply_ln=True, pos_slice=-1)[:, 0] @ direction
        biases = (model.b_O - model.b_O.mean(dim=-1, keepdim=True)) / cache["ln_final.hook_scale"][0, -1] @ direction
        ids = model.to_single_token(answer), model.to_single_token(wrong)
        total = parts.sum() + biases.sum() + ours.sum() + model.b_U[ids[0]] - model.b_U[ids[1]]
        torch.testing.assert_close(total, logits[0, -1, ids[0]] - logits[0, -1, ids[1]], atol=1e-4, rtol=1e-4)
