"""Exercise 04: causal evidence with activation patching.

Attention shows where information *could* flow; patching shows what the answer *depends on*.
Run the model on a corrupted prompt ("The capital of Italy is"), but paste in one activation
from the clean run ("The capital of France is"). If the answer moves back towards " Paris", that
activation carried the information that mattered.

The measure is the logit difference ``logit(" Paris") - logit(" Rome")`` at the last position,
normalised so that 0 means "as the corrupted run" and 1 means "as the clean run".

Run ``pytest exercises/04`` to grade this file; the HTML report shows your patching heatmap.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge


def logit_diff(logits: Tensor, correct: int, incorrect: int) -> Tensor:
    """Logit of token `correct` minus logit of token `incorrect`, at the last position.

    Args:
        logits: ``[batch, seq, d_vocab]``.
        correct, incorrect: token ids, e.g. ``model.to_single_token(" Paris")``.

    Returns:
        A 0-dimensional tensor: the difference, averaged over the batch when there are several
        prompts.

    Hint:
        ``logits[:, -1, correct] - logits[:, -1, incorrect]``, then ``.mean()``.
    """
    raise NotImplementedError("exercise 04: write logit_diff")


def patch_hook(clean_cache: ActivationCache, position: int) -> Callable:
    """A TransformerLens hook that pastes the clean activation in, at one position.

    Returns:
        ``hook(activation, hook)``: `activation` is the corrupted run's tensor
        ``[batch, seq, d_model]`` at the hook point named ``hook.name``. The hook puts
        ``clean_cache[hook.name][:, position]`` at `position`, leaves every other position alone,
        and returns the activation.

    The clean cache must stay exactly as it was: it is read again for the next position.

    Example:
        >>> hook_fn = patch_hook(clean_cache, position=4)
        >>> model.run_with_hooks(corrupted_tokens, fwd_hooks=[("blocks.0.hook_resid_pre", hook_fn)])

    Hint:
        Assign into `activation` (the corrupted run's tensor), never into the clean cache's.
    """
    raise NotImplementedError("exercise 04: write patch_hook")


def patch_residual_stream(
    model: TransformerBridge,
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    clean_cache: ActivationCache,
    correct: int,
    incorrect: int,
) -> Tensor:
    """Patch the residual stream at every (layer, position) and measure the effect.

    For each layer and each position, run `corrupted_tokens` with ``blocks.{layer}.hook_resid_pre``
    patched at that position from `clean_cache`, and compute the normalised logit difference::

        (patched_diff - corrupted_diff) / (clean_diff - corrupted_diff)

    Returns:
        ``[n_layers, seq_len]``: 0 = no better than the corrupted run, 1 = fully restored.
        No hook may stay attached to the model afterwards.

    Hint:
        ``model.run_with_hooks(tokens, fwd_hooks=[(name, hook_fn)])`` removes its hooks when it
        returns. Compute the clean and corrupted logit differences once, outside the loops.
    """
    raise NotImplementedError("exercise 04: write patch_residual_stream")
