"""Exercise 05: read the answer off the residual stream.

Every block of GPT-2 *adds* to one running vector per position, the residual stream; the final
LayerNorm and the unembedding ``W_U`` turn the last position's stream into the logits. Two
questions follow, and this exercise answers both for "The capital of France is":

- the *logit lens*: if the model stopped after layer 0, 1, ..., what would it say? Put each
  layer's stream through the final LayerNorm and the unembedding, and watch " Paris" pull ahead
  of " Rome";
- *direct logit attribution*: the final stream is a sum (embeddings, every head, every MLP,
  biases), so the logit difference is a sum too. How much of it does each head write directly?

Both read the stream along one direction: ``W_U[:, answer] - W_U[:, wrong]``, the direction
that raises the answer's logit and lowers the wrong one's.

Run ``pytest exercises/05`` to grade this file; the HTML report shows your plot beside the
reference one.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge


def logit_diff_direction(model: TransformerBridge, answer: str, wrong: str) -> Tensor:
    """The direction in the residual stream that favours `answer` over `wrong`.

    `answer` and `wrong` are single tokens, with GPT-2's leading space: ``" Paris"``, ``" Rome"``.

    Returns:
        ``[d_model]``: the unembedding column of `answer` minus the column of `wrong`. A final
        stream ``x`` (after the final LayerNorm) gives ``x @ direction`` = logit(answer) -
        logit(wrong), up to the unembedding bias.

    Example:
        >>> logit_diff_direction(model, " Paris", " Rome").shape      # toy-gpt2: d_model = 128
        torch.Size([128])

    Hint:
        ``model.W_U`` is ``[d_model, d_vocab]``; ``model.to_single_token(" Paris")`` gives the
        token id. Not ``model.W_E``: that is the embedding, the matrix at the other end.
    """
    raise NotImplementedError("exercise 05: write logit_diff_direction")


def logit_lens(model: TransformerBridge, cache: ActivationCache, answer: str, wrong: str) -> Tensor:
    """The logit difference the model would give if it stopped after each layer.

    Take the residual stream at the LAST position of the first prompt, where the next token is
    predicted: before block 0 (the embeddings), before block 1, ..., and after the last block
    (``n_layers + 1`` streams). Treat each one as if it were the final stream: put it through the
    final LayerNorm (centre it, divide it by its own scale: compatibility mode has folded the
    LayerNorm's weight into ``W_U`` and its bias into ``b_U``), then read the logit difference:
    ``normalised @ direction + (b_U[answer] - b_U[wrong])``.

    Returns:
        ``[n_layers + 1]``. The last entry IS the model's own logit difference,
        ``logits[0, -1, answer] - logits[0, -1, wrong]``: check it.

    Example:
        >>> logit_lens(model, cache, " Paris", " Rome")      # toy-gpt2: 2 layers
        tensor([ 1.2, 9.8, 13.5])      # illustrative: compute, don't copy

    Hint:
        ``cache["resid_pre", layer][0, -1]`` and ``cache["resid_post", n_layers - 1][0, -1]``;
        ``cache.accumulated_resid(layer=-1, pos_slice=-1, apply_ln=True)`` does the stacking and
        the LayerNorm for you (``[n_layers + 1, batch, d_model]``), but not the unembedding bias.
    """
    raise NotImplementedError("exercise 05: write logit_lens")


def head_attributions(model: TransformerBridge, cache: ActivationCache, answer: str, wrong: str) -> Tensor:
    """Each head's direct contribution to the logit difference, at the last position.

    A head writes ``z @ W_O`` into the stream (``z = cache["z", layer][0, -1, head]``). That is
    one part of the final stream, so it shares the final stream's LayerNorm scale,
    ``cache["ln_final.hook_scale"][0, -1]``: the one the forward pass divided by. Centre the
    head's output, divide it by that scale, and dot it with ``logit_diff_direction``.

    Returns:
        ``[n_layers, n_heads]``: positive entries push towards `answer`. Together with the
        embeddings, the attention biases ``b_O``, the MLPs and ``b_U[answer] - b_U[wrong]``, they
        add up to the model's logit difference.

    Example:
        >>> head_attributions(model, cache, " Paris", " Rome").shape      # toy-gpt2
        torch.Size([2, 4])

    Hint:
        ``torch.einsum("lhd,lhdm->lhm", z, model.W_O)`` gives every head's output at once, or let
        ``cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)`` do it
        (``[n_layers * n_heads, batch, d_model]``, layer-major). Don't normalise each head by its
        own scale: the parts of one stream share it.
    """
    raise NotImplementedError("exercise 05: write head_attributions")


def plot_logit_lens(values: Tensor, labels: list[str], title: str | None = None) -> Figure:
    """Draw the logit lens as a line (or bars) and return the matplotlib Figure.

    - one point (or bar) per entry of `values`, in order, at x = 0, 1, 2, ...;
    - x tick labels: `labels`, one per value (e.g. ``["embeddings", "after L0", "after L1"]``);
    - axis labels ``"Layer"`` (x) and ``"Logit difference"`` (y);
    - `title` as the axes title when given.

    Return the Figure; do not call ``plt.show()`` (the grader and the report draw it).

    Hint:
        ``fig, ax = plt.subplots()``, ``ax.plot(range(len(values)), values, marker="o")``,
        ``ax.set_xticks(range(len(labels)), labels)``. A line at 0 shows where the answer pulls
        ahead. Tensors may need ``.detach().cpu()`` first.
    """
    raise NotImplementedError("exercise 05: write plot_logit_lens")
