"""A sparse autoencoder, written by hand"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest
import torch

from grader.judging.compare import Tolerance, matches
from grader.judging.mistakes import Mistake
from grader.judging.prompts import CLEAN_PROMPT
from grader.judging.pictures import reference_heatmap
from grader.sandbox.client import Handle
from grader.grading.session import session_of
from grader.toy import sae as ref
from grader.toy.corpus import generate

TOPIC = "sae"
SAE_TOL = dict(atol=1e-4, rtol=1e-4)
PARAMETER_HINT = ("the SAE needs four nn.Parameters named W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in] "
                  "and b_dec [d_in], and nothing else in its state_dict")
# top_activating_tokens: short texts of the kinds the toy model was trained on (the README shows
# them), and held-out ones the exercise never shows.
TOP_PROMPTS = [
    "The capital of France is Paris.",
    "In Japan, the capital is Tokyo.",
    "Berlin is a city in Germany.",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "The small cat sat on the table.",
    "Egypt's capital is Cairo.",
    "Anna walked to the park with a book.",
    "The capital city of Peru is Lima.",
]
IOI_PROMPT = "When Mary and John went to the store, John gave a drink to"
UNIT_SIZES = {"small": (3, 5), "model": (None, 24)}  # (d_in, d_sae); None: the model's d_model


# ---- what the grader sets up, and its own math ----


def _weights(d_in: int, d_sae: int, seed: int) -> dict[str, torch.Tensor]:
    """Parameters chosen so that every named mistake gives another answer: a negative encoder bias
    (ReLU before or after it differs), a decoder bias far from zero (forgetting it shows), and
    W_enc unrelated to W_dec."""
    generator = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_sae, d_in, generator=generator)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    return {
        "W_enc": torch.randn(d_in, d_sae, generator=generator) / d_in**0.5,
        "b_enc": torch.randn(d_sae, generator=generator) * 0.3 - 0.3,
        "W_dec": W_dec,
        "b_dec": torch.randn(d_in, generator=generator) * 0.5,
    }


def _inputs(case: str, model, held_out: torch.Tensor, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(weights, x) of a unit case: a tiny one with random x, and one on the model's activations."""
    d_in, d_sae = UNIT_SIZES[case]
    if d_in is None:
        x = held_out[7:15].cpu()  # 8 rows: not d_in, not d_sae, so a wrong axis shows
        return _weights(x.shape[1], d_sae, seed), x
    return _weights(d_in, d_sae, seed), torch.randn(6, d_in, generator=torch.Generator().manual_seed(seed + 50))


def _on(device: str, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in params.items()}


@pytest.fixture(scope="module")
def activations(request: pytest.FixtureRequest) -> dict[str, torch.Tensor]:
    """The grader's own activations of the graded model: to train on, and held out to judge by."""
    session = session_of(request.config)
    return session.remembered("sae activations", lambda: {"train": ref.training_activations(session.model),
                                                          "held_out": ref.held_out_activations(session.model)})


@pytest.fixture(scope="module")
def shipped(request: pytest.FixtureRequest, model_id: str) -> dict[str, torch.Tensor]:
    """The reference SAE (toy-gpt2's shipped one; see grader.toy.sae.reference_sae)."""
    return ref.reference_sae(session_of(request.config).model, model_id)


def _reference_sae(reference, params: dict[str, torch.Tensor], device: str = "cpu"):
    d_in, d_sae = params["W_enc"].shape
    sae = reference.SparseAutoencoder(d_in, d_sae)
    sae.load_state_dict(params)
    return sae.to(device)


def _require(grade, passed: bool, name: str, message: str, hint: str) -> bool:
    """A precondition of the graded answer (an nn.Module came back, a Figure came back): recorded
    only when it fails, since an answer that does nothing meets it too."""
    if not passed:
        grade.check(name, False, message, hint=hint)
    return passed


def _student_sae(student, grade, params: dict[str, torch.Tensor], device: str) -> Handle | None:
    """The student's own SparseAutoencoder, holding the grader's weights; None (and a failed check
    saying why) when it cannot take them."""
    d_in, d_sae = params["W_enc"].shape
    sae = student.SparseAutoencoder(d_in, d_sae)
    if not _require(grade, getattr(sae, "kind", None) == "model", "SparseAutoencoder(d_in, d_sae) is an nn.Module",
                    f"SparseAutoencoder(...) gave {getattr(sae, 'type_name', type(sae).__name__)}",
                    "class SparseAutoencoder(nn.Module), with super().__init__() in __init__"):
        return None
    try:
        sae.call_method("load_state_dict", params)
        sae = sae.call_method("to", device)
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        grade.check("takes the grader's weights", False, f"load_state_dict failed: {str(exc)[:400]}", hint=PARAMETER_HINT)
        return None
    return sae


def _parameters(sae: Handle) -> dict[str, Any]:
    """The SAE's state_dict, fetched as plain tensors (a student's Parameter subclass arrives as its
    data); {} when what comes back is not a dict."""
    params = sae.call_method("state_dict")
    return params if isinstance(params, dict) else {}


# ---- SparseAutoencoder ----


@pytest.mark.points(2)
def test_sparse_autoencoder_starts_with_unit_decoder_rows_and_a_tied_encoder(student, grade):
    """SparseAutoencoder(d_in, d_sae) has the four parameters, unit-norm decoder rows, W_enc = W_dec.T"""
    d_in, d_sae = 24, 40
    sae = student.SparseAutoencoder(d_in, d_sae)
    if not _require(grade, getattr(sae, "kind", None) == "model", "an nn.Module",
                    f"SparseAutoencoder(...) gave {getattr(sae, 'type_name', type(sae).__name__)}",
                    "class SparseAutoencoder(nn.Module), with super().__init__() in __init__"):
        return
    params = _parameters(sae)
    problems = ref.parameter_problems(params, d_in, d_sae)
    extra = sorted(set(params) - set(ref.PARAMETER_NAMES))
    if problems or extra:
        grade.check("the four parameters", False, "; ".join(problems + [f"unexpected entries {extra}"] * bool(extra)),
                    hint=PARAMETER_HINT)
        return
    norms = params["W_dec"].norm(dim=-1)
    unit_rows = grade.compare(
        "norm of each decoder row (each latent's direction)", norms, torch.ones(d_sae), tol=Tolerance(1e-4, 1e-4),
        mistakes={Mistake("columns normalised instead of rows",
                          "the columns have unit norm, not the rows: W / W.norm(dim=-1, keepdim=True) for W [d_sae, d_in]"):
                  lambda: params["W_dec"] / params["W_dec"].norm(dim=0, keepdim=True)},
        hint="W_dec = torch.randn(d_sae, d_in), divided by W_dec.norm(dim=-1, keepdim=True)")
    random_rows = bool(torch.linalg.matrix_rank(params["W_dec"].double()) == min(d_in, d_sae))
    grade.check("decoder rows point in different directions", random_rows,
                "the decoder's rows are not linearly independent: they were not drawn at random",
                hint="draw W_dec with torch.randn, then normalise its rows")
    tied = matches(params["W_enc"], params["W_dec"].T, Tolerance(1e-6, 1e-5))
    grade.guard("W_enc is W_dec transposed", tied, "W_enc is not W_dec.T", given=unit_rows and random_rows,
                hint="self.W_enc = nn.Parameter(W_dec.T.clone())")


@pytest.mark.points(2)
@pytest.mark.parametrize("case", list(UNIT_SIZES))
def test_encode_is_relu_of_the_centred_input(case, student, reference, model, device, activations, expected, grade):
    """encode(x) = ReLU((x - b_dec) @ W_enc + b_enc), with the grader's weights"""
    params, x = _inputs(case, model, activations["held_out"], seed=1)
    want = expected(f"encode[{case}]", lambda: _reference_sae(reference, params).encode(x).detach(), **SAE_TOL)
    sae = _student_sae(student, grade, params, device)
    if sae is None:
        return
    got = sae.call_method("encode", x)
    W_enc, b_enc, W_dec, b_dec = (params[k] for k in ref.PARAMETER_NAMES)
    grade.compare(
        "latents",
        got,
        want,
        mistakes={
            Mistake("ReLU before the encoder bias",
                    "the ReLU comes before the encoder bias: ReLU((x - b_dec) @ W_enc + b_enc), with b_enc inside"):
                torch.relu((x - b_dec) @ W_enc) + b_enc,
            Mistake("b_dec not subtracted",
                    "b_dec is not subtracted: the encoder reads x - b_dec"): torch.relu(x @ W_enc + b_enc),
            Mistake("b_dec added instead of subtracted",
                    "b_dec is added: the encoder reads x - b_dec"): torch.relu((x + b_dec) @ W_enc + b_enc),
            Mistake("ReLU left out", "there is no ReLU: latents are never negative"): (x - b_dec) @ W_enc + b_enc,
            Mistake("decoder matrix used to encode",
                    "that is the decoder's matrix: encode with W_enc, [d_in, d_sae]"): torch.relu((x - b_dec) @ W_dec.T + b_enc),
        },
        hint="torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)",
    )


@pytest.mark.points(2)
def test_decode_and_forward_rebuild_the_input(student, reference, model, device, activations, expected, grade):
    """decode(f) = f @ W_dec + b_dec; forward(x) = (decode(encode(x)), encode(x))"""
    params, x = _inputs("model", model, activations["held_out"], seed=2)
    latents = torch.relu(torch.randn(x.shape[0], params["W_dec"].shape[0], generator=torch.Generator().manual_seed(5)))
    want_decoded = expected("decode", lambda: _reference_sae(reference, params).decode(latents).detach(), **SAE_TOL)
    want_forward = expected("forward", lambda: [t.detach() for t in _reference_sae(reference, params)(x)], **SAE_TOL)
    sae = _student_sae(student, grade, params, device)
    if sae is None:
        return
    W_dec, b_dec = params["W_dec"], params["b_dec"]
    grade.compare("decode(f)", sae.call_method("decode", latents), want_decoded,
                  mistakes={Mistake("b_dec left out of decode", "b_dec is missing: f @ W_dec + b_dec"): latents @ W_dec,
                            Mistake("ReLU in decode",
                                    "decode has a ReLU: only encode has one"): torch.relu(latents @ W_dec + b_dec)},
                  hint="f @ self.W_dec + self.b_dec")
    got = sae.call_method("forward", x)
    reconstruction, encoded = want_forward.value
    grade.compare("forward(x) = (reconstruction, latents)", list(got) if isinstance(got, tuple) else got,
                  [reconstruction, encoded], tol=want_forward.tol,
                  mistakes={Mistake("(latents, reconstruction) order",
                                    "the order is (reconstruction, latents)"): [encoded, reconstruction],
                            Mistake("only one of the two returned",
                                    "forward returns both: (reconstruction, latents)"): reconstruction},
                  hint="latents = self.encode(x); return self.decode(latents), latents")


# ---- the loss ----


def _loss_terms(reconstruction: torch.Tensor, latents: torch.Tensor, x: torch.Tensor, l1_coeff: float) -> dict[str, float]:
    squared = float(((reconstruction - x) ** 2).sum(-1).mean())
    l1 = float(latents.abs().sum(-1).mean())
    return {"reconstruction": squared, "l1": l1, "total": squared + l1_coeff * l1}


@pytest.mark.points(3)
def test_sae_loss_sums_over_features_and_averages_over_the_batch(student, reference, model, device, activations, expected, grade):
    """sae_loss gives the squared error, the L1 of the latents and their weighted sum"""
    params, x = _inputs("model", model, activations["held_out"], seed=3)
    l1_coeff = 0.37
    want = expected("sae_loss", lambda: {k: float(v.detach()) for k, v in
                                         reference.sae_loss(_reference_sae(reference, params), x, l1_coeff).items()},
                    **SAE_TOL)
    sae = _student_sae(student, grade, params, device)
    if sae is None:
        return
    got = student.sae_loss(sae, x, l1_coeff)
    keys = ("reconstruction", "l1", "total")
    if not _require(grade, isinstance(got, dict) and set(keys) <= set(got), "a dict with 'reconstruction', 'l1' and 'total'",
                    f"sae_loss returned {str(got)[:200]}",
                    'return {"reconstruction": ..., "l1": ..., "total": ...}, each a scalar tensor'):
        return
    # sae_loss runs the student's own SAE: judge it on what that SAE computes, so that a slip in
    # encode or decode (graded above) is not charged twice.
    latents = sae.call_method("encode", x)
    reconstruction = sae.call_method("decode", latents)
    target, note, used = want.value, "", ref.encode(params, x)
    # Only an encode that does something: latents of zeros would make a loss of zeros "right".
    if isinstance(latents, torch.Tensor) and isinstance(reconstruction, torch.Tensor) and bool((latents > 0).any()):
        own = _loss_terms(reconstruction.cpu().float(), latents.cpu().float(), x, l1_coeff)
        if not matches(own, target, want.tol):
            target, note, used = own, " (of what your own encode and decode give)", latents.cpu().float()
    batch, d_in, d_sae = x.shape[0], x.shape[1], params["W_dec"].shape[0]
    value = {key: _scalar(got[key]) for key in keys}
    grade.compare(f"reconstruction{note}", value["reconstruction"], target["reconstruction"], tol=want.tol,
                  mistakes={Mistake("squared error averaged over d_in",
                                    "the squared error is averaged over d_in too (F.mse_loss): sum it over d_in, then take "
                                    "the mean over the batch"): target["reconstruction"] / d_in,
                            Mistake("squared error summed over the batch",
                                    "the squared error is summed over the batch: take the mean over the batch"):
                                target["reconstruction"] * batch},
                  hint="((reconstruction - x) ** 2).sum(-1).mean()")
    grade.compare(f"l1{note}", value["l1"], target["l1"], tol=want.tol,
                  mistakes={Mistake("L1 on the wrong axis",
                                    "the L1 is on the wrong axis: sum |latents| over the latents (dim -1), then take the mean "
                                    "over the batch"): target["l1"] * batch / d_sae,
                            Mistake("L1 averaged over the latents",
                                    "the L1 is averaged over the latents too: sum |latents| over the latents, mean over the "
                                    "batch"): target["l1"] / d_sae,
                            Mistake("squared L2 instead of L1",
                                    "that is the squared L2 norm: the penalty is the sum of |latents|"):
                                float((used**2).sum(-1).mean())},
                  hint="latents.abs().sum(-1).mean()")
    grade.compare(f"total{note}", value["total"], target["total"], tol=want.tol,
                  mistakes={Mistake("l1_coeff left out", "l1_coeff is missing: total = reconstruction + l1_coeff * l1"):
                            target["reconstruction"] + target["l1"],
                            Mistake("l1_coeff on the wrong term",
                                    "l1_coeff multiplies the wrong term: reconstruction + l1_coeff * l1"):
                            l1_coeff * target["reconstruction"] + target["l1"]},
                  hint="reconstruction + l1_coeff * l1")


def _scalar(value: Any) -> Any:
    """A one-element tensor or a number as a float; anything else as it is (the comparison says why)."""
    if isinstance(value, (torch.Tensor, int, float)) and not isinstance(value, bool) and torch.as_tensor(value).numel() == 1:
        return float(value)
    return value


# ---- decoder normalisation ----


@pytest.mark.points(1)
@pytest.mark.parametrize("case", ["scaled rows", "a zero row"])
def test_normalize_decoder_gives_unit_rows_in_place(case, student, reference, model, device, expected, grade):
    """normalize_decoder scales each decoder row to unit norm in place; a zero row stays zero"""
    params = _weights(12, 20, seed=4)
    generator = torch.Generator().manual_seed(6)
    params["W_dec"] = params["W_dec"] * torch.rand(20, 1, generator=generator).mul(3).add(0.2)  # rows of other norms
    if case == "a zero row":
        params["W_dec"][[3, 11]] = 0.0

    def reference_rows() -> torch.Tensor:
        sae = _reference_sae(reference, params)
        reference.normalize_decoder(sae)
        return sae.W_dec.detach()

    want = expected(f"normalize_decoder[{case}]", reference_rows, **SAE_TOL)
    sae = _student_sae(student, grade, params, device)
    if sae is None:
        return
    student.normalize_decoder(sae)
    got = _parameters(sae).get("W_dec")
    W_dec = params["W_dec"]
    rows_nan = W_dec / W_dec.norm(dim=-1, keepdim=True)
    grade.compare(
        "W_dec after normalize_decoder",
        got,
        want,
        mistakes={
            Mistake("columns normalised instead of rows",
                    "the columns were normalised: each latent's direction is a row of W_dec [d_sae, d_in], so norm(dim=-1)"):
                W_dec / W_dec.norm(dim=0, keepdim=True).clamp_min(1e-8),
            Mistake("zero row divided into NaN",
                    "a zero row became NaN (0 / 0): divide by norms.clamp_min(1e-8)"): rows_nan,
            Mistake("W_dec not changed in place",
                    "W_dec did not change: write into the parameter in place (sae.W_dec /= ..., under torch.no_grad())"): W_dec,
        },
        hint="with torch.no_grad(): sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)",
    )


# ---- training, judged by outcome ----


def _quality_hint(quality: ref.Quality) -> str:
    if not np.isfinite(quality.variance_explained):
        return "the trained parameters are not finite: is lr too large, or does the loss divide by zero?"
    if quality.mean_l0 < 1:
        return ("almost no latent fires: the L1 penalty outweighs the reconstruction; sae_loss must sum the squared "
                "error over d_in (not average it), and b_dec should start at the activations' mean")
    return ("minimise sae_loss(...)['total'] with Adam for `steps` steps on random batches, b_dec started at the "
            "activations' mean, normalize_decoder after every step")


def _reference_quality(reference, activations: dict[str, torch.Tensor], d_sae: int, l1_coeff: float) -> dict[str, float]:
    """The reference train_sae's SAE on the same activations, judged as the student's is."""
    sae = reference.train_sae(activations["train"].clone(), d_sae, ref.STEPS, ref.LR, l1_coeff, ref.SEED, ref.BATCH_SIZE)
    quality = ref.measure({k: v.detach() for k, v in sae.state_dict().items()}, activations["held_out"])
    return {"variance_explained": quality.variance_explained, "mean_l0": quality.mean_l0, "dead_share": quality.dead_share}


def _unseen(activations: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The grader's activations moved by a random rotation and shift (and shuffled), drawn per
    grading run: an SAE that was not trained on them (the shipped one, or any precomputed one)
    explains nothing of them, while training is blind to the change (it keeps norms, and b_dec
    starts at the mean): the reference reaches its usual quality on them."""
    generator = torch.Generator().manual_seed(seed)
    train = activations["train"].cpu()
    d_in = train.shape[1]
    rotation, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=generator))
    shift = torch.randn(d_in, generator=generator) * train.std() * 2
    order = torch.randperm(len(train), generator=generator)
    device = activations["train"].device
    return {"train": (train[order] @ rotation + shift).to(device),
            "held_out": (activations["held_out"].cpu() @ rotation + shift).to(device)}


@pytest.mark.points(6)
def test_train_sae_learns_a_sparse_faithful_dictionary(student, reference, model, device, activations, expected, grade):
    """train_sae gives an SAE that reconstructs held-out activations with few latents, few of them dead"""
    l1_coeff = ref.l1_coeff_for(activations["train"])
    # The reference's figures are stored (or computed) on the grader's own activations; the student
    # trains on a copy moved by a transform drawn now, unknowable to any file a student can read.
    reference_activations = activations
    activations = _unseen(activations, int.from_bytes(os.urandom(8), "little"))
    train = activations["train"]
    d_in, d_sae = train.shape[1], ref.sae_width(train.shape[1])
    # Training is not bitwise the same on every machine: the stored figures are a bar, not an answer.
    reached = expected("train_sae quality", lambda: _reference_quality(reference, reference_activations, d_sae, l1_coeff),
                       atol=0.02, rtol=0.05)
    bar = ref.bar(ref.Quality(**reached.value, d_sae=d_sae))
    start = time.monotonic()
    sae = student.train_sae(train.clone(), d_sae, ref.STEPS, ref.LR, l1_coeff, ref.SEED, ref.BATCH_SIZE)
    seconds = time.monotonic() - start  # shown, not graded: wall time on shared cores is no measure of the code
    if not _require(grade, getattr(sae, "kind", None) == "model", "returns the trained SparseAutoencoder",
                    f"train_sae returned {getattr(sae, 'type_name', type(sae).__name__)}", "return sae"):
        return
    # Judged from its parameters, with the grader's own encode and decode: what its forward says
    # about itself does not count.
    params = _parameters(sae)
    problems = ref.parameter_problems(params, d_in, d_sae)
    if not _require(grade, not problems, "an SAE of the asked size", "; ".join(problems), PARAMETER_HINT):
        return
    quality = ref.measure({k: params[k] for k in ref.PARAMETER_NAMES}, activations["held_out"])
    summary = (f"on held-out activations: {quality.variance_explained:.3f} of the variance explained, "
               f"{quality.mean_l0:.1f} latents active per token, {quality.dead_share:.1%} dead ({seconds:.1f} s); "
               f"the reference train_sae: {reached.value['variance_explained']:.3f}, {reached.value['mean_l0']:.1f}, "
               f"{reached.value['dead_share']:.1%}")
    faithful = quality.variance_explained >= bar.min_variance_explained
    sparse = quality.mean_l0 <= bar.max_mean_l0
    # One check: an SAE that is not sparse (the identity dictionary, training without the L1) or
    # not faithful (all latents silent) is no answer at all.
    good = grade.check(
        bar.describe(), faithful and sparse, summary, weight=4,
        hint=_quality_hint(quality) if not faithful else
        "the L1 penalty is not doing its job: sae_loss's 'total' must add l1_coeff * (|latents| summed over the "
        "latents, mean over the batch), and training must minimise 'total'")
    grade.guard(f"at most {bar.max_dead_share:.0%} of the latents dead", quality.dead_share <= bar.max_dead_share,
                summary, given=good,
                hint="start b_dec at the activations' mean and W_enc at W_dec.T, and normalise the decoder after "
                     "every step: latents that never fire get no gradient")


# ---- looking at latents ----


def _latent_on(params: dict[str, torch.Tensor], model, prompt: str, word: str) -> int:
    """The latent most active on `word` in `prompt`, from the grader's own math."""
    tokens = model.to_tokens(prompt)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=ref.HOOK_POINT)
    latents = ref.encode(_on(str(tokens.device), params), cache[ref.HOOK_POINT][0].float())
    words = [t.strip() for t in model.to_str_tokens(prompt)]
    return int(latents[words.index(word)].argmax())


# case -> (prompts, (prompt, word) that picks the latent, k). In the second the latent is the one
# most active on the BOS token: it fires on text too, far more weakly, so an answer that keeps
# position 0 puts BOS at the top of its list. The hidden check does the same on text drawn with a
# seed from `held_out`.
BOS_CASE = ((IOI_PROMPT, "<|endoftext|>"), 5)
TOP_CASES = {
    "country": (TOP_PROMPTS, (CLEAN_PROMPT, "France"), 8),
    "text": (generate(30, seed=11), *BOS_CASE),
}


@torch.no_grad()
def _top_tokens_variant(params, model, prompts, latent, k, hook=ref.HOOK_POINT, skip_bos=True, descending=True):
    """What a slip in top_activating_tokens gives: another hook point, BOS kept, ascending order."""
    found = []
    for prompt in prompts:
        tokens = model.to_tokens(prompt)
        _, cache = model.run_with_cache(tokens, names_filter=hook)
        values = ref.encode(_on(str(tokens.device), params), cache[hook][0].float())[:, latent].tolist()
        strings = model.to_str_tokens(tokens[0])
        found += [(s, v) for position, (s, v) in enumerate(zip(strings, values)) if v > 0 and (position or not skip_bos)]
    return sorted(found, key=lambda item: item[1], reverse=descending)[:k]


def _same_ranking(got: Any, want: list, tol: Tolerance) -> bool:
    """`got` is `want` up to the order of tokens whose activations are within tolerance of each
    other (two runs may order near-ties differently)."""
    if not isinstance(got, (list, tuple)) or len(got) != len(want):
        return False
    try:
        pairs = [(str(t), float(v)) for t, v in got]
    except (TypeError, ValueError):
        return False
    if not matches([v for _, v in pairs], [float(v) for _, v in want], tol):
        return False
    for index, (token, _) in enumerate(pairs):
        ties = {str(t) for t, v in want if abs(float(v) - float(want[index][1])) <= tol.atol + tol.rtol * abs(float(v))}
        if token not in ties:
            return False
    return True


@pytest.mark.points(2)
@pytest.mark.parametrize("case", list(TOP_CASES))
def test_top_activating_tokens_ranks_the_tokens_a_latent_reads(case, student, reference, model, device, shipped,
                                                                 expected, grade):
    """top_activating_tokens lists the tokens a latent fires on most, highest first, BOS left out"""
    _top_activating_tokens(case, TOP_CASES[case], student, reference, model, device, shipped, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_top_activating_tokens_on_held_out_text(held_out, student, reference, model, device, shipped, expected, grade):
    """top_activating_tokens on text the exercise never shows"""
    _top_activating_tokens("held-out", (generate(30, seed=held_out.sae_text_seed), *BOS_CASE),
                           student, reference, model, device, shipped, expected, grade)


def _top_activating_tokens(case, inputs, student, reference, model, device, shipped, expected, grade):
    prompts, (prompt, word), k = inputs
    latent = _latent_on(shipped, model, prompt, word)
    want = expected(f"top_tokens[{case}]",
                    lambda: [[t, float(v)] for t, v in reference.top_activating_tokens(
                        _reference_sae(reference, shipped, device), model, list(prompts), latent, k)],
                    atol=1e-3, rtol=1e-3)
    sae = _student_sae(student, grade, shipped, device)
    if sae is None:
        return
    got = student.top_activating_tokens(sae, model, list(prompts), latent, k)
    name = f"latent {latent}'s top {k} tokens"
    if _same_ranking(got, want.value, want.tol):
        grade.check(name, True)
        return
    grade.compare(
        name,
        got,
        want,
        mistakes=lambda w: {
            Mistake("BOS position included",
                    "position 0 is the BOS token: leave it out"): lambda: _listed(_top_tokens_variant(shipped, model, prompts, latent, k, skip_bos=False)),
            Mistake("sorted lowest first",
                    "highest first: sort with reverse=True"): lambda: _listed(_top_tokens_variant(shipped, model, prompts, latent, k, descending=False)),
            Mistake("embeddings read instead of the SAE's hook",
                    f"that reads blocks.0.hook_resid_pre (the embeddings): the SAE was trained on {ref.HOOK_POINT}"):
                lambda: _listed(_top_tokens_variant(shipped, model, prompts, latent, k, hook="blocks.0.hook_resid_pre")),
            Mistake("last layer read instead of the SAE's hook",
                    f"that reads the last layer's resid_post: the SAE was trained on {ref.HOOK_POINT}"):
                lambda: _listed(_top_tokens_variant(shipped, model, prompts, latent, k,
                                                    hook=f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")),
        },
        hint=f"for each prompt: run_with_cache, sae.encode(cache['{ref.HOOK_POINT}'][0])[:, latent], keep "
             "(token, value) where value > 0 from position 1 on; then sort, highest first, and keep k "
             "(this uses your encode: if its check fails, fix it first)",
    )


def _listed(pairs: list[tuple[str, float]]) -> list[list[Any]]:
    return [[t, v] for t, v in pairs]


@pytest.mark.points(3)
def test_plot_latent_activations_draws_latents_by_tokens(student, model, run_cached, shipped, grade):
    """plot_latent_activations draws the chosen latents (rows) along the tokens (columns), labelled"""
    _, cache = run_cached(CLEAN_PROMPT)
    acts = cache[ref.HOOK_POINT][0, 1:].float()  # BOS left out: its outlier activations would wash out the colours
    latent_acts = ref.encode(_on(str(acts.device), shipped), acts).detach().cpu()
    str_tokens = list(model.to_str_tokens(CLEAN_PROMPT))[1:]
    chosen = [_latent_on(shipped, model, CLEAN_PROMPT, word) for word in ("capital", "of", "France", "is")]
    latents = list(dict.fromkeys(chosen))  # distinct, in order
    picture = latent_acts[:, latents].T
    title = "Latents along 'The capital of France is'"
    y_labels = [f"latent {latent}" for latent in latents]
    answer = student.plot_latent_activations(latent_acts.clone(), str_tokens, list(latents), title=title)
    reference_picture = reference_heatmap(picture, str_tokens, y_labels, f"reference: {title}", group="latents",
                                         xlabel="Token", ylabel="Latent")
    fig = grade.student_figure(answer, reference_picture)
    if fig is None:
        return
    image_axes = [ax for ax in fig.axes if ax.images]
    if not grade.check("draws an image", bool(image_axes), "no imshow/matshow image in the figure",
                       hint="ax.imshow(latent_acts[:, latents].T)"):
        return
    ax = image_axes[0]
    data = torch.as_tensor(np.asarray(ax.images[0], dtype=float)).float()
    grade.compare("image data", data, picture, tol=Tolerance(1e-4, 1e-4),
                  mistakes={Mistake("transposed image",
                                    "the image is transposed: one row per latent, one column per token"): picture.T,
                            Mistake("every latent drawn",
                                    "every latent is drawn: keep only latent_acts[:, latents]"): latent_acts.T,
                            Mistake("latents indexed as rows",
                                    "that is latent_acts[latents]: the latents are columns, index [:, latents]"):
                                lambda: latent_acts[[i for i in latents if i < latent_acts.shape[0]]]},
                  hint="imshow(latent_acts[:, latents].T): rows are latents, columns tokens",
                  axes=(("latent", y_labels), ("token", str_tokens)))
    grade.compare("x tick labels (tokens)", ax.xticklabels, str_tokens, hint="ax.set_xticks(range(len(str_tokens)), str_tokens)")
    grade.compare("y tick labels (latents)", ax.yticklabels, y_labels,
                  mistakes={Mistake("rows not labelled by latent",
                                    "label each row f'latent {i}'"): [str(latent) for latent in latents]},
                  hint="ax.set_yticks(range(len(latents)), [f'latent {i}' for i in latents])")
    grade.compare("axis labels", [ax.xlabel, ax.ylabel], ["Token", "Latent"],
                  mistakes={Mistake("axis labels swapped",
                                    "the axis labels are swapped: tokens go along x"): ["Latent", "Token"]},
                  hint="ax.set_xlabel('Token') and ax.set_ylabel('Latent')")
    grade.check("has a colour bar", len(fig.axes) >= 2, "the figure has no colour bar", hint="fig.colorbar(image, ax=ax)")
    grade.check("shows the title", title in (ax.title, fig.suptitle),
                f"expected the title {title!r}, got {ax.title!r}", hint="ax.set_title(title) when a title is given")
