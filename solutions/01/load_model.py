"""Reference solution for exercise 01: load the model with TransformerLens 4."""

from __future__ import annotations

import torch
from transformer_lens.model_bridge import TransformerBridge


def load_model(name: str = "gpt2", device: str | None = None) -> TransformerBridge:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = TransformerBridge.boot_transformers(name, device=device)
    # HookedTransformer numerics: folded LayerNorm, centred weights (and so centred logits).
    model.enable_compatibility_mode()
    model.eval()  # no dropout: the same prompt always gives the same activations
    return model


def model_summary(model: TransformerBridge) -> dict[str, int]:
    cfg = model.cfg
    return {
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_model": cfg.d_model,
        "d_head": cfg.d_head,
        "d_mlp": cfg.d_mlp,
        "d_vocab": cfg.d_vocab,
        "n_ctx": cfg.n_ctx,
    }
