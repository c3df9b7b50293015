"""Exercise 06: induction heads.

Give a model a run of random tokens, then the same run again. On the first copy it can only
guess; on the second it can copy: when it sees token A again, it looks for the token that came
after A last time, and predicts it. Heads that do this are *induction heads*. They cannot work
alone: a head in an earlier layer, a *previous-token head*, first writes into every position
which token came before it, and the induction head finds "the position whose previous token is my
current token" by reading that.

Attention patterns show both kinds of head as a diagonal stripe; the loss and an ablation show
that the model depends on them.

Run ``pytest exercises/06`` to grade this file; the HTML report shows your plot beside the
reference one.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge


def repeated_tokens(model: TransformerBridge, seq_len: int, batch: int = 1, seed: int = 0) -> Tensor:
    """A batch of random token runs, each repeated once: ``[BOS, r_1..r_n, r_1..r_n]``.

    Returns:
        ``[batch, 1 + 2 * seq_len]`` token ids: the BOS token, `seq_len` random tokens, and the
        same `seq_len` tokens again. Every row has its own random tokens, drawn uniformly from
        the vocabulary (``model.cfg.d_vocab``) but never the BOS or EOS token
        (``model.tokenizer.bos_token_id``, ``eos_token_id``). The same `seed` gives the same
        tokens; another seed gives other tokens.

    Example:
        >>> tokens = repeated_tokens(model, seq_len=20, batch=4, seed=0)
        >>> tokens.shape
        torch.Size([4, 41])
        >>> bool((tokens[:, 1:21] == tokens[:, 21:]).all())
        True

    Hint:
        ``generator = torch.Generator().manual_seed(seed)`` and
        ``torch.randint(..., generator=generator)``: a generator of your own leaves the global
        random state alone. Draw indices into a tensor of the allowed ids, then
        ``torch.cat([bos, first_copy, first_copy], dim=1)``.
    """
    raise NotImplementedError("exercise 06: write repeated_tokens")


def induction_scores(model: TransformerBridge, tokens: Tensor) -> Tensor:
    """Every head's induction score on `tokens` (as ``repeated_tokens`` makes them).

    With BOS at position 0, ``r_j`` sits at position ``j`` and again at ``n + j``. From a
    query in the second copy, ``q = n + 1 .. 2n``, an induction head attends to the token
    *after* the first occurrence of its own token: key ``q - n + 1``, that is ``n - 1``
    positions back. The score is that attention weight, averaged over the batch and over the
    second copy's queries.

    Returns:
        ``[n_layers, n_heads]``, each score in [0, 1].

    Cost: one forward pass that keeps only the attention patterns. Do not call
    ``run_with_cache`` without a filter: it stores every activation of the model.

    Example:
        >>> induction_scores(model, repeated_tokens(model, 20, batch=4)).shape   # the toy model
        torch.Size([2, 4])

    Hint:
        ``model.run_with_hooks(tokens, fwd_hooks=[(name_filter, hook)])`` with a hook on every
        ``blocks.{layer}.attn.hook_pattern`` (``[batch, head, query, key]``) that stores the
        pattern; ``hook.layer()`` says which layer it is. Then
        ``pattern[:, :, queries, queries - (n - 1)]``.
    """
    raise NotImplementedError("exercise 06: write induction_scores")


def previous_token_scores(model: TransformerBridge, tokens: Tensor) -> Tensor:
    """Every head's previous-token score: its mean attention from each position ``q`` to ``q - 1``.

    Average over the batch and over the queries ``q = 2, 3, ..`` up to the last position.
    Position 1 is left out: its previous token is BOS, where heads with nothing to do rest.

    Returns:
        ``[n_layers, n_heads]``, each score in [0, 1].

    Cost: as ``induction_scores``, one forward pass that keeps only the patterns.

    Hint:
        The same hook as ``induction_scores``; only the diagonal differs (offset 1, queries from 2).
        A helper that returns the patterns serves both functions.
    """
    raise NotImplementedError("exercise 06: write previous_token_scores")


def induction_heads(scores: Tensor, threshold: float = 0.4) -> list[tuple[int, int]]:
    """The heads whose score is above `threshold` (strictly), the highest score first.

    Example:
        >>> induction_heads(torch.tensor([[0.1, 0.9], [0.5, 0.3]]), threshold=0.4)
        [(0, 1), (1, 0)]

    Hint:
        ``torch.nonzero(scores > threshold)`` gives the ``(layer, head)`` pairs; sort them by
        ``scores[layer, head]``, in descending order. Return plain ints.
    """
    raise NotImplementedError("exercise 06: write induction_heads")


def per_token_loss(model: TransformerBridge, tokens: Tensor) -> Tensor:
    """The model's loss on each next token.

    Returns:
        ``[batch, seq_len - 1]``: entry ``t`` is ``-log p(tokens[:, t + 1])`` as predicted at
        position ``t``.

    Hint:
        ``logits[:, :-1].log_softmax(-1)``, then ``.gather(-1, tokens[:, 1:, None])``; mind the
        sign.
    """
    raise NotImplementedError("exercise 06: write per_token_loss")


def copy_losses(loss: Tensor) -> tuple[float, float]:
    """The mean loss on the first copy and on the second, from ``per_token_loss``'s ``[batch, 2n]``.

    Count the predictions of ``r_2..r_n`` in each copy. ``r_1`` is left out of both: nothing
    before it says what it will be (in the second copy it follows ``r_n``, which came last the
    first time).

    Returns:
        ``(first, second)`` as Python floats. On a model with induction heads, ``second`` is far
        lower than ``first``.

    Example:
        >>> first, second = copy_losses(per_token_loss(model, repeated_tokens(model, 20, 4)))

    Hint:
        Entry ``t`` of the loss predicts token ``t + 1``. With ``n = loss.shape[1] // 2``,
        ``r_2..r_n`` of the first copy sit at token positions ``2..n``.
    """
    raise NotImplementedError("exercise 06: write copy_losses")


def ablate_head(model: TransformerBridge, tokens: Tensor, layer: int, head: int) -> float:
    """The mean loss on the second copy (as ``copy_losses``) with one head's output zeroed.

    Zero the head's ``z`` (its attention-weighted values, ``[batch, position, head, d_head]``)
    at ``blocks.{layer}.attn.hook_z``, every position. Leave no hook on the model.

    Returns:
        A Python float: higher than the model's own second-copy loss when the model needs the head.

    Hint:
        A hook ``zero_head(z, hook)`` that sets ``z[:, :, head] = 0`` and returns ``z``, in
        ``model.run_with_hooks`` (it removes its hooks when it returns); then the loss as in
        ``per_token_loss`` and ``copy_losses``.
    """
    raise NotImplementedError("exercise 06: write ablate_head")


def plot_induction_scores(scores: Tensor) -> Figure:
    """Draw `scores` ``[n_layers, n_heads]`` as a heatmap and return the matplotlib Figure.

    - ``imshow(scores)``: layers on rows, heads on columns;
    - x tick labels: the head numbers ``"0", "1", ..``; y tick labels: the layer numbers;
    - axis labels ``"Head"`` (x) and ``"Layer"`` (y);
    - a title that says these are induction scores, and a colour bar.

    Return the Figure; do not call ``plt.show()``.

    Hint:
        As exercise 03's ``plot_attention``: ``fig, ax = plt.subplots()``, ``ax.imshow``,
        ``ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)])``, ``fig.colorbar``.
    """
    raise NotImplementedError("exercise 06: write plot_induction_scores")
