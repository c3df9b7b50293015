"""Reference solution for exercise 02: run the model and cache every activation."""

from __future__ import annotations

import torch
from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge


def run_with_cache(model: TransformerBridge, prompt: str) -> tuple[Tensor, ActivationCache]:
    tokens = model.to_tokens(prompt)  # [1, seq]; starts with the BOS token
    logits, cache = model.run_with_cache(tokens)  # logits: [1, seq, d_vocab]
    return logits, cache


def count_cached(cache: ActivationCache) -> int:
    return len(cache)


def top_prediction(model: TransformerBridge, logits: Tensor) -> str:
    next_token = logits[0, -1].argmax().item()  # the last position predicts the next token
    return model.to_string(next_token)


def top_k(model: TransformerBridge, logits: Tensor, k: int = 5) -> list[tuple[str, float]]:
    probs = logits[0, -1].softmax(dim=-1)  # [d_vocab]
    values, indices = probs.topk(k)  # sorted, most probable first
    return [(model.to_string(i.item()), v.item()) for v, i in zip(values, indices)]


def residual_norms(cache: ActivationCache, position: int = -1) -> Tensor:
    n_layers = cache.model.cfg.n_layers
    streams = [cache["resid_pre", layer][0, position] for layer in range(n_layers)]  # each [d_model]
    streams.append(cache["resid_post", n_layers - 1][0, position])  # after the last block
    return torch.stack(streams).norm(dim=-1)  # [n_layers + 1]
