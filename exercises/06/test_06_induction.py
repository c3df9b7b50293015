"""Induction heads"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from grader.judging.compare import Tolerance
from grader.judging.mistakes import Mistake
from grader.judging.pictures import reference_heatmap

TOPIC = "induction"
SCORE_TOL = dict(atol=1e-4, rtol=1e-3)  # attention weights are in [0, 1]
LOSS_TOL = dict(atol=1e-3, rtol=1e-3)
MEAN_TOL = Tolerance(atol=1e-4, rtol=1e-4)  # means of given numbers: only the order of summation differs

# The grader's own token batches, (seq_len, batch, seed): never the student's repeated_tokens, so a
# slip there costs only its own check. The exercise text shows seq_len 20; the hidden checks take
# another length, batch and seed from `held_out` (a case is then that tuple).
TOKEN_CASES = {"n20": (20, 4, 1234)}
HELD_OUT = "held-out"  # the name a hidden check's expected values are stored under


def case_name(case) -> str:
    return case if isinstance(case, str) else HELD_OUT


def grader_tokens(model, case) -> torch.Tensor:
    """[batch, 1 + 2n]: BOS, n random ids (never BOS or EOS), the same n again; fixed seed."""
    seq_len, batch, seed = TOKEN_CASES[case] if isinstance(case, str) else case
    special = {model.tokenizer.bos_token_id, model.tokenizer.eos_token_id}
    allowed = torch.tensor([t for t in range(model.cfg.d_vocab) if t not in special])
    first = allowed[torch.randint(len(allowed), (batch, seq_len), generator=torch.Generator().manual_seed(seed))]
    bos = torch.full((batch, 1), model.tokenizer.bos_token_id)
    return torch.cat([bos, first, first], dim=1).to(model.cfg.device)


def _copy_length(tokens: torch.Tensor) -> int:
    return (tokens.shape[1] - 1) // 2


def expected_scores(expected, reference, model, kind: str, case: str):
    """The reference's induction or previous-token scores on the grader's tokens of `case`."""
    compute = {"induction": lambda: reference.induction_scores(model, grader_tokens(model, case)),
               "previous_token": lambda: reference.previous_token_scores(model, grader_tokens(model, case))}[kind]
    return expected(f"{kind}_scores[{case_name(case)}]", compute, **SCORE_TOL)


def expected_loss(expected, reference, model, case: str):
    return expected(f"per_token_loss[{case_name(case)}]", lambda: reference.per_token_loss(model, grader_tokens(model, case)), **LOSS_TOL)


@torch.no_grad()
def _patterns(model, tokens: torch.Tensor) -> list[torch.Tensor]:
    """The grader's own run: every layer's [batch, head, query, key] pattern."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("attn.hook_pattern"))
    return [cache["pattern", layer].cpu() for layer in range(model.cfg.n_layers)]


def _diagonal(patterns: list[torch.Tensor], queries: torch.Tensor, offset: int) -> torch.Tensor:
    """[layer, head]: mean attention from `queries` to the keys `offset` positions back (clamped at 0)."""
    keys = (queries - offset).clamp(min=0)
    return torch.stack([p[:, :, queries, keys].mean((0, 2)) for p in patterns])


# ---- repeated_tokens ----


@pytest.mark.points(3)
def test_repeated_tokens_repeats_a_random_run_after_bos(student, model, grade):
    """repeated_tokens: BOS, random tokens, the same tokens again; reproducible for a seed"""
    _repeated_tokens((16, 2, 5), student, model, grade)  # the text shows 20, 4, 0


@pytest.mark.hidden
@pytest.mark.points(3)
def test_repeated_tokens_on_a_held_out_size(held_out, student, model, grade):
    """repeated_tokens with a length, batch and seed the exercise never shows"""
    _repeated_tokens(held_out.repeated, student, model, grade)


def _repeated_tokens(spec, student, model, grade):
    seq_len, batch, seed = spec
    bos, eos, vocab = model.tokenizer.bos_token_id, model.tokenizer.eos_token_id, model.cfg.d_vocab
    got = student.repeated_tokens(model, seq_len, batch, seed)
    if not (isinstance(got, torch.Tensor) and got.dim() == 2 and not got.is_floating_point() and got.numel() > 0):
        # A gate, not a share: an answer that does nothing can be a tensor of ids too.
        grade.check("returns a tensor of token ids", False,
                    f"expected a 2-D integer tensor, got {type(got).__name__} {tuple(getattr(got, 'shape', ()))}",
                    hint="torch.cat([bos, first_copy, first_copy], dim=1) of integer tensors")
        return
    got = got.cpu()
    first = got[:, 1 : 1 + seq_len]
    distinct = [len(set(row.tolist())) for row in first]
    random_run = (
        got.shape[1] > seq_len
        and min(distinct) >= 0.8 * seq_len  # 13 draws from a vocabulary of >1000: almost never a repeat
        and bool(((first >= 0) & (first < vocab)).all())
        and not bool(((first == bos) | (first == eos)).any())
    )
    # Random ids of the vocabulary are what a tensor hard-coded once has too (say, the public case's
    # answer): they count, like what follows, only in a batch of the size asked for.
    fits = tuple(got.shape) == (batch, 1 + 2 * seq_len)
    grade.guard("the first copy is random ids of the vocabulary, never BOS or EOS", random_run,
                f"the first {seq_len} tokens after position 0 are {first[0].tolist()} (row 0)",
                hint="draw from the vocabulary without the BOS and EOS ids (model.tokenizer.bos_token_id, "
                     "eos_token_id), e.g. indices into a tensor of the allowed ids", weight=3, given=fits)
    right = random_run and fits
    grade.guard("shape [batch, 1 + 2 * seq_len]", fits, f"expected shape {(batch, 1 + 2 * seq_len)}, got {tuple(got.shape)}",
                hint="one BOS column, then seq_len tokens, then the same seq_len tokens", given=random_run)
    grade.guard("BOS first", bool((got[:, 0] == bos).all()), f"position 0 holds {got[:, 0].tolist()}, not BOS ({bos})",
                hint="put model.tokenizer.bos_token_id at position 0 of every row", given=right)
    halves = got.shape[1] == 1 + 2 * seq_len and torch.equal(got[:, 1 : 1 + seq_len], got[:, 1 + seq_len :])
    grade.guard("the second copy repeats the first", halves, "the tokens after the first copy are not the same tokens",
                hint="draw the random tokens once and concatenate them twice", given=right)
    again = student.repeated_tokens(model, seq_len, batch, seed)
    grade.guard("the same seed gives the same tokens", isinstance(again, torch.Tensor) and torch.equal(again.cpu(), got),
                "two calls with the same seed gave different tokens",
                hint="seed a generator of your own: torch.Generator().manual_seed(seed)", given=right)
    other = student.repeated_tokens(model, seq_len, batch, seed + 1)
    grade.check("another seed gives other tokens", isinstance(other, torch.Tensor) and other.shape == got.shape
                and not torch.equal(other.cpu(), got), f"seeds {seed} and {seed + 1} gave the same tokens",
                hint="use the seed argument: torch.Generator().manual_seed(seed), and pass generator= to torch.randint")
    grade.check("every row has its own tokens", got.shape[0] == batch and len({tuple(r) for r in first.tolist()}) == batch,
                "the rows of the batch are the same tokens",
                hint="draw a [batch, seq_len] tensor at once, not one row repeated")


# ---- the scores, and what they cost ----


def _cost_checks(grade, activity, n_layers: int, right: bool, function: str) -> None:
    """The scores must come from one forward pass that hooks the attention patterns only."""
    passes = activity.forward_passes
    cheap = activity.known and len(activity.hooked) <= n_layers and (passes is None or passes == 1)
    if not activity.known:
        message = "what the call did with the model could not be recorded"
    elif len(activity.hooked) > n_layers:
        message = (f"{function} hooked {len(activity.hooked)} hook points (a run_with_cache without names_filter "
                   f"stores every activation of the model); the patterns need {n_layers}")
    else:
        message = f"{function} ran the model {passes} times; one forward pass gives every layer's pattern"
    grade.guard("one forward pass that keeps only the attention patterns", cheap, message,
                hint="model.run_with_hooks(tokens, fwd_hooks=[(lambda name: name.endswith('attn.hook_pattern'), hook)]) "
                     "with a hook that stores each layer's pattern", given=right)


def _no_hooks_left(grade, sandbox, right: bool) -> None:
    left = sandbox.hooks_on_model()
    grade.guard("no hook left on the model", not left, f"hooks still attached after the call: {left[:5]}",
                hint="use model.run_with_hooks (it removes its hooks), not model.add_hook", given=right)


def _layer_by_head(model) -> tuple[tuple[str, list[str]], tuple[str, list[str]]]:
    """The axes of a [layer, head] map, for the picture of a failed comparison."""
    return (("layer", [f"L{l}" for l in range(model.cfg.n_layers)]), ("head", [f"H{h}" for h in range(model.cfg.n_heads)]))


@pytest.mark.points(2)
@pytest.mark.parametrize("case", list(TOKEN_CASES))
def test_induction_scores_read_the_induction_diagonal(case, student, sandbox, reference, model, expected, grade):
    """induction_scores: mean attention from the second copy to the token after the first occurrence"""
    _induction_scores_read_the_induction_diagonal(case, student, sandbox, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_induction_scores_read_the_induction_diagonal_on_held_out_tokens(held_out, student, sandbox, reference, model, expected, grade):
    """induction_scores on a token batch the exercise never shows"""
    _induction_scores_read_the_induction_diagonal(held_out.tokens, student, sandbox, reference, model, expected, grade)


def _induction_scores_read_the_induction_diagonal(case, student, sandbox, reference, model, expected, grade):
    tokens = grader_tokens(model, case)
    want = expected_scores(expected, reference, model, "induction", case)
    with sandbox.watching() as activity:
        got = student.induction_scores(model, tokens)
    n = _copy_length(tokens)
    second_copy = torch.arange(n + 1, 2 * n + 1)
    patterns = functools.cache(lambda: _patterns(model, tokens))  # the grader's run, only for a wrong answer
    right = grade.compare(
        "induction scores [layer, head]",
        got,
        want,
        mistakes=lambda w: {
            Mistake("duplicate-token offset (q - n)",
                    "off by one: q - n is the token's own first occurrence (a duplicate-token head); an induction head "
                    "attends to the token after it, q - n + 1"): lambda: _diagonal(patterns(), second_copy, n),
            Mistake("induction offset off by one (n - 2)",
                    "off by one: the induction target is q - n + 1, n - 1 positions back, not n - 2"):
                lambda: _diagonal(patterns(), second_copy, n - 2),
            Mistake("BOS not counted in the positions",
                    "BOS is not counted: with BOS at 0 the second copy is at positions n + 1 .. 2n"):
                lambda: _diagonal(patterns(), second_copy - 1, n - 1),
            Mistake("first copy's queries averaged in",
                    "the scores take in queries of the first copy: average over the second copy's queries only"):
                lambda: _diagonal(patterns(), torch.arange(n - 1, 2 * n + 1), n - 1),
            Mistake("previous-token scores instead of induction",
                    "these are previous-token scores (offset 1): induction looks n - 1 positions back"):
                lambda: _diagonal(patterns(), torch.arange(2, 2 * n + 1), 1),
            Mistake("query and key swapped", "the pattern is [batch, head, query, key]: query and key are swapped"):
                lambda: torch.stack([p[:, :, second_copy - n + 1, second_copy].mean((0, 2)) for p in patterns()]),
        },
        hint="pattern[:, :, q, q - (n - 1)] for q = n + 1 .. 2n, averaged over the batch and q",
        weight=3,
        axes=_layer_by_head(model),
    )
    _cost_checks(grade, activity, model.cfg.n_layers, right, "induction_scores")
    _no_hooks_left(grade, sandbox, right)


@pytest.mark.points(1)
@pytest.mark.parametrize("case", list(TOKEN_CASES))
def test_previous_token_scores_read_the_first_diagonal(case, student, sandbox, reference, model, expected, grade):
    """previous_token_scores: mean attention from each position (2 on) to the one before it"""
    _previous_token_scores_read_the_first_diagonal(case, student, sandbox, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(1)
def test_previous_token_scores_read_the_first_diagonal_on_held_out_tokens(held_out, student, sandbox, reference, model, expected, grade):
    """previous_token_scores on a token batch the exercise never shows"""
    _previous_token_scores_read_the_first_diagonal(held_out.tokens, student, sandbox, reference, model, expected, grade)


def _previous_token_scores_read_the_first_diagonal(case, student, sandbox, reference, model, expected, grade):
    tokens = grader_tokens(model, case)
    want = expected_scores(expected, reference, model, "previous_token", case)
    with sandbox.watching() as activity:
        got = student.previous_token_scores(model, tokens)
    n = _copy_length(tokens)
    patterns = functools.cache(lambda: _patterns(model, tokens))
    right = grade.compare(
        "previous-token scores [layer, head]",
        got,
        want,
        mistakes=lambda w: {
            Mistake("position 1 counted",
                    "position 1 is counted: its previous token is BOS, where idle heads rest; start at q = 2"):
                lambda: _diagonal(patterns(), torch.arange(1, 2 * n + 1), 1),
            Mistake("induction scores instead of previous-token",
                    "these are induction scores: a previous-token head looks 1 position back, from every query"):
                lambda: _diagonal(patterns(), torch.arange(n + 1, 2 * n + 1), n - 1),
            Mistake("current token instead of the previous one",
                    "that is the current token (offset 0): the previous token is at q - 1"):
                lambda: _diagonal(patterns(), torch.arange(2, 2 * n + 1), 0),
        },
        hint="pattern[:, :, q, q - 1] for q = 2 .. last position, averaged over the batch and q",
        weight=3,
        axes=_layer_by_head(model),
    )
    _cost_checks(grade, activity, model.cfg.n_layers, right, "previous_token_scores")
    _no_hooks_left(grade, sandbox, right)


# ---- induction_heads ----


def _held_out_scores() -> torch.Tensor:
    """[3, 5] scores the text never shows, with one exactly at the threshold 0.3."""
    scores = torch.rand(3, 5, generator=torch.Generator().manual_seed(6))
    scores[2, 1] = 0.3
    return scores


@pytest.mark.points(2)
def test_induction_heads_lists_the_heads_above_the_threshold(student, reference, model, expected, grade):
    """induction_heads: every head strictly above the threshold, highest score first"""
    model_scores = expected_scores(expected, reference, model, "induction", "n20").value.float()
    cases = [("the model's scores, threshold 0.4", model_scores, (0.4,)),
             ("held-out scores, threshold 0.3 (one head exactly at it)", _held_out_scores(), (0.3,)),
             ("held-out scores, the default threshold", _held_out_scores(), ())]
    for name, scores, threshold in cases:
        limit = threshold[0] if threshold else 0.4
        above = [(layer, head) for layer, head in torch.nonzero(scores > limit).tolist()]
        want = sorted(above, key=lambda lh: float(scores[lh]), reverse=True)
        got = student.induction_heads(scores.clone(), *threshold)
        got = [tuple(int(x) for x in pair) for pair in got] if isinstance(got, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in got) else got
        at_or_above = sorted([tuple(lh) for lh in torch.nonzero(scores >= limit).tolist()],
                             key=lambda lh: float(scores[lh]), reverse=True)
        grade.compare(name, got, want, tol=None,
                      mistakes={Mistake("threshold treated as inclusive",
                                        "a head exactly at the threshold is not above it: scores > threshold"): at_or_above,
                                Mistake("sorted by (layer, head), not by score",
                                        "sort by score, highest first"): sorted(above),
                                Mistake("sorted lowest first",
                                        "that is the lowest score first: sort in descending order"): want[::-1],
                                Mistake("(head, layer) pairs",
                                        "the pairs are (layer, head), not (head, layer)"): [(h, l) for l, h in want]},
                      hint="keep (layer, head) where scores[layer, head] > threshold, sorted by score, descending")


# ---- the loss ----


@torch.no_grad()
def _loss_of(model, tokens: torch.Tensor, hooks=()) -> torch.Tensor:
    logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))
    return -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0].cpu()


@pytest.mark.points(1)
@pytest.mark.parametrize("case", list(TOKEN_CASES))
def test_per_token_loss_scores_each_next_token(case, student, reference, model, expected, grade):
    """per_token_loss: -log p of each next token, [batch, seq - 1]"""
    _per_token_loss_scores_each_next_token(case, student, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(1)
def test_per_token_loss_scores_each_next_token_on_held_out_tokens(held_out, student, reference, model, expected, grade):
    """per_token_loss on a token batch the exercise never shows"""
    _per_token_loss_scores_each_next_token(held_out.tokens, student, reference, model, expected, grade)


def _per_token_loss_scores_each_next_token(case, student, reference, model, expected, grade):
    tokens = grader_tokens(model, case)
    want = expected_loss(expected, reference, model, case)
    got = student.per_token_loss(model, tokens)

    @torch.no_grad()
    def unshifted() -> torch.Tensor:
        logits = model(tokens)
        return -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, :-1, None])[..., 0].cpu()

    @torch.no_grad()
    def raw_logits() -> torch.Tensor:
        return -model(tokens)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0].cpu()

    grade.compare("loss of each next token", got, want,
                  mistakes=lambda w: {Mistake("loss with its sign flipped",
                                              "the sign is flipped: the loss is -log p"): -w,
                                      Mistake("logits and tokens not shifted",
                                              "not shifted: position t predicts token t + 1, so compare logits[:, :-1] "
                                              "with tokens[:, 1:]"): unshifted,
                                      Mistake("raw logits instead of log-probabilities",
                                              "these are logits: take log_softmax first"): raw_logits},
                  hint="-logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]",
                  axes=(("sequence", None), ("position (predicting the next token)", None)))


def _held_out_loss() -> torch.Tensor:
    """[3, 22]: a made-up per-token loss (n = 11), where every position's value tells."""
    return torch.rand(3, 22, generator=torch.Generator().manual_seed(11)) * 10


@pytest.mark.points(2)
def test_copy_losses_average_each_copy(student, reference, model, expected, grade):
    """copy_losses: the mean loss on r_2..r_n of each copy; the second is far lower"""
    model_loss = expected_loss(expected, reference, model, "n20").value.float()
    for name, loss in (("the model's loss on its n = 20 batch", model_loss), ("a held-out loss, n = 11", _held_out_loss())):
        n = loss.shape[1] // 2
        first, second = loss[:, 1:n], loss[:, n + 1 :]
        want = [float(first.mean()), float(second.mean())]
        got = student.copy_losses(loss.clone())
        got = list(got) if isinstance(got, tuple) else got
        grade.compare(name, got, want, tol=MEAN_TOL,
                      mistakes={Mistake("r_1 counted in each copy",
                                        "r_1 of each copy is counted: nothing before it says what it will be"):
                                    [float(loss[:, :n].mean()), float(loss[:, n:].mean())],
                                Mistake("copy positions off by one",
                                        "off by one: entry t predicts token t + 1, so r_2..r_n of the first copy are "
                                        "entries 1..n-1"): [float(loss[:, 2 : n + 1].mean()), float(loss[:, n + 2 :].mean())],
                                Mistake("copies swapped", "first and second copy are swapped"): want[::-1]},
                      hint="with n = loss.shape[1] // 2: loss[:, 1:n] and loss[:, n + 1:]")


# ---- ablation ----


def _head_with_top(scores: torch.Tensor) -> tuple[int, int]:
    layer, head = divmod(int(scores.argmax()), scores.shape[1])
    return layer, head


ABLATIONS = {  # which head: the top one of the grader's scores of a kind, on which tokens
    "top induction head": ("induction", "n20"),
    "top previous-token head": ("previous_token", "n20"),
}


def _copy_means(loss: torch.Tensor, n: int) -> tuple[float, float]:
    return float(loss[:, 1:n].mean()), float(loss[:, n + 1 :].mean())


@pytest.mark.points(2)
@pytest.mark.parametrize("which", list(ABLATIONS))
def test_ablate_head_zeroes_one_heads_output(which, student, sandbox, reference, model, expected, grade):
    """ablate_head: the second-copy loss with one head's z zeroed; the model needs its induction circuit"""
    _ablate_head(which, ABLATIONS[which], student, sandbox, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_ablate_head_on_held_out_tokens(held_out, student, sandbox, reference, model, expected, grade):
    """ablate_head on a token batch the exercise never shows"""
    _ablate_head("top previous-token head", ("previous_token", held_out.tokens), student, sandbox, reference, model,
                 expected, grade)


def _ablate_head(which, ablation, student, sandbox, reference, model, expected, grade):
    kind, case = ablation
    layer, head = _head_with_top(expected_scores(expected, reference, model, kind, case).value)
    tokens = grader_tokens(model, case)
    want = expected(f"ablate[{which}]" + ("" if isinstance(case, str) else f"@{HELD_OUT}"), lambda: reference.ablate_head(model, tokens, layer, head), **LOSS_TOL)
    baseline = expected(f"second_copy_loss[{case_name(case)}]",
                        lambda: reference.copy_losses(reference.per_token_loss(model, tokens))[1], **LOSS_TOL).value
    got = student.ablate_head(model, tokens, layer, head)
    n = _copy_length(tokens)
    name = f"blocks.{layer}.attn.hook_z"

    def zeroing(index) -> list:
        def hook(z, hook):
            z[index] = 0.0
            return z
        return [(name, hook)]

    right = grade.compare(
        f"second-copy loss with L{layer}H{head} zeroed",
        got,
        want,
        mistakes=lambda w: {
            Mistake("nothing ablated",
                    "nothing was ablated: the hook must set z[:, :, head] = 0 and return z"): baseline,
            Mistake("whole layer zeroed",
                    "the whole layer was zeroed: z[:, :, head] = 0 zeroes one head"): lambda: _copy_means(_loss_of(model, tokens, zeroing((slice(None),))), n)[1],
            Mistake("position zeroed instead of the head",
                    "that zeroes a position: z is [batch, position, head, d_head], the head is the third index"):
                lambda: _copy_means(_loss_of(model, tokens, zeroing((slice(None), head))), n)[1],
            Mistake("loss over the whole sequence",
                    "that is the loss over the whole sequence: average the second copy, r_2..r_n"):
                lambda: float(_loss_of(model, tokens, zeroing((slice(None), slice(None), head))).mean()),
            Mistake("r_1 of the second copy counted", "r_1 of the second copy is counted: it cannot be predicted"):
                lambda: float(_loss_of(model, tokens, zeroing((slice(None), slice(None), head)))[:, n:].mean()),
        },
        hint="run_with_hooks with a hook on blocks.{layer}.attn.hook_z that zeroes z[:, :, head]; then the mean "
             "per-token loss over the second copy's r_2..r_n",
        weight=2,
    )
    # Any number above the baseline has this property (one copied from a public case, say): it counts
    # with the right loss.
    grade.guard("ablating the head raises the second-copy loss", isinstance(got, (int, float)) and got > baseline,
                f"the model's own second-copy loss is {baseline:.3f}; with L{layer}H{head} zeroed you got {got!r:.60}",
                hint="zero z[:, :, head] in a hook on blocks.{layer}.attn.hook_z and return z", weight=0.5, given=right)
    _no_hooks_left(grade, sandbox, right)


# ---- the plot ----


@pytest.mark.points(3)
def test_plot_induction_scores_draws_a_labelled_heatmap(student, reference, model, expected, grade):
    """plot_induction_scores returns a Figure: layers on rows, heads on columns, labelled, with a colour bar"""
    scores = expected_scores(expected, reference, model, "induction", "n20").value.float()
    n_layers, n_heads = scores.shape
    heads, layers = [str(h) for h in range(n_heads)], [str(layer) for layer in range(n_layers)]
    answer = student.plot_induction_scores(scores.clone())
    reference_picture = reference_heatmap(scores, heads, layers, "reference: induction scores", group="scores",
                                         xlabel="Head", ylabel="Layer")
    fig = grade.student_figure(answer, reference_picture)
    if fig is None:
        return
    image_axes = [ax for ax in fig.axes if ax.images]
    if not image_axes:
        grade.check("draws an image", False, "no imshow/matshow image in the figure", hint="ax.imshow(scores)")
        return
    ax = image_axes[0]
    data = torch.as_tensor(np.asarray(ax.images[0], dtype=float))
    right = grade.compare("image data", data.float(), scores, mistakes={Mistake("transposed image",
                                                                                "the image is transposed: layers go on rows"): scores.T},
                          hint="imshow(scores) puts layers on rows and heads on columns", weight=2)
    grade.compare("x tick labels (heads)", ax.xticklabels, heads, hint="ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)])")
    grade.compare("y tick labels (layers)", ax.yticklabels, layers, hint="ax.set_yticks(range(n_layers), [str(l) for l in range(n_layers)])")
    grade.compare("axis labels", [ax.xlabel, ax.ylabel], ["Head", "Layer"],
                  mistakes={Mistake("axis labels swapped",
                                    "the axis labels are swapped: heads go along x"): ["Layer", "Head"]},
                  hint="ax.set_xlabel('Head') and ax.set_ylabel('Layer')")
    grade.guard("has a colour bar", len(fig.axes) >= 2, "the figure has no colour bar", hint="fig.colorbar(image, ax=ax)", given=right)
    grade.guard("the title says what is shown", "induction" in f"{ax.title} {fig.suptitle}".lower(),
                f"the title is {ax.title!r}", hint="ax.set_title('Induction scores')", given=right)
