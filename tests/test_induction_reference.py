"""Exercise 06's reference scores agree with TransformerLens's own head detector.

``transformer_lens.head_detector.detect_head`` (TransformerLens 4.3, compatibility mode) scores a
head by the share of all its attention, over every query of one prompt, that falls on the cells of
a detection pattern it builds from the tokens. On ``[BOS, w_1..w_n, w_1..w_n]`` with n distinct
words, the induction pattern marks exactly the n cells (q, q - n + 1) of the second copy, so
detect_head = (sum over those cells) / (2n + 1) = induction_scores * n / (2n + 1). The previous-token
pattern marks (q, q - 1) for q >= 1: the reference leaves out q = 1 (its previous token is BOS).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from grader.toy.corpus import NAMES
from tests.test_cross_checks import solution


@pytest.fixture(scope="module")
def model():
    from grader.models import MODELS, load_model

    torch.set_num_threads(1)
    return load_model(MODELS["toy-gpt2"], "cpu")


@pytest.fixture(scope="module")
def induction():
    return solution("06", "induction")


@pytest.fixture(scope="module")
def prompt(model) -> tuple[str, torch.Tensor]:
    """Distinct single-token names, twice: a string that tokenizes to exactly the tokens scored."""
    words = NAMES[:15]
    text = "".join(f" {w}" for w in words) * 2
    tokens = model.to_tokens(text)
    assert tokens.shape[1] == 1 + 2 * len(words) and len(set(tokens[0, 1:16].tolist())) == 15
    return text, tokens


def test_induction_scores_agree_with_detect_head(model, induction, prompt) -> None:
    from transformer_lens.head_detector import detect_head

    text, tokens = prompt
    n = (tokens.shape[1] - 1) // 2
    detected = detect_head(model, text, "induction_head")  # [n_layers, n_heads]
    ours = induction.induction_scores(model, tokens)
    torch.testing.assert_close(ours * n / tokens.shape[1], detected.float(), atol=1e-4, rtol=1e-3)
    assert induction.induction_heads(ours) == induction.induction_heads(detected * tokens.shape[1] / n)


def test_previous_token_scores_agree_with_detect_head(model, induction, prompt) -> None:
    from transformer_lens.head_detector import detect_head

    text, tokens = prompt
    length = tokens.shape[1]
    detected = detect_head(model, text, "previous_token_head").float()
    _, cache = model.run_with_cache(tokens)
    from_bos = torch.stack([cache["pattern", layer][0, :, 1, 0] for layer in range(model.cfg.n_layers)])  # q = 1
    ours = induction.previous_token_scores(model, tokens)
    torch.testing.assert_close((ours * (length - 2) + from_bos) / length, detected, atol=1e-4, rtol=1e-3)
