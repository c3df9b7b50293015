"""Reference solution for exercise 04: causal evidence with an activation-patching hook."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge


def logit_diff(logits: Tensor, correct: int, incorrect: int) -> Tensor:
    last = logits[:, -1]  # [batch, d_vocab]: the prediction for the next token
    return (last[:, correct] - last[:, incorrect]).mean()


def patch_hook(clean_cache: ActivationCache, position: int) -> Callable:
    def hook(activation: Tensor, hook) -> Tensor:
        # activation: [batch, seq, d_model]. Writing into the corrupted run's activation is fine;
        # the clean cache is only read.
        activation[:, position] = clean_cache[hook.name][:, position]
        return activation

    return hook


def patch_residual_stream(
    model: TransformerBridge,
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    clean_cache: ActivationCache,
    correct: int,
    incorrect: int,
) -> Tensor:
    with torch.no_grad():
        clean_diff = logit_diff(model(clean_tokens), correct, incorrect)
        corrupted_diff = logit_diff(model(corrupted_tokens), correct, incorrect)
        n_layers, seq_len = model.cfg.n_layers, corrupted_tokens.shape[1]
        result = torch.zeros(n_layers, seq_len)
        for layer in range(n_layers):
            for position in range(seq_len):
                # run_with_hooks removes its hooks afterwards, even when the run fails.
                patched_logits = model.run_with_hooks(
                    corrupted_tokens,
                    fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", patch_hook(clean_cache, position))],
                )
                patched_diff = logit_diff(patched_logits, correct, incorrect)
                # 0: as the corrupted run, 1: as the clean run.
                result[layer, position] = (patched_diff - corrupted_diff) / (clean_diff - corrupted_diff)
    return result
