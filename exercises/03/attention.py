"""Exercise 03: what does the model attend to?

Every attention head turns each position (the *query*) into a weighted average over the
positions before it (the *keys*). ``cache["pattern", layer]`` holds those weights for all heads
of a layer, shape ``[batch, head, query_pos, key_pos]``; each row sums to 1.

A head can attend to a word for what it is, or only for where it is: a *previous-token head*
sends each position's attention to the position before it, so from " is" in "The capital of
France is" it lands on " France" without knowing anything about France. ``content_heads`` tells
the two apart.

Run ``pytest exercises/03`` to grade this file; the HTML report shows your heatmap beside the
reference one.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor
from transformer_lens import ActivationCache


def attention_pattern(cache: ActivationCache, layer: int, head: int) -> Tensor:
    """The attention pattern of one head, for the first prompt of the batch.

    Returns:
        ``[query_pos, key_pos]``: row ``q`` says how much position ``q`` attends to each key.

    Example:
        >>> attention_pattern(cache, layer=1, head=0).shape      # a 6-token prompt
        torch.Size([6, 6])

    Hint:
        Index the ``[batch, head, query, key]`` tensor; mind the order of layer and head.
    """
    raise NotImplementedError("exercise 03: write attention_pattern")


def plot_attention(pattern: Tensor, str_tokens: list[str], title: str | None = None) -> Figure:
    """Draw `pattern` as a heatmap and return the matplotlib Figure.

    - rows are queries, columns are keys: ``imshow(pattern)``, not its transpose;
    - x tick labels: the key tokens; y tick labels: the query tokens (`str_tokens` both);
    - axis labels ``"Key (attends to)"`` (x) and ``"Query (from)"`` (y);
    - a colour bar; `title` as the axes title when given.

    Return the Figure; do not call ``plt.show()`` (the grader and the report draw it).

    Hint:
        ``fig, ax = plt.subplots()``, ``image = ax.imshow(...)``, ``ax.set_xticks(positions, labels)``,
        ``fig.colorbar(image, ax=ax)``. Draw ``pattern.detach().cpu().numpy()``.
    """
    raise NotImplementedError("exercise 03: write plot_attention")


def token_index(str_tokens: list[str], word: str) -> int:
    """The first position whose token is `word`, ignoring surrounding whitespace.

    GPT-2's token for France is ``" France"``, with a leading space, so a plain
    ``str_tokens.index("France")`` fails.

    Example:
        >>> token_index(["<|endoftext|>", "The", " capital", " of", " France", " is"], "France")
        4

    Raises:
        ValueError: when no token matches; the message lists the tokens, so the caller sees why.

    Hint:
        Compare ``token.strip()`` with ``word.strip()``; when nothing matches,
        ``raise ValueError(f"{word!r} is not one of the tokens {str_tokens}")``.
    """
    raise NotImplementedError("exercise 03: write token_index")


def heads_attending_to(
    cache: ActivationCache,
    str_tokens: list[str],
    word: str = "France",
    threshold: float = 0.3,
    query: int = -1,
) -> list[tuple[int, int, float]]:
    """Every head whose attention from position `query` to `word` is above `threshold`.

    Returns:
        ``[(layer, head, weight), ...]`` with ``weight > threshold`` (strictly above), the
        highest weight first. ``weight`` is a Python float.

    Example:
        >>> heads_attending_to(cache, model.to_str_tokens(prompt), "France")
        [(1, 2, 0.97), (0, 3, 0.41)]      # illustrative: compute, don't copy

    Hint:
        ``token_index`` finds the key position. Loop over layers; ``cache["pattern", layer]``
        gives all heads of a layer at once.
    """
    raise NotImplementedError("exercise 03: write heads_attending_to")


def content_heads(
    cache_adjacent: ActivationCache,
    str_tokens_adjacent: list[str],
    cache_apart: ActivationCache,
    str_tokens_apart: list[str],
    word: str = "France",
    threshold: float = 0.3,
) -> dict[str, list[tuple[int, int]]]:
    """Split the heads that attend to `word` into those that find it by content and those that
    only look one token back.

    In "The capital of France is", " France" is the token right before the last one, so a
    *previous-token head* (a head that always attends to the position before its own) puts its
    attention on " France" from " is" without knowing anything about France. To tell the two
    apart, look at a second prompt where `word` is NOT next to the last position, such as
    "In France, the capital is".

    Take the heads whose attention from the last position to `word` is above `threshold` on the
    adjacent prompt (what ``heads_attending_to`` gives), and sort each into one list:

    - ``"content"``: the head is above `threshold` on the apart prompt too: it finds the word
      wherever it is;
    - ``"position"``: it is not above `threshold` on the apart prompt: it attended to the word
      only because the word was the previous token.

    A head above the threshold on the apart prompt alone goes in neither list.

    Returns:
        ``{"content": [(layer, head), ...], "position": [(layer, head), ...]}``: ``(layer, head)``
        pairs of ints, without the weights, each list in any order.

    Example:
        >>> content_heads(cache_adjacent, model.to_str_tokens("The capital of France is"),
        ...               cache_apart, model.to_str_tokens("In France, the capital is"), "France")
        {'content': [(5, 1)], 'position': [(2, 7)]}      # illustrative: compute, don't copy

    Raises:
        ValueError: when `word` is not one of the tokens of either prompt (as ``token_index``).

    Hint:
        Call ``heads_attending_to`` once for each prompt and keep ``(layer, head)`` for each
        result; then a head of the adjacent prompt is "content" if it is also in the apart set.
    """
    raise NotImplementedError("exercise 03: write content_heads")
