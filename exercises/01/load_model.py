"""Exercise 01: load a language model with all its internals exposed.

TransformerLens 4 wraps a Hugging Face model in a ``TransformerBridge``. Booting it is one
call; two more put it in the state every later exercise relies on:

- ``enable_compatibility_mode()`` gives the classic HookedTransformer numerics (LayerNorm folded
  into the weights, centred weights, so the logits at each position sum to zero);
- ``eval()`` turns dropout off, so the same prompt always gives the same activations.

Run ``pytest exercises/01`` to grade this file.
"""

from __future__ import annotations

from transformer_lens.model_bridge import TransformerBridge


def load_model(name: str = "gpt2", device: str | None = None) -> TransformerBridge:
    """Boot `name` with TransformerLens, ready for interpretability work.

    Args:
        name: anything ``TransformerBridge.boot_transformers`` accepts: a Hugging Face hub name
            such as ``"gpt2"`` (GPT-2 small), or a local folder in Hugging Face format, such as
            the practice model ``"fixtures/models/toy-gpt2"``.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` means CUDA when ``torch.cuda.is_available()``,
            else the CPU.

    Returns:
        The model, in compatibility mode, in eval mode, with its weights on `device`.

    Example:
        >>> model = load_model("fixtures/models/toy-gpt2", device="cpu")
        >>> model.cfg.n_layers
        2
        >>> model.training
        False

    Hint:
        ``TransformerBridge.boot_transformers(name, device=device)``, then
        ``model.enable_compatibility_mode()`` and ``model.eval()``.
    """
    raise NotImplementedError("exercise 01: write load_model")


def model_summary(model: TransformerBridge) -> dict[str, int]:
    """The model's shape, as a dict of seven integers.

    Keys: ``n_layers`` (transformer blocks), ``n_heads`` (attention heads per block),
    ``d_model`` (width of the residual stream), ``d_head`` (width of one head),
    ``d_mlp`` (hidden width of each MLP), ``d_vocab`` (vocabulary size), ``n_ctx`` (longest
    sequence the model accepts).

    Example (GPT-2 small):
        >>> model_summary(model)
        {'n_layers': 12, 'n_heads': 12, 'd_model': 768, 'd_head': 64, 'd_mlp': 3072,
         'd_vocab': 50257, 'n_ctx': 1024}

    Hint:
        Every one of them is an attribute of ``model.cfg``.
    """
    raise NotImplementedError("exercise 01: write model_summary")
