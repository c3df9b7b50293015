"""Exercise 02: run the model on a prompt and cache every activation.

``model.run_with_cache(tokens)`` returns the logits and an ``ActivationCache`` that holds every
intermediate activation of the run, keyed by hook name (``"blocks.0.hook_resid_pre"``) or by a
short name and a layer (``cache["resid_pre", 0]``, ``cache["pattern", 5]``).

Shapes, for one prompt of ``seq`` tokens (the BOS token included):
    tokens  [1, seq]               logits  [1, seq, d_vocab]
    cache["resid_pre", layer]  [1, seq, d_model]

Run ``pytest exercises/02`` to grade this file.
"""

from __future__ import annotations

from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge


def run_with_cache(model: TransformerBridge, prompt: str) -> tuple[Tensor, ActivationCache]:
    """Tokenize `prompt` and run the model on it, caching every activation.

    Returns:
        ``(logits, cache)``: logits of shape ``[1, seq, d_vocab]``, where the tokens start with the
        BOS token, as ``model.to_tokens`` does by default.

    Example:
        >>> logits, cache = run_with_cache(model, "The capital of France is")
        >>> model.to_str_tokens("The capital of France is")
        ['<|endoftext|>', 'The', ' capital', ' of', ' France', ' is']
        >>> logits.shape          # 6 tokens, BOS included
        torch.Size([1, 6, 50257])

    Hint:
        ``model.to_tokens(prompt)`` then ``model.run_with_cache(tokens)``. Keep the BOS token:
        every position shifts by one without it.
    """
    raise NotImplementedError("exercise 02: write run_with_cache")


def count_cached(cache: ActivationCache) -> int:
    """How many activation tensors the cache holds.

    The number depends on the model and on the TransformerLens version, so count; don't guess.

    Hint:
        An ``ActivationCache`` behaves like a dict.
    """
    raise NotImplementedError("exercise 02: write count_cached")


def top_prediction(model: TransformerBridge, logits: Tensor) -> str:
    """The most likely next token after the prompt, as a string.

    Example:
        >>> top_prediction(model, logits)
        ' Paris'

    Hint:
        The prediction for the *next* token lives at the last position: ``logits[0, -1]``.
        ``model.to_string(token_id)`` turns an id into its text, leading space included.
    """
    raise NotImplementedError("exercise 02: write top_prediction")


def top_k(model: TransformerBridge, logits: Tensor, k: int = 5) -> list[tuple[str, float]]:
    """The `k` most likely next tokens with their probabilities, most probable first.

    Example:
        >>> top_k(model, logits, k=2)
        [(' Paris', 0.41), (' the', 0.07)]      # illustrative numbers

    Hint:
        Probabilities, not logits: ``softmax`` over the vocabulary at the last position, then
        ``topk``. Return plain Python floats.
    """
    raise NotImplementedError("exercise 02: write top_k")


def residual_norms(cache: ActivationCache, position: int = -1) -> Tensor:
    """How large the residual stream is as it flows through the model, at one position.

    Returns:
        A tensor of shape ``[n_layers + 1]``: the L2 norm of ``resid_pre`` of every layer at
        `position` (first batch item), then the norm of the final ``resid_post`` (the output of
        the last block).

    Example (a 2-layer model):
        >>> residual_norms(cache)
        tensor([ 3.1, 10.4, 17.9])      # illustrative numbers

    Hint:
        ``cache["resid_pre", layer][0, position]`` is a ``[d_model]`` vector; ``.norm()`` gives
        its length. ``cache.model.cfg.n_layers`` says how many layers there are.
    """
    raise NotImplementedError("exercise 02: write residual_norms")
