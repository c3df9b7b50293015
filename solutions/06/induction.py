"""Reference solution for exercise 06: induction heads."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge


def repeated_tokens(model: TransformerBridge, seq_len: int, batch: int = 1, seed: int = 0) -> Tensor:
    special = {model.tokenizer.bos_token_id, model.tokenizer.eos_token_id}
    allowed = torch.tensor([t for t in range(model.cfg.d_vocab) if t not in special])
    generator = torch.Generator().manual_seed(seed)  # its own generator: the global RNG is left alone
    first_copy = allowed[torch.randint(len(allowed), (batch, seq_len), generator=generator)]
    bos = torch.full((batch, 1), model.tokenizer.bos_token_id)
    return torch.cat([bos, first_copy, first_copy], dim=1).to(model.cfg.device)


def _copy_length(tokens: Tensor) -> int:
    """n of [BOS, r_1..r_n, r_1..r_n]."""
    return (tokens.shape[1] - 1) // 2


def _patterns(model: TransformerBridge, tokens: Tensor) -> list[Tensor]:
    """Every layer's attention pattern [batch, head, query, key], from one forward pass that
    keeps nothing else (a full run_with_cache would store every activation of the model)."""
    patterns: dict[int, Tensor] = {}

    def keep(pattern: Tensor, hook) -> None:
        patterns[hook.layer()] = pattern.detach()

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(lambda name: name.endswith("attn.hook_pattern"), keep)])
    return [patterns[layer] for layer in range(model.cfg.n_layers)]


def _diagonal_scores(patterns: list[Tensor], queries: Tensor, offset: int) -> Tensor:
    """[layer, head]: mean attention from each of `queries` to the key `offset` positions back."""
    return torch.stack([p[:, :, queries, queries - offset].mean((0, 2)) for p in patterns]).cpu()


def induction_scores(model: TransformerBridge, tokens: Tensor) -> Tensor:
    n = _copy_length(tokens)
    # r_j sits at j and again at n + j; from the second copy (q = n+1 .. 2n) an induction head
    # looks at the token after the first occurrence: q - n + 1, that is n - 1 positions back.
    queries = torch.arange(n + 1, 2 * n + 1)
    return _diagonal_scores(_patterns(model, tokens), queries, n - 1)


def previous_token_scores(model: TransformerBridge, tokens: Tensor) -> Tensor:
    # From position 2 on: position 1's previous token is BOS, where heads with nothing to do rest.
    queries = torch.arange(2, tokens.shape[1])
    return _diagonal_scores(_patterns(model, tokens), queries, 1)


def induction_heads(scores: Tensor, threshold: float = 0.4) -> list[tuple[int, int]]:
    found = [(layer, head, float(scores[layer, head])) for layer, head in torch.nonzero(scores > threshold).tolist()]
    return [(layer, head) for layer, head, _ in sorted(found, key=lambda item: item[2], reverse=True)]


def per_token_loss(model: TransformerBridge, tokens: Tensor) -> Tensor:
    with torch.no_grad():
        logits = model(tokens)
    return _next_token_loss(logits, tokens)


def _next_token_loss(logits: Tensor, tokens: Tensor) -> Tensor:
    """[batch, seq - 1]: -log p(token t + 1) as predicted at position t."""
    log_probs = logits[:, :-1].log_softmax(-1)
    return -log_probs.gather(-1, tokens[:, 1:, None].to(logits.device))[..., 0].cpu()


def copy_losses(loss: Tensor) -> tuple[float, float]:
    n = loss.shape[1] // 2  # loss is [batch, 2n]: the prediction of token t + 1 at t
    # r_2..r_n of each copy; r_1 is left out of both: nothing before it says what it will be.
    first, second = loss[:, 1:n], loss[:, n + 1 :]
    return float(first.mean()), float(second.mean())


def ablate_head(model: TransformerBridge, tokens: Tensor, layer: int, head: int) -> float:
    def zero_head(z: Tensor, hook) -> Tensor:
        z[:, :, head] = 0.0  # z: [batch, position, head, d_head]
        return z

    with torch.no_grad():
        # run_with_hooks removes the hook when it returns, even when the run fails.
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)])
    return copy_losses(_next_token_loss(logits, tokens))[1]


def plot_induction_scores(scores: Tensor) -> Figure:
    n_layers, n_heads = scores.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n_heads, 1.0 + 0.5 * n_layers))
    image = ax.imshow(scores.detach().cpu().numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)])
    ax.set_yticks(range(n_layers), [str(layer) for layer in range(n_layers)])
    ax.set_xlabel("Head")
    ax.set_ylabel("Layer")
    ax.set_title("Induction scores")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig
