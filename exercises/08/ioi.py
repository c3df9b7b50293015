"""Exercise 08: a whole circuit, end to end (indirect object identification).

"When Mary and John went to the store, John gave a drink to" ... " Mary". The model must find
the name that is *not* repeated. Take that behaviour apart: build clean prompts and corrupted
("ABC") ones, measure the logit difference on a scale where clean is 1 and corrupted is 0, patch
every head, follow one head's effect along a single path (path patching), and estimate every
head's effect from one backward pass (attribution patching).

Run ``pytest exercises/08`` to grade this file; the HTML report shows your plot beside the
reference one.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge


def ioi_batch(model: TransformerBridge, template: str, names: list[tuple[str, str, str]]) -> dict[str, Tensor]:
    """A clean batch, its ABC corruption, and the two answer ids of every prompt.

    `template` holds ``{io}`` once and ``{s}`` twice, e.g.
    ``"When {io} and {s} went to the store, {s} gave a drink to"``. Each entry of `names` is
    ``(io, s, c)``: the indirect object, the subject, and a third name. The clean prompt is
    ``template.format(io=io, s=s)``; the corrupted ("ABC") prompt is the same tokens with the
    *second* occurrence of the subject (S2) replaced by the third name. Every name is one token
    with a leading space (``" Mary"``).

    Returns:
        ``{"clean": [batch, seq], "corrupted": [batch, seq], "io": [batch], "s": [batch]}``: token ids
        (BOS first, as ``model.to_tokens`` gives them) and the ids of ``" " + io`` and ``" " + s``.

    Example:
        >>> batch = ioi_batch(model, "When {io} and {s} went to the store, {s} gave a drink to",
        ...                   [("Mary", "John", "Alice")])
        >>> model.to_string(batch["corrupted"][0])
        '<|endoftext|>When Mary and John went to the store, Alice gave a drink to'

    Hint:
        ``model.to_tokens([...])`` for the clean prompts, ``model.to_single_token(" " + name)`` for
        the ids; S2 is the last position of a row holding the subject's id:
        ``(clean[row] == s_id).nonzero()[-1]``. Clone before you write.
    """
    raise NotImplementedError("exercise 08: write ioi_batch")


def logit_diff(logits: Tensor, io: Tensor, s: Tensor) -> Tensor:
    """The logit of each prompt's indirect object minus that of its subject, at the last position,
    averaged over the batch.

    Returns:
        A 0-dimensional tensor (keep it differentiable: ``attribution_patch`` takes its gradient).

    Hint:
        Each prompt has its own two ids: ``logits[:, -1].gather(1, io[:, None])``. Beware
        ``logits[:, -1, io]``: that is ``[batch, batch]``, every prompt's IO read at every prompt.
    """
    raise NotImplementedError("exercise 08: write logit_diff")


def ioi_metric(logits: Tensor, io: Tensor, s: Tensor, clean_diff: Tensor | float, corrupted_diff: Tensor | float) -> Tensor:
    """The logit difference of `logits`, normalised so that the clean run scores 1 and the
    corrupted run 0.

    Returns:
        ``(logit_diff(logits) - corrupted_diff) / (clean_diff - corrupted_diff)``, 0-dimensional.

    Hint:
        Call your ``logit_diff``; check that the clean logits give 1 and the corrupted ones 0.
    """
    raise NotImplementedError("exercise 08: write ioi_metric")


def patch_heads(model: TransformerBridge, batch: dict[str, Tensor]) -> Tensor:
    """Activation patching of every head: the clean run with one head's output (its ``z``, at
    ``blocks.{layer}.attn.hook_z``, every position) taken from the corrupted run.

    This is *noising*, the other way round from exercise 04: the clean run, one corrupted head.
    A head the model needs drops the metric from 1 towards 0.

    Returns:
        ``[n_layers, n_heads]``: ``ioi_metric`` of each patched run.

    Cost: at most ``2 + n_layers * n_heads`` forward passes (one clean, one corrupted, one per
    head). Leave no hook on the model.

    Hint:
        ``model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_z"))`` for
        the two baselines; then for each head a hook that sets ``z[:, :, head]`` from the
        corrupted cache, in ``model.run_with_hooks(batch["clean"], fwd_hooks=[...])``.
    """
    raise NotImplementedError("exercise 08: write patch_heads")


def path_patch_to_logits(model: TransformerBridge, batch: dict[str, Tensor], sender: tuple[int, int]) -> float:
    """Path patching from `sender` ``(layer, head)`` to the logits: the sender's direct effect.

    Run the clean prompts with the sender's ``z`` from the corrupted run and *every other head's*
    ``z`` frozen at its clean value (the MLPs recompute). A later head then cannot pass the
    sender's change on: what is left reaches the logits directly (or through MLPs).

    Returns:
        ``ioi_metric`` of that run, a Python float.

    Cost: at most 3 forward passes (clean, corrupted, the patched run). Leave no hook on the model.

    Hint:
        One hook on every ``hook_z`` (``fwd_hooks=[(lambda name: name.endswith("hook_z"), freeze)]``)
        that writes the clean cache's ``z``, then the corrupted ``z`` of the sender's head when
        ``hook.layer()`` is the sender's layer.
    """
    raise NotImplementedError("exercise 08: write path_patch_to_logits")


def path_patch(model: TransformerBridge, batch: dict[str, Tensor], sender: tuple[int, int],
               receivers: list[tuple[int, int]], component: str) -> float:
    """Path patching from `sender` to the `component` (``"q"``, ``"k"`` or ``"v"``) of the
    `receivers`: the part of the sender's effect that flows through those inputs only.

    1. Run the clean prompts with the sender's ``z`` from the corrupted run and every other
       head's ``z`` frozen at clean (as ``path_patch_to_logits``); keep the receivers'
       ``blocks.{layer}.attn.hook_{component}`` (``[batch, position, head, d_head]``).
    2. Run the clean prompts again with only the receivers' heads of that input replaced by what
       step 1 kept; everything else (later heads, MLPs) recomputes.

    Returns:
        ``ioi_metric`` of the second run, a Python float.

    Cost: at most 4 forward passes (clean, corrupted, step 1, step 2). Leave no hook on the model.

    Hint:
        Step 2 must not corrupt the sender again: its change reaches the logits only through the
        receivers' inputs you paste.
    """
    raise NotImplementedError("exercise 08: write path_patch")


def attribution_patch(model: TransformerBridge, batch: dict[str, Tensor]) -> Tensor:
    """Attribution patching: estimate ``patch_heads`` with one forward and one backward pass.

    ``metric(clean with head h corrupted) ~ 1 + sum((z_corrupted - z_clean) * dmetric/dz)`` over
    the batch, positions and ``d_head`` of head h, with the gradient of ``ioi_metric`` taken at
    the *clean* run (the point we move away from).

    Returns:
        ``[n_layers, n_heads]``, on ``patch_heads``'s scale.

    Cost: two forward passes (the corrupted run for its ``z``, the clean run with its gradient),
    one backward pass.

    Hint:
        A hook on every ``hook_z`` of the clean run that keeps the tensor (it is part of the
        graph); ``torch.autograd.grad(metric, [z_0, z_1, ...])`` gives the gradients. Run under
        ``torch.enable_grad()`` and compute the corrupted run under ``torch.no_grad()``.
    """
    raise NotImplementedError("exercise 08: write attribution_patch")


def plot_attribution_vs_patching(patching: Tensor, attribution: Tensor) -> Figure:
    """A scatter plot of every head: activation patching (x) against attribution patching (y).

    - ``ax.scatter(patching.flatten(), attribution.flatten())``, in ``[layer, head]`` order;
    - a dashed ``y = x`` line: where the estimate is exact;
    - axis labels ``"Activation patching"`` (x) and ``"Attribution patching"`` (y), a title;
    - optionally, each point labelled ``"L{layer}H{head}"`` (``ax.annotate``).

    Return the Figure; do not call ``plt.show()``.

    Hint:
        ``fig, ax = plt.subplots()``; ``ax.plot([low, high], [low, high], "--")`` for the line, with
        ``low`` and ``high`` the smallest and largest of all the values.
    """
    raise NotImplementedError("exercise 08: write plot_attribution_vs_patching")
