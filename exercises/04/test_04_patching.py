"""Causal evidence with activation patching"""

from __future__ import annotations

import pytest
import torch

from grader.judging.compare import matches
from grader.judging.mistakes import Mistake
from grader.judging.prompts import CLEAN_ANSWERS, CLEAN_PROMPT, CORRUPTED_PROMPT
from grader.judging.pictures import MATCHES, reference_heatmap
from grader.student.executor import HookPointName
from grader.judging.scoring import attempt

TOPIC = "patching"
PAIRS = {
    "France-Italy": (CLEAN_PROMPT, CORRUPTED_PROMPT, CLEAN_ANSWERS),
}  # the hidden checks take a pair the exercise never shows from `held_out`
HELD_OUT = "held-out"  # the name a hidden check's expected values are stored under
LOGIT_TOL = dict(atol=1e-3, rtol=1e-3)


def _ids(model, answers: tuple[str, str]) -> tuple[int, int]:
    return model.to_single_token(answers[0]), model.to_single_token(answers[1])


@pytest.mark.points(2)
def test_logit_diff_compares_two_tokens_at_the_last_position(student, reference, model, run_cached, expected, grade):
    """logit_diff is logit(correct) - logit(incorrect) at the last position, averaged over the batch"""
    _logit_diff(PAIRS["France-Italy"], "", student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_logit_diff_on_a_held_out_pair(held_out, student, reference, model, run_cached, expected, grade):
    """logit_diff on a pair of prompts the exercise never shows"""
    _logit_diff((held_out.clean, held_out.corrupted, held_out.answers), f"@{HELD_OUT}",
                student, reference, model, run_cached, expected, grade)


def _logit_diff(pair, label, student, reference, model, run_cached, expected, grade):
    clean_prompt, corrupted_prompt, answers = pair
    clean_logits, _ = run_cached(clean_prompt)
    other_logits, _ = run_cached(corrupted_prompt)
    correct, incorrect = _ids(model, answers)
    want = expected(f"logit_diff[one]{label}", lambda: reference.logit_diff(clean_logits, correct, incorrect), **LOGIT_TOL)
    got = student.logit_diff(clean_logits, correct, incorrect)
    right = grade.compare(
        "one prompt",
        got,
        want,
        mistakes=lambda w: {
            Mistake("logit difference with its sign flipped", "the sign is flipped: correct minus incorrect"): -w,
            Mistake("logits read at the first position",
                    "that is the first position: the next token is predicted at the last, logits[:, -1]"):
                lambda: clean_logits[0, 0, correct] - clean_logits[0, 0, incorrect],
        },
        hint="logits[:, -1, correct] - logits[:, -1, incorrect], then .mean() over the batch",
    )
    grade.guard("a 0-dimensional tensor", isinstance(got, torch.Tensor) and got.dim() == 0,
                f"expected a 0-dimensional tensor, got {type(got).__name__} {tuple(getattr(got, 'shape', ()))}",
                hint="average over the batch with .mean()", given=right)
    batch = torch.cat([clean_logits, other_logits])  # [2, seq, d_vocab]: both prompts have as many tokens
    want_batch = expected(f"logit_diff[batch]{label}", lambda: reference.logit_diff(batch, correct, incorrect), **LOGIT_TOL)
    grade.compare("two prompts: the mean over the batch", student.logit_diff(batch, correct, incorrect), want_batch,
                  mistakes={Mistake("first prompt only, no mean over the batch",
                                    "that is the first prompt only: take the mean over the batch"): want.value},
                  hint="logits[:, -1, correct] - logits[:, -1, incorrect] is one value per prompt: take its .mean()")


@pytest.mark.points(4)
def test_patch_hook_pastes_one_position_and_leaves_the_clean_cache_alone(student, sandbox, model, run_cached, grade):
    """patch_hook copies the clean activation at one position into the corrupted run, nothing else"""
    _, clean_cache = run_cached(CLEAN_PROMPT)
    _, corrupted_cache = run_cached(CORRUPTED_PROMPT)
    name, position = f"blocks.{model.cfg.n_layers - 1}.hook_resid_pre", 4
    clean_before = clean_cache[name].clone()
    corrupted = corrupted_cache[name].clone()
    clean_there = sandbox.put(clean_cache)  # where the student's hook runs, so we can see if it writes into it
    hook = attempt(student.patch_hook, clean_there, position)
    if getattr(hook, "kind", None) != "callable":
        grade.wrong_kind("returns a hook function", hook, "a function",
                         hint="define a function hook(activation, hook) inside patch_hook and return it")
        return
    out = attempt(hook, corrupted.clone(), HookPointName(name=name))
    if not isinstance(out, torch.Tensor):
        grade.wrong_kind("the hook returns the activation", out, "a tensor",
                         hint="return activation at the end of the hook")
        return
    want = corrupted.clone()
    want[:, position] = clean_before[:, position]
    patched = grade.compare("patched activation", out, want, tol=None,
                            mistakes={Mistake("every position patched",
                                              "every position was patched: replace only [:, position]"): clean_before,
                                      Mistake("nothing patched",
                                              "nothing was patched: the hook must paste the clean activation at `position`"):
                                          corrupted},
                            hint="activation[:, position] = clean_cache[hook.name][:, position]",
                            axes=(("position", model.to_str_tokens(CORRUPTED_PROMPT)), ("d_model", None)))
    grade.guard("the clean cache is unchanged", torch.equal(clean_there.fetch()[name], clean_before),
                "the hook changed the clean cache in place",
                hint="write into the corrupted activation, never into clean_cache[hook.name] (it is read again "
                     "for the next position); use .clone() if you build a new tensor from it", given=patched)


@pytest.mark.points(6)
@pytest.mark.parametrize("pair", list(PAIRS))
def test_patch_residual_stream_measures_every_layer_and_position(pair, student, sandbox, reference, model, run_cached, expected, grade):
    """patch_residual_stream gives the normalised logit difference for every (layer, resid_pre position)"""
    _patch_residual_stream(pair, PAIRS[pair], student, sandbox, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(6)
def test_patch_residual_stream_on_a_held_out_pair(held_out, student, sandbox, reference, model, run_cached, expected, grade):
    """patch_residual_stream on a pair of prompts the exercise never shows"""
    _patch_residual_stream(HELD_OUT, (held_out.clean, held_out.corrupted, held_out.answers),
                           student, sandbox, reference, model, run_cached, expected, grade)


def _patch_residual_stream(pair, prompts, student, sandbox, reference, model, run_cached, expected, grade):
    clean_prompt, corrupted_prompt, answers = prompts
    correct, incorrect = _ids(model, answers)
    clean_tokens, corrupted_tokens = model.to_tokens(clean_prompt), model.to_tokens(corrupted_prompt)
    _, clean_cache = run_cached(clean_prompt)
    clean_before = {k: v.clone() for k, v in clean_cache.items() if "resid_pre" in k}

    def reference_result() -> torch.Tensor:
        _, fresh_cache = run_cached(clean_prompt)
        return reference.patch_residual_stream(model, clean_tokens, corrupted_tokens, fresh_cache, correct, incorrect)

    want = expected(f"patching[{pair}]", reference_result, **LOGIT_TOL)
    clean_there = sandbox.put(clean_cache)
    got = student.patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_there, correct, incorrect)
    left = sandbox.hooks_on_model()
    model.reset_hooks()  # so the mistake checks below measure the model, not a leftover hook
    seq_tokens = model.to_str_tokens(corrupted_prompt)
    right = grade.compare(
        "normalised logit differences",
        got,
        want,
        mistakes=lambda w: {
            Mistake("normalisation upside down",
                    "the normalisation is upside down: (patched - corrupted) / (clean - corrupted), "
                    "so that 0 = corrupted and 1 = clean"): 1 - w,
            **({Mistake("normalisation inverted",
                        "the normalisation is inverted: divide by (clean - corrupted), not by (patched - corrupted)"): got}
               if _is_reciprocal_of(got, w, want.tol) else {}),
            Mistake("all positions patched in one run",
                    "every position was patched at once: patch one position per run"): lambda: _patch_all_positions(
                model, clean_tokens, corrupted_tokens, clean_prompt, run_cached, correct, incorrect),
            Mistake("resid_post patched instead of resid_pre",
                    "that patches resid_post: the exercise patches blocks.{layer}.hook_resid_pre"): lambda: _patch_each(
                model, clean_tokens, corrupted_tokens, clean_prompt, run_cached, correct, incorrect, "hook_resid_post"),
        },
        hint="for each layer and position: run_with_hooks on the corrupted tokens with patch_hook at "
             "blocks.{layer}.hook_resid_pre, then normalise the logit difference",
        axes=(("layer", [f"L{l}" for l in range(model.cfg.n_layers)]), ("position", seq_tokens)),
    )
    # A wrong answer is drawn beside the reference in the failed check's picture of differences.
    grade.figure(reference_heatmap(want.value.float(), seq_tokens, [f"L{l}" for l in range(want.value.shape[0])],
                                   f"reference ({pair})", caption=MATCHES if right else "", group=pair,
                                   xlabel="position", ylabel="layer"))
    # Doing nothing leaves no hook and an untouched cache: these count with a right answer.
    grade.guard("no hook left on the model", not left, f"hooks still attached after the call: {left[:5]}",
                hint="use model.run_with_hooks (it removes its hooks), or call model.reset_hooks() afterwards",
                given=right)
    clean_after = clean_there.fetch()
    grade.guard("the clean cache is unchanged",
                all(torch.equal(clean_after[k], v) for k, v in clean_before.items()),
                "the clean cache was modified during patching",
                hint="the hook must write into the corrupted activation, not into the clean cache", given=right)


def _is_reciprocal_of(got, want: torch.Tensor, tol) -> bool:
    """Whether `got` is 1 / `want`. Compared as 1 / got, since where `want` is about 0 its
    reciprocal is float noise (or inf) that no two runs reproduce."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return False
    reciprocal = torch.where(torch.isfinite(got) & (got != 0), 1 / got.double(), torch.zeros((), dtype=torch.float64))
    return matches(reciprocal, want.double(), tol)


def _normalised(model, tokens, hooks, clean_diff, corrupted_diff, correct, incorrect) -> float:
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    diff = logits[0, -1, correct] - logits[0, -1, incorrect]
    return float((diff - corrupted_diff) / (clean_diff - corrupted_diff))


def _diffs(model, clean_tokens, corrupted_tokens, correct, incorrect) -> tuple[torch.Tensor, torch.Tensor]:
    clean, corrupted = model(clean_tokens), model(corrupted_tokens)
    return clean[0, -1, correct] - clean[0, -1, incorrect], corrupted[0, -1, correct] - corrupted[0, -1, incorrect]


@torch.no_grad()
def _patch_each(model, clean_tokens, corrupted_tokens, clean_prompt, run_cached, correct, incorrect, hook_name):
    """What patching `hook_name` one position at a time gives (to recognise the resid_post mistake)."""
    _, cache = run_cached(clean_prompt)
    clean_diff, corrupted_diff = _diffs(model, clean_tokens, corrupted_tokens, correct, incorrect)
    rows = []
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.{hook_name}"
        row = []
        for position in range(corrupted_tokens.shape[1]):
            def paste(activation, hook, position=position, name=name):
                activation[:, position] = cache[name][:, position]
                return activation
            row.append(_normalised(model, corrupted_tokens, [(name, paste)], clean_diff, corrupted_diff, correct, incorrect))
        rows.append(row)
    return torch.tensor(rows)


@torch.no_grad()
def _patch_all_positions(model, clean_tokens, corrupted_tokens, clean_prompt, run_cached, correct, incorrect):
    """What patching a whole layer's resid_pre at once gives, repeated along each row."""
    _, cache = run_cached(clean_prompt)
    clean_diff, corrupted_diff = _diffs(model, clean_tokens, corrupted_tokens, correct, incorrect)
    seq_len = corrupted_tokens.shape[1]
    rows = []
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_resid_pre"
        value = _normalised(model, corrupted_tokens, [(name, lambda activation, hook, name=name: cache[name].clone())],
                            clean_diff, corrupted_diff, correct, incorrect)
        rows.append([value] * seq_len)
    return torch.tensor(rows)
