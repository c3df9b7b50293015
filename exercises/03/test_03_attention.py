"""What the model attends to"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from grader.judging.compare import compare
from grader.judging.mistakes import Mistake
from grader.judging.prompts import APART_PROMPT, CLEAN_PROMPT
from grader.judging.pictures import reference_heatmap
from grader.judging.scoring import Raised, attempt

TOPIC = "attention"
ATTENTION_TOL = dict(atol=1e-4, rtol=1e-3)  # attention weights are in [0, 1]
HELD_OUT = "held-out"  # the name a hidden check's expected values are stored under


def _heads(model) -> list[tuple[int, int]]:
    """Two heads to look at. The second is (0, k) with k < n_layers and k < n_heads, so that a
    student who swaps layer and head still indexes a head that exists, and gets told so."""
    return [(model.cfg.n_layers - 1, min(1, model.cfg.n_heads - 1)), (0, min(model.cfg.n_layers, model.cfg.n_heads) - 1)]


@pytest.mark.points(3)
@pytest.mark.parametrize("which", [0, 1])
def test_attention_pattern_is_one_heads_query_by_key_map(which, student, reference, model, run_cached, expected, grade):
    """attention_pattern gives the [query, key] pattern of one head"""
    _attention_pattern(CLEAN_PROMPT, "", which, student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(3)
def test_attention_pattern_on_a_held_out_prompt(held_out, student, reference, model, run_cached, expected, grade):
    """attention_pattern on a prompt the exercise never shows"""
    _attention_pattern(held_out.prompt, f"@{HELD_OUT}", 0, student, reference, model, run_cached, expected, grade)


def _attention_pattern(prompt, label, which, student, reference, model, run_cached, expected, grade):
    layer, head = _heads(model)[which]
    _, cache = run_cached(prompt)
    want = expected(f"pattern[L{layer}H{head}]{label}", lambda: reference.attention_pattern(cache, layer, head), **ATTENTION_TOL)
    got = student.attention_pattern(cache, layer, head)
    grade.compare(
        f"pattern of layer {layer}, head {head}",
        got,
        want,
        mistakes=lambda w: {
            Mistake("transposed pattern",
                    "the pattern is transposed: it must be [query, key], as stored in the cache"): w.T,
            Mistake("layer and head swapped",
                    "layer and head are swapped: cache['pattern', layer][0, head]"): lambda: cache["pattern", head][0, layer],
            Mistake("batch dimension kept",
                    "the batch dimension is still there: take the first batch item, [0]"): w.unsqueeze(0),
            Mistake("scores before the softmax",
                    "these are attention scores before the softmax: use 'pattern', not 'attn_scores'"):
                lambda: cache["attn_scores", layer][0, head],
        },
        hint="cache['pattern', layer] is [batch, head, query, key]",
        axes=_query_by_key(model.to_str_tokens(prompt)),
    )


def _query_by_key(str_tokens: list[str]) -> tuple[tuple[str, list[str]], tuple[str, list[str]]]:
    return ("query", list(str_tokens)), ("key", list(str_tokens))


def _head_most_on(cache, model, key: int) -> tuple[int, int]:
    """The head whose last position attends most to `key`: the most telling picture to draw."""
    weights = torch.stack([cache["pattern", layer][0, :, -1, key] for layer in range(model.cfg.n_layers)])
    layer, head = divmod(int(weights.argmax()), model.cfg.n_heads)
    return layer, head


@pytest.mark.points(4)
def test_plot_attention_draws_a_labelled_heatmap(student, model, run_cached, grade):
    """plot_attention returns a Figure: pattern as rows = queries, labelled ticks and axes, colour bar"""
    _, cache = run_cached(CLEAN_PROMPT)
    str_tokens = model.to_str_tokens(CLEAN_PROMPT)
    layer, head = _head_most_on(cache, model, [t.strip() for t in str_tokens].index("France"))
    pattern = cache["pattern", layer][0, head].detach().cpu()
    title = f"Layer {layer}, head {head}"
    answer = student.plot_attention(pattern.clone(), list(str_tokens), title=title)
    reference_picture = reference_heatmap(pattern, str_tokens, str_tokens, f"reference: {title}", group="heatmap",
                                         xlabel="Key (attends to)", ylabel="Query (from)")
    # The Figure stays where it was drawn; what comes back is its description and a PNG.
    fig = grade.student_figure(answer, reference_picture)
    if fig is None:
        return
    image_axes = [ax for ax in fig.axes if ax.images]
    if not grade.check("draws an image", bool(image_axes), "no imshow/matshow image in the figure",
                       hint="ax.imshow(pattern)"):
        return
    ax = image_axes[0]
    data = torch.as_tensor(np.asarray(ax.images[0], dtype=float))
    drawn = grade.compare("image data", data.float(), pattern.float(),
                          mistakes={Mistake("transposed image",
                                            "the image is transposed: rows must be queries"): pattern.T.float()},
                          hint="imshow(pattern) puts queries on rows and keys on columns, as wanted",
                          axes=_query_by_key(str_tokens))
    grade.guard("returns the Figure", True, given=drawn)
    grade.compare("x tick labels (keys)", ax.xticklabels, list(str_tokens), hint="ax.set_xticks(range(len(str_tokens)), str_tokens)")
    grade.compare("y tick labels (queries)", ax.yticklabels, list(str_tokens), hint="ax.set_yticks(range(len(str_tokens)), str_tokens)")
    grade.compare("axis labels", [ax.xlabel, ax.ylabel], ["Key (attends to)", "Query (from)"],
                  mistakes={Mistake("axis labels swapped",
                                    "the axis labels are swapped: keys go along x"): ["Query (from)", "Key (attends to)"]},
                  hint="ax.set_xlabel('Key (attends to)') and ax.set_ylabel('Query (from)'), word for word")
    grade.check("has a colour bar", len(fig.axes) >= 2, "the figure has no colour bar", hint="fig.colorbar(image, ax=ax)")
    grade.check("shows the title", title in (ax.title, fig.suptitle),
                f"expected the title {title!r}, got {ax.title!r}", hint="ax.set_title(title) when a title is given")


@pytest.mark.points(3)
def test_token_index_ignores_the_leading_space(student, grade):
    """token_index finds a word whatever its surrounding whitespace, first occurrence, ValueError if absent"""
    tokens = ["<|endoftext|>", "When", " Mary", " and", " John", " met", ",", " John", " left"]
    cases = [("John", 4), (" Mary", 2), ("met ", 5), (",", 6)]
    for word, want in cases:
        got = attempt(student.token_index, tokens, word)
        # Named only when it is that bug: the exact token (" John") is found and the word is not.
        exact_only = tokens[want] != word and _finds(student, tokens, tokens[want], want)
        grade.compare(f"token_index(..., {word!r})", got, want,
                      mistakes={Mistake("last occurrence instead of the first",
                                        "that is the last occurrence: return the first"): 7} if word == "John" else None,
                      hint=LEADING_SPACE if exact_only else LEADING_SPACE.hint)
    missing = attempt(student.token_index, tokens, "Paris")
    if isinstance(missing, Raised) and isinstance(missing.error, ValueError):
        said = str(missing.error)
        grade.check("the error lists the tokens", "Mary" in said and "John" in said,
                    f"the ValueError says {said!r:.200}, without the tokens",
                    hint="raise ValueError(f'{word!r} is not one of the tokens {str_tokens}')")
    else:
        what = missing.error.headline if isinstance(missing, Raised) else f"it returned {missing!r:.100}"
        grade.check("raises ValueError for a missing word", False, f"no ValueError for a word that is not there: {what}",
                    hint="raise ValueError when no token matches; don't return -1 or None")


def _finds(student, tokens: list[str], word: str, position: int) -> bool:
    """Whether the student's token_index finds `word` at `position` (a stub finds nothing)."""
    try:
        found = attempt(student.token_index, list(tokens), word)
    except NotImplementedError:
        return False
    return type(found) is int and found == position


TOKEN_INDEX_CHECK = "token_index finds a word whatever its surrounding whitespace"
# The usual token_index bug (`str_tokens.index(word)`), under one name in its own check and in the
# notes of the checks that call token_index: the class page counts it once, as the root cause.
MISSES_LEADING_SPACE = "token_index misses GPT-2's leading space"
LEADING_SPACE = Mistake(MISSES_LEADING_SPACE, "compare token.strip() with word.strip(): GPT-2's tokens start with a space")
FIX_TOKEN_INDEX = Mistake(MISSES_LEADING_SPACE,
                          f"fix token_index first (its own check: '{TOKEN_INDEX_CHECK}'): compare token.strip() "
                          "with word.strip(), since GPT-2's tokens start with a space")
TOKEN_INDEX_WRONG = Mistake("token_index wrong", f"fix token_index first (its own check: '{TOKEN_INDEX_CHECK}')")


def _word_the_student_finds(student, token_lists: list[list[str]], word: str, grade) -> tuple[str, Mistake | None]:
    """The word to hand the student's heads_attending_to / content_heads, and the root cause when
    the student's token_index is broken for it (None when it is not).

    Those functions call the student's own token_index, which is graded in its own check. When it
    does not find `word`, these checks pass the exact token instead (" France", leading space
    included), which the usual bug (`str_tokens.index(word)`) does find, so the heads are graded on
    their own merits and the bug costs points once. A note names the root cause either way.
    """
    positions = [[t.strip() for t in tokens].index(word.strip()) for tokens in token_lists]

    def finds(candidate: str) -> Any:
        """The first of the student's answers that is wrong, or None when all are right."""
        for tokens, position in zip(token_lists, positions):
            try:
                found = attempt(student.token_index, list(tokens), candidate)
            except NotImplementedError:
                return None  # not written yet: the function graded here may not need it
            if not (type(found) is int and found == position):
                return found if isinstance(found, Raised) else f"your token_index gives {found!r:.60} for {candidate!r}"
        return None

    wrong = finds(word)
    if wrong is None:
        return word, None
    what = wrong.error.headline if isinstance(wrong, Raised) else wrong
    exact = {tokens[position] for tokens, position in zip(token_lists, positions)}
    if len(exact) == 1 and (token := exact.pop()) != word and finds(token) is None:
        grade.note("token_index finds the word",
                   f"{what}. This check passed the exact token {token!r} instead, so that bug costs points only "
                   f"in token_index's own check", hint=FIX_TOKEN_INDEX)
        return token, FIX_TOKEN_INDEX
    # The same bug when each prompt's exact token is found; some other bug of token_index if not.
    spaces = all(_finds(student, tokens, tokens[position], position) for tokens, position in zip(token_lists, positions))
    cause = FIX_TOKEN_INDEX if spaces else TOKEN_INDEX_WRONG
    grade.note("token_index finds the word", f"{what}, so what depends on it below goes wrong too", hint=cause)
    return word, cause


def _raised_hint(got, word: str, token_index_broken: Mistake | None) -> str | Mistake | None:
    if isinstance(got, Raised) and isinstance(got.error, ValueError):
        if token_index_broken:
            return token_index_broken
        return f"GPT-2's token is ' {word}' with a leading space: find it with your token_index"
    return None


# The hidden case asks about another country from another query position, with a threshold where
# the answer holds a head and none that France's answer holds, so a list of heads hard-coded for
# France fails, and so does an empty one. The low threshold lets many heads
# through, in an order that is not their loop order, so an unsorted answer fails too.
CASES = [("France", CLEAN_PROMPT, 0.3, -1), ("France", CLEAN_PROMPT, 0.01, -1)]


@pytest.mark.points(4)
@pytest.mark.parametrize("word,prompt,threshold,query", CASES, ids=[f"{c[0]}>{c[2]}" for c in CASES])
def test_heads_attending_to_finds_every_head_above_the_threshold(
    word, prompt, threshold, query, student, reference, model, run_cached, expected, grade
):
    """heads_attending_to lists every head above the threshold, highest weight first"""
    _heads_attending_to(word, prompt, threshold, query, word, student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(4)
def test_heads_attending_to_on_a_held_out_prompt(held_out, student, reference, model, run_cached, expected, grade):
    """heads_attending_to on a country and a query position the exercise never shows"""
    _heads_attending_to(held_out.word, held_out.prompt, held_out.attend_threshold, held_out.attend_query, HELD_OUT,
                        student, reference, model, run_cached, expected, grade)


def _heads_attending_to(word, prompt, threshold, query, label, student, reference, model, run_cached, expected, grade):
    _, cache = run_cached(prompt)
    str_tokens = model.to_str_tokens(prompt)
    every = expected(f"weights_to[{label},{query}]", lambda: reference.heads_attending_to(cache, str_tokens, word, -1.0, query), **ATTENTION_TOL)
    weights = {(int(l), int(h)): float(w) for l, h, w in every.value}
    margin = every.tol.atol
    # A head within the tolerance of the threshold is neither required nor forbidden:
    # the same head can sit on either side of it on another device.
    required = {lh for lh, w in weights.items() if w > threshold + margin}
    forbidden = {lh for lh, w in weights.items() if w <= threshold - margin}
    asked, broken = _word_the_student_finds(student, [list(str_tokens)], word, grade)
    got = attempt(student.heads_attending_to, cache, list(str_tokens), asked, threshold, query)
    if not (isinstance(got, list) and all(isinstance(t, (tuple, list)) and len(t) == 3 for t in got)):
        grade.wrong_kind("returns (layer, head, weight) triples", got, "a list of (layer, head, weight)",
                         hint=_raised_hint(got, word, broken) or "return [(layer, head, weight), ...], highest weight first")
        return
    found = {(int(l), int(h)) for l, h, _ in got}
    grade.check("every head above the threshold", required <= found,
                f"missing heads: {sorted(required - found)}", expected=sorted(required), got=sorted(found),
                hint="loop over every layer and every head")
    # An empty list has no head below the threshold, no wrong weight and no wrong order: these
    # count once the answer finds a head it should (or where no head should be found at all).
    found_some = bool(found & required) or not required
    grade.guard("no head at or below the threshold", not (found & forbidden),
                f"heads at or below {threshold}: {sorted(found & forbidden)}",
                hint="keep a head only when weight > threshold", given=found_some)
    weights_match = compare([float(w) for l, h, w in got if (int(l), int(h)) in weights],
                            [weights[(int(l), int(h))] for l, h, _ in got if (int(l), int(h)) in weights], every.tol)
    grade.guard("weights", weights_match.ok, weights_match.message,
                hint=f"the weight is cache['pattern', layer][0, head, query, key of '{word}']", given=found_some)
    values = [float(w) for _, _, w in got]
    grade.guard("highest weight first", values == sorted(values, reverse=True), f"the weights come in the order {values}",
                hint="sort by weight, in descending order", given=found_some)


@pytest.mark.points(1)
def test_heads_attending_to_keeps_only_weights_strictly_above(student, model, run_cached, grade):
    """a head whose weight equals the threshold is not above it"""
    _, cache = run_cached(CLEAN_PROMPT)
    str_tokens = model.to_str_tokens(CLEAN_PROMPT)
    key = [t.strip() for t in str_tokens].index("France")
    ranked = sorted(((float(cache["pattern", layer][0, head, -1, key]), layer, head)
                     for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)), reverse=True)
    # The threshold is the exact weight of the second head: only the first is above it.
    (top_weight, *top), (threshold, *at) = ranked[0], next(r for r in ranked if r[0] < ranked[0][0])
    asked, broken = _word_the_student_finds(student, [list(str_tokens)], "France", grade)
    got = attempt(student.heads_attending_to, cache, list(str_tokens), asked, threshold, -1)
    if not (isinstance(got, list) and all(isinstance(t, (tuple, list)) and len(t) == 3 for t in got)):
        grade.wrong_kind("returns (layer, head, weight) triples", got, "a list of (layer, head, weight)",
                         hint=_raised_hint(got, "France", broken) or "return [(layer, head, weight), ...]")
        return
    found = {(int(l), int(h)) for l, h, _ in got}
    kept = grade.check("the head above the threshold is kept", tuple(top) in found,
                       f"layer {top[0]}, head {top[1]} (weight {top_weight:.4f}) is above {threshold!r} and is missing",
                       hint="loop over every layer and every head")
    grade.guard("weight == threshold is left out", tuple(at) not in found,
                f"layer {at[0]}, head {at[1]} has weight exactly {threshold!r} and was kept",
                hint="'above the threshold' means weight > threshold, not >=", given=kept)


# content_heads: the same word where it is the token before the last one ("adjacent") and where it
# is not ("apart"). A head above the threshold only on the adjacent prompt looks one token back
# (position); one above it on both finds the word (content). The hidden case changes the country,
# both templates and the threshold. The low threshold lets in heads with small weights on both
# sides, so an answer hard-coded from the first case fails.
CONTENT_CASES = [
    ("France", CLEAN_PROMPT, APART_PROMPT, 0.3),
    ("France", CLEAN_PROMPT, APART_PROMPT, 0.03),
]


def _head_names(heads) -> str:
    return ", ".join(f"L{layer}H{head}" for layer, head in sorted(heads)) or "none"


def _heads_verb(heads, verb: str) -> str:
    """'L0H0 attends' or 'L0H0, L0H2 attend' (verb in its singular form)."""
    plural = {"attends": "attend", "is": "are"}[verb]
    return f"{_head_names(heads)} {verb if len(heads) == 1 else plural}"


def _pairs(value) -> set[tuple[int, int]] | None:
    """A list of (layer, head) pairs as a set, or None when it is not one."""
    if not isinstance(value, (list, tuple)):
        return None
    try:
        return {(int(layer), int(head)) for layer, head in value}
    except (TypeError, ValueError):
        return None


@pytest.mark.points(2)
@pytest.mark.parametrize("word,adjacent,apart,threshold", CONTENT_CASES, ids=[f"{c[0]}>{c[3]}" for c in CONTENT_CASES])
def test_content_heads_tells_content_from_position(
    word, adjacent, apart, threshold, student, reference, model, run_cached, expected, grade
):
    """content_heads tells the heads that find the word from those that only look one token back"""
    _content_heads(word, adjacent, apart, threshold, {adjacent: adjacent, apart: apart},
                   student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_content_heads_on_held_out_prompts(held_out, student, reference, model, run_cached, expected, grade):
    """content_heads on a country and templates the exercise never shows"""
    _content_heads(held_out.word, held_out.adjacent, held_out.apart, held_out.content_threshold,
                   {held_out.adjacent: f"{HELD_OUT} adjacent", held_out.apart: f"{HELD_OUT} apart"},
                   student, reference, model, run_cached, expected, grade)


def _content_heads(word, adjacent, apart, threshold, labels, student, reference, model, run_cached, expected, grade):
    _, cache_adjacent = run_cached(adjacent)
    _, cache_apart = run_cached(apart)
    tokens_adjacent, tokens_apart = model.to_str_tokens(adjacent), model.to_str_tokens(apart)
    weights = {}
    for prompt, cache, tokens in ((adjacent, cache_adjacent, tokens_adjacent), (apart, cache_apart, tokens_apart)):
        every = expected(f"weights_to[{word}]@{labels[prompt]}" if labels[prompt] == prompt else f"weights_to@{labels[prompt]}",
                         lambda cache=cache, tokens=tokens: reference.heads_attending_to(cache, tokens, word, -1.0, -1),
                         **ATTENTION_TOL)
        weights[prompt] = {(int(l), int(h)): float(w) for l, h, w in every.value}
    margin = every.tol.atol
    # As in heads_attending_to's check: a head within the tolerance of the threshold on a prompt is
    # neither required nor forbidden where that prompt decides.
    above = {p: {lh for lh, w in weights[p].items() if w > threshold + margin} for p in (adjacent, apart)}
    below = {p: {lh for lh, w in weights[p].items() if w <= threshold - margin} for p in (adjacent, apart)}
    want = {
        "content": (above[adjacent] & above[apart], below[adjacent] | below[apart]),
        "position": (above[adjacent] & below[apart], below[adjacent] | above[apart]),
    }  # list -> (required, forbidden)
    asked, broken = _word_the_student_finds(student, [list(tokens_adjacent), list(tokens_apart)], word, grade)
    got = attempt(student.content_heads, cache_adjacent, list(tokens_adjacent), cache_apart, list(tokens_apart),
                  asked, threshold)
    lists = {key: _pairs(got.get(key)) for key in want} if isinstance(got, dict) else {}
    if not (isinstance(got, dict) and set(got) == set(want) and None not in lists.values()):
        grade.wrong_kind("returns {'content': [...], 'position': [...]}", got,
                         "a dict with the keys 'content' and 'position', each a list of (layer, head) pairs",
                         hint=_raised_hint(got, word, broken) or "return {'content': [(layer, head), ...], 'position': "
                                                         "[(layer, head), ...]}: pairs, without the weights")
        return

    def fits(key: str, found: set[tuple[int, int]]) -> bool:
        required, forbidden = want[key]
        return required <= found and not (found & forbidden)

    content, position = lists["content"], lists["position"]
    position_required, content_required = want["position"][0], want["content"][0]
    only_apart = above[apart] & below[adjacent]
    # The likely mistake, most specific first.
    likely: Mistake | None
    if fits("content", position) and fits("position", content) and not fits("content", content):
        likely = Mistake("content and position swapped",
                         "content and position are swapped: a content head still attends to the word where it is not "
                         "adjacent")
    elif not position and above[adjacent] <= content and content & position_required:
        likely = Mistake("adjacent prompt only",
                         "only the adjacent prompt was used: there a head that only looks one token back attends to "
                         "the word too; keep as content only the heads that still attend where the word is not adjacent")
    elif content & position_required:
        likely = Mistake("position head counted as content",
                         f"{_heads_verb(content & position_required, 'attends')} to '{word}' above the threshold only "
                         f"where it is the token before the last one: that is position, not content (it may only look "
                         f"one token back); don't count it as a '{word}' head")
    elif position & content_required:
        likely = Mistake("content head counted as position",
                         f"{_heads_verb(position & content_required, 'attends')} to '{word}' above the threshold on "
                         f"both prompts: that is content; list it under 'content' only")
    elif (content | position) & only_apart:
        likely = Mistake("head kept that misses the adjacent word",
                         f"{_heads_verb((content | position) & only_apart, 'is')} above the threshold only where the "
                         f"word is not adjacent: split only the heads that attend to it on the adjacent prompt")
    else:
        likely = None
    # A list that should be empty is right when left empty: it counts once the answer puts a head
    # where it belongs.
    placed_some = bool(content & content_required or position & position_required
                       or not (content_required or position_required))
    for key, found, advice in (
        ("content", content, "a content head is above the threshold on both prompts"),
        ("position", position, "a position head is above the threshold on the adjacent prompt only"),
    ):
        required, forbidden = want[key]
        problems = []
        if required - found:
            problems.append(f"missing heads: {_head_names(required - found)}")
        if found & forbidden:
            problems.append(f"heads that do not belong: {_head_names(found & forbidden)}")
        # Where no head belongs in this list, leaving it empty is right but no work on its own.
        grade.guard(f"{key} heads", fits(key, found), "; ".join(problems),
                    hint=likely or f"{advice}: call heads_attending_to on each prompt and compare the (layer, head) sets",
                    expected=_head_names(required), got=_head_names(found), given=bool(required) or placed_some)
