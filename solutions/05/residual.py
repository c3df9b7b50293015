"""Reference solution for exercise 05: read the answer off the residual stream."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge


def logit_diff_direction(model: TransformerBridge, answer: str, wrong: str) -> Tensor:
    answer_id, wrong_id = model.to_single_token(answer), model.to_single_token(wrong)
    # W_U is [d_model, d_vocab]: a token's column is the direction that raises its logit.
    return (model.W_U[:, answer_id] - model.W_U[:, wrong_id]).detach()


def _unembed_bias_diff(model: TransformerBridge, answer: str, wrong: str) -> Tensor:
    # Compatibility mode folds the final LayerNorm's bias into b_U: it is part of every logit.
    return (model.b_U[model.to_single_token(answer)] - model.b_U[model.to_single_token(wrong)]).detach()


def _final_layer_norm(stream: Tensor, eps: float) -> Tensor:
    """The final LayerNorm as compatibility mode leaves it (its weight and bias are folded into the
    unembedding): centre each vector and divide it by its own scale."""
    centred = stream - stream.mean(dim=-1, keepdim=True)
    return centred / (centred.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()


def logit_lens(model: TransformerBridge, cache: ActivationCache, answer: str, wrong: str) -> Tensor:
    n_layers = model.cfg.n_layers
    # The stream at the last position before each block, then after the last one: [n_layers + 1, d_model].
    streams = [cache["resid_pre", layer][0, -1] for layer in range(n_layers)]
    streams.append(cache["resid_post", n_layers - 1][0, -1])
    normalised = _final_layer_norm(torch.stack(streams), model.cfg.eps)  # as if the model stopped there
    direction = logit_diff_direction(model, answer, wrong)
    return (normalised @ direction + _unembed_bias_diff(model, answer, wrong)).detach()


def head_attributions(model: TransformerBridge, cache: ActivationCache, answer: str, wrong: str) -> Tensor:
    n_layers = model.cfg.n_layers
    z = torch.stack([cache["z", layer][0, -1] for layer in range(n_layers)])  # [n_layers, n_heads, d_head]
    outputs = torch.einsum("lhd,lhdm->lhm", z, model.W_O)  # what each head writes: [n_layers, n_heads, d_model]
    # The heads are parts of one stream: they share its LayerNorm scale, the one the forward pass used.
    scale = cache["ln_final.hook_scale"][0, -1]  # [1]
    centred = outputs - outputs.mean(dim=-1, keepdim=True)
    return (centred / scale @ logit_diff_direction(model, answer, wrong)).detach()


def plot_logit_lens(values: Tensor, labels: list[str], title: str | None = None) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    positions = range(len(labels))
    ax.plot(positions, values.detach().cpu().numpy(), marker="o")
    ax.axhline(0, color="grey", linewidth=0.8)  # above 0: the answer is ahead
    ax.set_xticks(positions, labels)
    ax.set_xlabel("Layer")
    ax.set_ylabel("Logit difference")
    if title:
        ax.set_title(title)
    return fig
