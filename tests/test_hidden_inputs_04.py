"""Exercise 04's hidden patching check cannot be passed with the public check's stored map, on the practice model.

On a 2-layer model the patching map of a country pair is little more than a 1 at the country's
position in the first layer and a 1 at the last position in the second: the same for every pair
written in one template. So the held-out pair (the fixed DEFAULT, and those a bundle's
--hidden-seed draws) is written in another template, with the country elsewhere counted from the
start and from the end, and its map is not the public map, nor that map moved to the pair's length.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from grader.judging.compare import Tolerance, matches
from grader.judging.held_out import DEFAULT, HeldOut
from grader.judging.prompts import CLEAN_PROMPT
from tests.test_cross_checks import solution

REPO = Path(__file__).resolve().parent.parent
SEEDS = ("spring term", "autumn term")
PUBLIC_WORD = "France"


@pytest.fixture(scope="module")
def model():
    from grader.models import MODELS, load_model

    torch.set_num_threads(1)
    return load_model(MODELS["toy-gpt2"], "cpu")


@pytest.fixture(scope="module", params=["DEFAULT", *SEEDS])
def inputs(request, model) -> HeldOut:
    if request.param == "DEFAULT":
        return DEFAULT
    from grader.course.hidden_inputs import draw

    return draw(request.param, model)


def _public_map() -> tuple[torch.Tensor, Tolerance]:
    """The map the release stores for the public pair, and its tolerance."""
    stored = json.loads((REPO / "fixtures" / "toy-gpt2" / "04.json").read_text())["checks"]["patching[France-Italy]"]
    return torch.tensor(stored["value"]["tensor"]), Tolerance(stored["atol"], stored["rtol"])


def _moved(public: torch.Tensor, length: int, right: bool) -> torch.Tensor:
    """`public` in a map of `length` positions, kept at the start or at the end."""
    kept = min(length, public.shape[1])
    moved = torch.zeros(public.shape[0], length)
    if right:
        moved[:, -kept:] = public[:, -kept:]
    else:
        moved[:, :kept] = public[:, :kept]
    return moved


def _country_at(model, prompt: str, word: str) -> tuple[int, int]:
    """The word's position counted from the start and from the end."""
    words = [t.strip() for t in model.to_str_tokens(prompt)]
    start = words.index(word)
    return start, start - len(words)


def test_the_pair_puts_its_country_elsewhere_than_the_public_pair(inputs, model) -> None:
    clean, corrupted = model.to_tokens(inputs.clean), model.to_tokens(inputs.corrupted)
    assert clean.shape == corrupted.shape  # patching pastes position by position
    public_start, public_end = _country_at(model, CLEAN_PROMPT, PUBLIC_WORD)
    start, end = _country_at(model, inputs.corrupted, inputs.word)  # the corrupted country is the prompt's
    assert start != public_start and end != public_end, (inputs.corrupted, start, end)


def test_the_pairs_map_is_not_the_public_map_moved_to_its_length(inputs, model) -> None:
    patching = solution("04", "patching")
    clean_tokens, corrupted_tokens = model.to_tokens(inputs.clean), model.to_tokens(inputs.corrupted)
    correct, incorrect = (model.to_single_token(a) for a in inputs.answers)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens)
    want = patching.patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect)
    public, tol = _public_map()
    for right in (False, True):
        copied = _moved(public, corrupted_tokens.shape[1], right)
        assert not matches(copied, want, tol), f"{inputs.clean!r}: the public map, kept at the {'end' if right else 'start'}"
