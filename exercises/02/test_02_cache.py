"""Run the model and cache every activation"""

from __future__ import annotations

import pytest
import torch

from grader.judging.compare import Tolerance, matches
from grader.judging.mistakes import Mistake
from grader.judging.prompts import CLEAN_PROMPT
from grader.judging.scoring import attempt

TOPIC = "cache"
PROMPTS = [CLEAN_PROMPT]  # the public checks' prompts; the hidden checks take theirs from `held_out`
HELD_OUT = "held-out"  # the name a hidden check's expected values are stored under
N_LOGITS = 20  # the reference's top logits stored per prompt: enough to pin the distribution


@pytest.mark.points(3)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_run_with_cache_returns_logits_and_cache(prompt, student, reference, model, run_cached, expected, grade):
    """run_with_cache returns [1, seq, d_vocab] logits (BOS included) and the activation cache"""
    _run_with_cache(prompt, prompt, student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(3)
def test_run_with_cache_on_a_held_out_prompt(held_out, student, reference, model, run_cached, expected, grade):
    """run_with_cache on a prompt the exercise never shows"""
    _run_with_cache(held_out.prompt, HELD_OUT, student, reference, model, run_cached, expected, grade)


def _run_with_cache(prompt, label, student, reference, model, run_cached, expected, grade):
    from transformer_lens import ActivationCache

    n_tokens = model.to_tokens(prompt).shape[1]
    answer = attempt(student.run_with_cache, model, prompt)
    if not (isinstance(answer, tuple) and len(answer) == 2):
        grade.wrong_kind("returns (logits, cache)", answer, "a pair (logits, cache)",
                         hint="return the pair that model.run_with_cache gives: logits, cache")
        return
    logits, cache = answer
    want_shape = [1, n_tokens, model.cfg.d_vocab]
    shape = list(logits.shape) if isinstance(logits, torch.Tensor) else None
    if shape != want_shape:
        grade.compare(
            "logits shape",
            shape if shape is not None else logits,
            want_shape,
            mistakes={
                Mistake("BOS token dropped",
                        "one token short: the BOS token was dropped; keep model.to_tokens' default"): [1, n_tokens - 1, model.cfg.d_vocab],
                Mistake("batch dimension missing", "the batch dimension is missing"): [n_tokens, model.cfg.d_vocab],
            },
            hint="return the logits of model.run_with_cache(model.to_tokens(prompt)) unchanged",
        )
    else:
        top = expected(
            f"top_logits[{label}]",
            lambda: _top_logits(reference.run_with_cache(model, prompt)[0]),
            atol=1e-3,
            rtol=1e-3,
        )
        ids, values = top.value
        right = grade.compare(
            "logits of the most likely next tokens",
            logits[0, -1, torch.as_tensor(ids)].detach().cpu(),
            values,
            tol=top.tol,
            hint="run the model on model.to_tokens(prompt), in compatibility mode, and return its logits unchanged",
        )
        grade.guard("logits shape", True, given=right)
    # Judged by what it holds: an empty ActivationCache, or one of another prompt, is one too.
    is_cache = isinstance(cache, ActivationCache)
    grade.check(
        "returns this prompt's ActivationCache",
        is_cache and _holds_the_run(cache, run_cached(prompt)[1], model),
        "the cache does not hold this prompt's run: its last block's resid_post is missing or differs from the "
        "model's own" if is_cache else f"expected an ActivationCache, got {type(cache).__name__}",
        hint="return the cache that model.run_with_cache(model.to_tokens(prompt)) gives, unchanged",
    )


def _holds_the_run(cache, own, model) -> bool:
    """Whether `cache` holds the last block's resid_post, at every position, that the grader's own run `own` has."""
    last = ("resid_post", model.cfg.n_layers - 1)
    try:
        theirs = cache[last]
    except (KeyError, IndexError, TypeError, ValueError):
        return False
    return matches(theirs, own[last], Tolerance(atol=1e-4, rtol=1e-4))


def _top_logits(logits: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    values, ids = logits[0, -1].topk(N_LOGITS)
    return ids.tolist(), values.detach().cpu()


@pytest.mark.points(1)
def test_count_cached_counts_every_activation(student, run_cached, grade):
    """count_cached gives the number of tensors in the cache"""
    _, cache = run_cached(CLEAN_PROMPT)
    want = len(cache)  # counted here, so a TransformerLens upgrade cannot make a right answer wrong
    got = student.count_cached(cache)
    grade.compare(
        "number of cached activations",
        got,
        want,
        hint="count the entries: an ActivationCache behaves like a dict (the number depends on "
        "the TransformerLens version, so don't copy it from anywhere)",
    )


@pytest.mark.points(2)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_top_prediction_is_the_next_token(prompt, student, reference, model, run_cached, expected, grade):
    """top_prediction gives the most likely next token as a string, leading space included"""
    _top_prediction(prompt, prompt, student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_top_prediction_on_a_held_out_prompt(held_out, student, reference, model, run_cached, expected, grade):
    """top_prediction on a prompt the exercise never shows"""
    _top_prediction(held_out.prompt, HELD_OUT, student, reference, model, run_cached, expected, grade)


def _top_prediction(prompt, label, student, reference, model, run_cached, expected, grade):
    logits, _ = run_cached(prompt)
    want = expected(f"top_prediction[{label}]", lambda: reference.top_prediction(model, logits))
    got = student.top_prediction(model, logits)
    grade.compare(
        "top prediction",
        got,
        want,
        mistakes={
            Mistake("leading space stripped from the token",
                    "the leading space is missing: GPT-2's tokens keep theirs (' Paris', not 'Paris'); decode with model.to_string"): want.value.strip(),
            Mistake("prediction read at the first position",
                    "that is the prediction at the first position: the next token is predicted at the last one, logits[0, -1]"):
                lambda: model.to_string(logits[0, 0].argmax().item()),
        },
        hint="argmax of logits[0, -1], decoded with model.to_string",
    )


@pytest.mark.points(3)
@pytest.mark.parametrize("k", [5, 3])
def test_top_k_gives_probabilities_most_probable_first(k, student, reference, model, run_cached, expected, grade):
    """top_k gives k (token, probability) pairs, most probable first"""
    _top_k(CLEAN_PROMPT, str(k), k, student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(3)
def test_top_k_on_a_held_out_prompt(held_out, student, reference, model, run_cached, expected, grade):
    """top_k on a prompt the exercise never shows"""
    _top_k(held_out.prompt, HELD_OUT, 4, student, reference, model, run_cached, expected, grade)


def _top_k(prompt, label, k, student, reference, model, run_cached, expected, grade):
    logits, _ = run_cached(prompt)
    want = expected(f"top_k[{label}]", lambda: reference.top_k(model, logits, k=k), atol=1e-4, rtol=1e-3)
    got = attempt(student.top_k, model, logits, k=k)
    if not (isinstance(got, list) and len(got) == k and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in got)):
        grade.wrong_kind("returns a list of k (token, probability) pairs", got, f"a list of {k} pairs",
                         hint=f"return [(token string, probability), ...] with exactly k = {k} pairs")
        return
    grade.compare("tokens", [t for t, _ in got], [t for t, _ in want.value],
                  hint="most probable first: topk sorts from the largest")
    last = logits[0, -1]
    grade.compare(
        "probabilities",
        [float(p) for _, p in got],
        [p for _, p in want.value],
        tol=want.tol,
        mistakes={
            Mistake("logits taken for probabilities",
                    "these are logits, not probabilities: apply softmax first"): lambda: last.topk(k).values.tolist(),
            Mistake("log_softmax instead of softmax",
                    "these are log-probabilities: use softmax, not log_softmax"): lambda: last.log_softmax(-1).topk(k).values.tolist(),
        },
        hint="softmax over the vocabulary at the last position",
    )


@pytest.mark.points(3)
@pytest.mark.parametrize("position", [-1, 2])
def test_residual_norms_follow_the_stream(position, student, reference, model, run_cached, expected, grade):
    """residual_norms gives the norm of resid_pre at every layer, then the final resid_post"""
    _residual_norms(CLEAN_PROMPT, str(position), position, student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(3)
def test_residual_norms_on_a_held_out_prompt(held_out, student, reference, model, run_cached, expected, grade):
    """residual_norms on a prompt the exercise never shows"""
    # At the country: the stream there has read it. A position before it may hold what the public
    # prompt's does ("The capital city of ..." begins as "The capital of France" does), and so its
    # stored norms.
    country = [t.strip() for t in model.to_str_tokens(held_out.prompt)].index(held_out.word)
    _residual_norms(held_out.prompt, HELD_OUT, country, student, reference, model, run_cached, expected, grade)


def _residual_norms(prompt, label, position, student, reference, model, run_cached, expected, grade):
    _, cache = run_cached(prompt)
    want = expected(f"residual_norms[{label}]", lambda: reference.residual_norms(cache, position), atol=1e-3, rtol=1e-4)
    got = student.residual_norms(cache, position)
    n_layers = model.cfg.n_layers

    def norms(name: str, layers: range, pos: int) -> torch.Tensor:
        return torch.stack([cache[name, layer][0, pos].norm() for layer in layers])

    grade.compare(
        f"norms at position {position}",
        got,
        want,
        mistakes={
            Mistake("final resid_post left out",
                    "the final resid_post is missing: n_layers + 1 norms are expected"): lambda: norms("resid_pre", range(n_layers), position),
            Mistake("resid_post read instead of resid_pre",
                    "these are resid_post norms of every layer: start from resid_pre of layer 0"): lambda: norms("resid_post", range(n_layers), position),
            Mistake("position argument ignored", "wrong position: use the `position` argument"): lambda: torch.cat(
                [norms("resid_pre", range(n_layers), -1), norms("resid_post", range(n_layers - 1, n_layers), -1)]
            ),
        },
        hint="torch.stack of cache['resid_pre', layer][0, position].norm() for each layer, then the last resid_post",
        axes=(("resid_pre of layer ..., then the final resid_post",
               [f"L{layer}" for layer in range(n_layers)] + ["final"]),),
    )
