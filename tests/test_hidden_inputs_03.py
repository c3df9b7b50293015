"""Exercise 03's set-valued hidden checks have an answer that takes work, on the practice model.

heads_attending_to and content_heads answer with sets of heads. On the held-out inputs (the fixed
DEFAULT and those a bundle's --hidden-seed draws) the reference answer must hold a head, so that an
empty answer, which does nothing, is wrong; it must leave a head out, so that listing every head is
wrong too; and it must hold none of the heads that the public case (France, last position) finds at
the same threshold, so that a set copied from the release's stored answer earns nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from grader.judging.held_out import DEFAULT, HeldOut
from grader.judging.prompts import APART_PROMPT, CLEAN_PROMPT
from tests.test_cross_checks import solution

SEEDS = ("spring term", "autumn term", "week 3", "2027")


@pytest.fixture(scope="module")
def model():
    from grader.models import MODELS, load_model

    torch.set_num_threads(1)
    return load_model(MODELS["toy-gpt2"], "cpu")


@pytest.fixture(scope="module")
def attention():
    return solution("03", "attention")


@pytest.fixture(scope="module", params=["DEFAULT", *SEEDS])
def inputs(request, model) -> HeldOut:
    if request.param == "DEFAULT":
        return DEFAULT
    from grader.course.hidden_inputs import draw

    return draw(request.param, model)


def _heads(attention, model, prompt: str, word: str, threshold: float, query: int) -> set[tuple[int, int]]:
    with torch.no_grad():
        _, cache = model.run_with_cache(prompt)
    return {(layer, head) for layer, head, _ in
            attention.heads_attending_to(cache, model.to_str_tokens(prompt), word, threshold, query)}


def _split(attention, model, adjacent: str, apart: str, word: str, threshold: float) -> dict[str, set]:
    with torch.no_grad():
        (_, near), (_, far) = model.run_with_cache(adjacent), model.run_with_cache(apart)
    found = attention.content_heads(near, model.to_str_tokens(adjacent), far, model.to_str_tokens(apart), word, threshold)
    return {key: set(heads) for key, heads in found.items()}


def test_heads_attending_to_on_the_held_out_prompt_finds_a_head_but_not_every_head_nor_one_of_frances(
        inputs, model, attention) -> None:
    threshold, query = inputs.attend_threshold, inputs.attend_query
    found = _heads(attention, model, inputs.prompt, inputs.word, threshold, query)
    assert found, f"no head above {threshold} from position {query} of {inputs.prompt!r}: an empty answer would be right"
    assert len(found) < model.cfg.n_layers * model.cfg.n_heads
    assert query != -1  # the public checks' query position
    assert not found & _heads(attention, model, CLEAN_PROMPT, "France", threshold, -1)


def test_content_heads_on_the_held_out_prompts_places_a_head_and_differs_from_frances_in_both_lists(
        inputs, model, attention) -> None:
    threshold = inputs.content_threshold
    held = _split(attention, model, inputs.adjacent, inputs.apart, inputs.word, threshold)
    public = _split(attention, model, CLEAN_PROMPT, APART_PROMPT, "France", threshold)
    assert held["content"] or held["position"]
    assert held["content"] != public["content"] and held["position"] != public["position"]
