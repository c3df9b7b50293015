"""Reference solution for exercise 03: what the model attends to."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor
from transformer_lens import ActivationCache


def attention_pattern(cache: ActivationCache, layer: int, head: int) -> Tensor:
    return cache["pattern", layer][0, head]  # [batch, head, query, key] -> [query, key]


def plot_attention(pattern: Tensor, str_tokens: list[str], title: str | None = None) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(pattern.detach().cpu().numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    positions = range(len(str_tokens))
    ax.set_xticks(positions, str_tokens, rotation=45, ha="right")
    ax.set_yticks(positions, str_tokens)
    ax.set_xlabel("Key (attends to)")
    ax.set_ylabel("Query (from)")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="Attention weight")
    fig.tight_layout()
    return fig


def token_index(str_tokens: list[str], word: str) -> int:
    wanted = word.strip()
    for position, token in enumerate(str_tokens):
        if token.strip() == wanted:  # GPT-2's token is " France": compare without the space
            return position
    raise ValueError(f"{word!r} is not one of the tokens {str_tokens}")


def heads_attending_to(
    cache: ActivationCache,
    str_tokens: list[str],
    word: str = "France",
    threshold: float = 0.3,
    query: int = -1,
) -> list[tuple[int, int, float]]:
    key = token_index(str_tokens, word)
    n_layers = cache.model.cfg.n_layers
    found = []
    for layer in range(n_layers):
        weights = cache["pattern", layer][0, :, query, key]  # [head]: attention from query to key
        for head, weight in enumerate(weights.tolist()):
            if weight > threshold:
                found.append((layer, head, weight))
    return sorted(found, key=lambda item: item[2], reverse=True)


def content_heads(
    cache_adjacent: ActivationCache,
    str_tokens_adjacent: list[str],
    cache_apart: ActivationCache,
    str_tokens_apart: list[str],
    word: str = "France",
    threshold: float = 0.3,
) -> dict[str, list[tuple[int, int]]]:
    adjacent = heads_attending_to(cache_adjacent, str_tokens_adjacent, word, threshold)
    apart = {(layer, head) for layer, head, _ in heads_attending_to(cache_apart, str_tokens_apart, word, threshold)}
    found: dict[str, list[tuple[int, int]]] = {"content": [], "position": []}
    for layer, head, _ in adjacent:  # highest weight on the adjacent prompt first
        # Above the threshold where the word is not the previous token: the head finds it by content.
        found["content" if (layer, head) in apart else "position"].append((layer, head))
    return found
