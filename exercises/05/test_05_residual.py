"""The residual stream: logit lens and direct logit attribution"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from grader.judging.compare import Tolerance
from grader.judging.mistakes import Mistake
from grader.judging.prompts import CLEAN_ANSWERS, CLEAN_PROMPT, CORRUPTED_PROMPT
from grader.judging.pictures import MATCHES, figure_to_artifact, reference_heatmap, remembered

TOPIC = "residual"
# prompt, (answer, wrong). France is the exercise text's example; the hidden checks add two cases
# the text never shows: another country, and an indirect-object sentence.
CASES = {
    "France": (CLEAN_PROMPT, CLEAN_ANSWERS),
}
HIDDEN_CASES = ["held-out country", "held-out IOI"]


def _held_out_case(held_out, case: str) -> tuple[str, tuple[str, str]]:
    return {"held-out country": (held_out.clean, held_out.answers),
            "held-out IOI": (held_out.ioi_prompt, held_out.ioi_answers)}[case]
DIRECTION_TOL = dict(atol=1e-4, rtol=1e-3)
LOGIT_TOL = dict(atol=1e-3, rtol=1e-3)  # logit differences are of order 1-20
AXIS_LABELS = ["Layer", "Logit difference"]


# ---- the grader's own readings of the stream, to recognise a student's mistakes ----


def _token_ids(model, answers: tuple[str, str]) -> tuple[int, int]:
    return model.to_single_token(answers[0]), model.to_single_token(answers[1])


def _direction(model, answers: tuple[str, str], matrix: str = "W_U") -> torch.Tensor:
    answer, wrong = _token_ids(model, answers)
    if matrix == "W_E":  # the embedding: [d_vocab, d_model], a token's row
        return (model.W_E[answer] - model.W_E[wrong]).detach().cpu()
    return (model.W_U[:, answer] - model.W_U[:, wrong]).detach().cpu()


def _bias(model, answers: tuple[str, str]) -> torch.Tensor:
    answer, wrong = _token_ids(model, answers)
    return (model.b_U[answer] - model.b_U[wrong]).detach().cpu()


def _model_logit_diff(logits: torch.Tensor, model, answers: tuple[str, str]) -> torch.Tensor:
    answer, wrong = _token_ids(model, answers)
    return (logits[0, -1, answer] - logits[0, -1, wrong]).detach().cpu()


def _streams(model, cache, position: int = -1) -> torch.Tensor:
    """[n_layers + 1, d_model]: resid_pre of every block, then the last resid_post."""
    n_layers = model.cfg.n_layers
    streams = [cache["resid_pre", layer][0, position] for layer in range(n_layers)]
    return torch.stack([*streams, cache["resid_post", n_layers - 1][0, position]]).detach().cpu()


def _centred(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=-1, keepdim=True)


def _own_layer_norm(x: torch.Tensor, model) -> torch.Tensor:
    """Each vector through the final LayerNorm with its own statistics (weights folded away)."""
    return _centred(x) / (_centred(x).pow(2).mean(dim=-1, keepdim=True) + model.cfg.eps).sqrt()


def _final_scale(cache, position: int = -1) -> torch.Tensor:
    return cache["ln_final.hook_scale"][0, position].detach().cpu()  # [1]


def _head_outputs(model, cache, position: int = -1) -> torch.Tensor:
    """[n_layers, n_heads, d_model]: what each head writes into the stream at `position`."""
    z = torch.stack([cache["z", layer][0, position] for layer in range(model.cfg.n_layers)])
    return torch.einsum("lhd,lhdm->lhm", z, model.W_O).detach().cpu()


def _lens_mistakes(model, cache, answers: tuple[str, str]):
    direction, bias = _direction(model, answers), _bias(model, answers)
    streams = _streams(model, cache)

    def mistakes(want: torch.Tensor) -> dict:
        raw_last = want.clone()
        raw_last[-1] = streams[-1] @ direction + bias
        return {
            Mistake("sign flipped",
                    "the sign is flipped: logit(answer) - logit(wrong), W_U[:, answer] - W_U[:, wrong]"): -want,
            Mistake("final LayerNorm left out",
                    "the final LayerNorm is missing: centre each stream and divide it by its own scale before the "
                    "unembedding"): lambda: streams @ direction + bias,
            Mistake("unembedding bias left out",
                    "the unembedding bias is missing: add model.b_U[answer] - model.b_U[wrong] (compatibility mode folds "
                    "the final LayerNorm's bias into b_U); then the last entry is the model's own logit difference"):
                want - bias,
            Mistake("final stream's scale used for every layer",
                    "every stream was divided by the final stream's cached scale (ln_final.hook_scale): in the logit lens "
                    "each layer's stream goes through the final LayerNorm as if it were the last, with its own scale"):
                lambda: _centred(streams) / _final_scale(cache) @ direction + bias,
            Mistake("BOS position read instead of the last",
                    "that is the first position (the BOS token): the next token is predicted at the last, [0, -1]"):
                lambda: _own_layer_norm(_streams(model, cache, 0), model) @ direction + bias,
            Mistake("embedding matrix W_E used as the direction",
                    "that reads the embedding matrix W_E: the direction is W_U[:, answer] - W_U[:, wrong], the unembedding"):
                lambda: _own_layer_norm(streams, model) @ _direction(model, answers, "W_E") + bias,
            Mistake("last stream not through the LayerNorm",
                    "the last entry is the last block's resid_post without the final LayerNorm: put it through the "
                    "LayerNorm like the others"): raw_last,
            Mistake("stream after the last block left out",
                    "the stream after the last block is missing: n_layers + 1 entries, the last from "
                    "cache['resid_post', n_layers - 1]"): want[:-1],
        }

    return mistakes


def _head_mistakes(model, cache, answers: tuple[str, str]):
    direction = _direction(model, answers)
    outputs = _head_outputs(model, cache)

    def mistakes(want: torch.Tensor) -> dict:
        return {
            Mistake("sign flipped",
                    "the sign is flipped: logit(answer) - logit(wrong), W_U[:, answer] - W_U[:, wrong]"): -want,
            Mistake("final LayerNorm scale left out",
                    "the final LayerNorm's scale is missing: divide each head's (centred) output by "
                    "cache['ln_final.hook_scale'][0, -1]"): lambda: _centred(outputs) @ direction,
            Mistake("each head scaled by its own LayerNorm",
                    "each head was normalised by its own scale: the heads are parts of one stream and share its scale, "
                    "cache['ln_final.hook_scale'][0, -1] (apply_ln_to_stack without recompute_ln)"):
                lambda: _own_layer_norm(outputs, model) @ direction,
            Mistake("BOS position read instead of the last",
                    "that is the first position (the BOS token): read cache['z', layer][0, -1], the last position"):
                lambda: _centred(_head_outputs(model, cache, 0)) / _final_scale(cache, 0) @ direction,
            Mistake("embedding matrix W_E used as the direction",
                    "that reads the embedding matrix W_E: the direction is W_U[:, answer] - W_U[:, wrong], the unembedding"):
                lambda: _centred(outputs) / _final_scale(cache) @ _direction(model, answers, "W_E"),
            Mistake("layers and heads swapped", "layers and heads are swapped: return [n_layers, n_heads]"): want.T,
        }

    return mistakes


# ---- the checks ----


@pytest.mark.points(1)
@pytest.mark.parametrize("case", list(CASES))
def test_logit_diff_direction_is_the_unembedding_difference(case, student, reference, model, expected, grade):
    """logit_diff_direction is W_U[:, answer] - W_U[:, wrong]"""
    _logit_diff_direction_is_the_unembedding_difference(case, CASES[case], student, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(1)
@pytest.mark.parametrize("case", HIDDEN_CASES)
def test_logit_diff_direction_is_the_unembedding_difference_on_held_out_prompts(case, held_out, student, reference, model, expected, grade):
    """logit_diff_direction on prompts the exercise never shows"""
    _logit_diff_direction_is_the_unembedding_difference(case, _held_out_case(held_out, case), student, reference, model, expected, grade)


def _logit_diff_direction_is_the_unembedding_difference(case, inputs, student, reference, model, expected, grade):
    answers = inputs[1]
    want = expected(f"direction[{case}]", lambda: reference.logit_diff_direction(model, *answers), **DIRECTION_TOL)
    grade.compare(
        f"direction of {answers[0]!r} minus {answers[1]!r}",
        student.logit_diff_direction(model, *answers),
        want,
        mistakes=lambda w: {
            Mistake("sign flipped", "the sign is flipped: answer minus wrong"): -w,
            Mistake("embedding matrix W_E used instead of W_U",
                    "that is the embedding matrix W_E: the logits come from the unembedding, W_U[:, token]"):
                lambda: _direction(model, answers, "W_E"),
            Mistake("wrong token's column not subtracted",
                    "that is the answer's column only: subtract the wrong token's column"):
                lambda: model.W_U[:, _token_ids(model, answers)[0]].detach().cpu(),
        },
        hint="model.W_U[:, model.to_single_token(answer)] - model.W_U[:, model.to_single_token(wrong)]",
    )


@pytest.mark.points(2)
@pytest.mark.parametrize("case", list(CASES))
def test_logit_lens_reads_the_stream_after_every_layer(case, student, reference, model, run_cached, expected, grade):
    """logit_lens reads the logit difference off the stream after every layer; the last entry is the model's own"""
    _logit_lens_reads_the_stream_after_every_layer(case, CASES[case], student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
@pytest.mark.parametrize("case", HIDDEN_CASES)
def test_logit_lens_reads_the_stream_after_every_layer_on_held_out_prompts(case, held_out, student, reference, model, run_cached, expected, grade):
    """logit_lens on prompts the exercise never shows"""
    _logit_lens_reads_the_stream_after_every_layer(case, _held_out_case(held_out, case), student, reference, model, run_cached, expected, grade)


def _logit_lens_reads_the_stream_after_every_layer(case, inputs, student, reference, model, run_cached, expected, grade):
    prompt, answers = inputs
    logits, cache = run_cached(prompt)
    want = expected(f"lens[{case}]", lambda: reference.logit_lens(model, cache, *answers), **LOGIT_TOL)
    got = student.logit_lens(model, cache, *answers)
    grade.compare("logit difference after each layer", got, want, weight=3,
                  mistakes=_lens_mistakes(model, cache, answers),
                  hint="for each of the n_layers + 1 streams at [0, -1]: final LayerNorm, then "
                       "@ (W_U[:, answer] - W_U[:, wrong]) + (b_U[answer] - b_U[wrong])",
                  axes=(("the stream", ["embeddings", *(f"after L{l}" for l in range(model.cfg.n_layers))]),))
    # The model's own answer, from the grader's forward pass: whatever the reference says.
    own = _model_logit_diff(logits, model, answers)
    last = got[-1] if isinstance(got, torch.Tensor) and got.dim() == 1 and len(got) else got
    grade.compare("the last entry is the model's logit difference", last, own, tol=Tolerance(**LOGIT_TOL),
                  mistakes={Mistake("unembedding bias left out",
                                    "the unembedding bias is missing: add model.b_U[answer] - model.b_U[wrong]"):
                            own - _bias(model, answers)},
                  hint="the stream after the last block, through the final LayerNorm and the unembedding, gives "
                       "the logits: logits[0, -1, answer] - logits[0, -1, wrong]")


@pytest.mark.points(2)
@pytest.mark.parametrize("case", list(CASES))
def test_head_attributions_give_each_heads_direct_effect(case, student, reference, model, run_cached, expected, grade):
    """head_attributions gives each head's direct contribution to the logit difference"""
    _head_attributions_give_each_heads_direct_effect(case, CASES[case], student, reference, model, run_cached, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
@pytest.mark.parametrize("case", HIDDEN_CASES)
def test_head_attributions_give_each_heads_direct_effect_on_held_out_prompts(case, held_out, student, reference, model, run_cached, expected, grade):
    """head_attributions on prompts the exercise never shows"""
    _head_attributions_give_each_heads_direct_effect(case, _held_out_case(held_out, case), student, reference, model, run_cached, expected, grade)


def _head_attributions_give_each_heads_direct_effect(case, inputs, student, reference, model, run_cached, expected, grade):
    prompt, answers = inputs
    _, cache = run_cached(prompt)
    want = expected(f"heads[{case}]", lambda: reference.head_attributions(model, cache, *answers), **LOGIT_TOL)
    got = student.head_attributions(model, cache, *answers)
    heads = [f"H{head}" for head in range(model.cfg.n_heads)]
    layers = [f"L{layer}" for layer in range(model.cfg.n_layers)]
    right = grade.compare("each head's direct contribution", got, want, mistakes=_head_mistakes(model, cache, answers),
                          hint="(z @ W_O) of each head at [0, -1], centred, divided by "
                               "cache['ln_final.hook_scale'][0, -1], @ (W_U[:, answer] - W_U[:, wrong])",
                          axes=(("layer", layers), ("head", heads)))
    # A wrong answer is drawn beside the reference in the failed check's picture of differences.
    grade.figure(reference_heatmap(want.value.float(), heads, layers, f"reference ({case})",
                                   caption=MATCHES if right else "", group=f"heads-{case}", xlabel="head", ylabel="layer"))


@pytest.mark.points(1)
@pytest.mark.parametrize("case", list(CASES))
def test_head_attributions_complete_the_decomposition(case, student, model, run_cached, grade):
    """the heads, with the embeddings, the MLPs and the biases, add up to the model's logit difference"""
    _head_attributions_complete_the_decomposition(case, CASES[case], student, model, run_cached, grade)


@pytest.mark.hidden
@pytest.mark.points(1)
@pytest.mark.parametrize("case", HIDDEN_CASES)
def test_head_attributions_complete_the_decomposition_on_held_out_prompts(case, held_out, student, model, run_cached, grade):
    """the decomposition of head_attributions on prompts the exercise never shows"""
    _head_attributions_complete_the_decomposition(case, _held_out_case(held_out, case), student, model, run_cached, grade)


def _head_attributions_complete_the_decomposition(case, inputs, student, model, run_cached, grade):
    prompt, answers = inputs
    logits, cache = run_cached(prompt)
    direction, scale = _direction(model, answers), _final_scale(cache)
    # Everything in the last position's stream except the heads, read by TransformerLens itself:
    # embeddings and MLP outputs (decompose_resid, with the final LayerNorm's cached scale), each
    # layer's attention bias b_O, and the unembedding bias.
    parts = cache.decompose_resid(layer=-1, mode="mlp", incl_embeds=True, apply_ln=True, pos_slice=-1)[:, 0]
    parts = parts.detach().cpu()  # the grader's arithmetic is on the CPU, wherever the model runs
    biases = _centred(model.b_O.detach().cpu()) / scale
    rest = (parts @ direction).sum() + (biases @ direction).sum() + _bias(model, answers)
    own = _model_logit_diff(logits, model, answers)
    got = student.head_attributions(model, cache, *answers)
    if not isinstance(got, torch.Tensor):
        grade.check("embeddings + heads + MLPs + biases", False,
                    f"head_attributions returned {getattr(got, 'type_name', type(got).__name__)}, not a tensor",
                    hint="return a [n_layers, n_heads] tensor")
        return
    total = rest + got.detach().cpu().to(rest.dtype).sum()
    outputs = _head_outputs(model, cache)
    grade.compare(
        "embeddings + heads + MLPs + biases",
        total,
        own,
        tol=Tolerance(**LOGIT_TOL),
        mistakes={
            Mistake("heads without the final LayerNorm scale",
                    "the heads miss the final LayerNorm's scale: divide by cache['ln_final.hook_scale'][0, -1]"):
                rest + (_centred(outputs) @ direction).sum(),
            Mistake("heads with their sign flipped",
                    "the sign of the heads is flipped: W_U[:, answer] - W_U[:, wrong]"):
                rest - (_centred(outputs) / scale @ direction).sum(),
        },
        hint=f"the rest of the stream gives {float(rest):.3f} and the model's logit difference is {float(own):.3f}, "
             f"so the heads must add up to {float(own - rest):.3f}: each head's direct effect, with the stream's "
             "one LayerNorm scale",
    )


def _lens_labels(n_layers: int) -> list[str]:
    return ["embeddings", *(f"after L{layer}" for layer in range(n_layers))]


def _reference_plot(values: torch.Tensor, labels: list[str], title: str) -> Figure:
    """The plot the grader expects, drawn here (the reference solution may not be shipped)."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.plot(range(len(labels)), values.numpy(), marker="o")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(AXIS_LABELS[0])
    ax.set_ylabel(AXIS_LABELS[1])
    ax.set_title(title)
    return fig


def _drawn(fig) -> list[tuple[object, np.ndarray]]:
    """(axes, values) of every line and bar chart in the figure."""
    return [(ax, values) for ax in fig.axes for values in [*ax.lines, *ax.bars]]


@pytest.mark.points(4)
def test_plot_logit_lens_draws_a_labelled_line(student, model, run_cached, grade):
    """plot_logit_lens returns a Figure: the values in order, the labels on the x axis, axis labels and title"""
    prompt, answers = CORRUPTED_PROMPT, CLEAN_ANSWERS[::-1]  # not France: a plot hard-coded from the text fails
    _, cache = run_cached(prompt)
    # The values to draw, from TransformerLens's own logit lens; any values would do.
    streams = cache.accumulated_resid(layer=-1, pos_slice=-1, apply_ln=True)[:, 0].detach().cpu()
    lens = streams @ _direction(model, answers)
    values = (lens + _bias(model, answers)).detach().float().cpu()
    labels = _lens_labels(model.cfg.n_layers)
    title = f"Logit lens: '{answers[0].strip()}' minus '{answers[1].strip()}'"
    answer = student.plot_logit_lens(values.clone(), list(labels), title=title)
    reference_picture = remembered(("logit lens", values.numpy().tobytes(), tuple(labels), title),
                                   lambda: figure_to_artifact(_reference_plot(values, labels, f"reference: {title}"),
                                                              "reference", group="lens"))
    fig = grade.student_figure(answer, reference_picture)
    if fig is None:
        return
    drawn = _drawn(fig)
    same_length = [(ax, v) for ax, v in drawn if v.shape == tuple(values.shape)]
    closest = min(same_length, key=lambda item: float(np.abs(item[1] - values.numpy()).max()), default=None)
    ax, shown = closest or (drawn[0] if drawn else (fig.axes[0] if fig.axes else None, None))
    if shown is None:
        drew_values = grade.check("the values drawn", False, "no line or bars in the figure", weight=2,
                                  hint="ax.plot(range(len(values)), values, marker='o'), or ax.bar(...)")
    else:
        drew_values = grade.compare(
            "the values drawn", torch.as_tensor(shown, dtype=torch.float32), values, weight=2,
            mistakes={Mistake("values drawn in reverse",
                              "the values are drawn in reverse: the embeddings come first"): values.flip(0)},
            hint="one point per value, in order: ax.plot(range(len(values)), values)")
    grade.guard("returns the Figure", True, given=drew_values)
    if ax is None:
        grade.check("x tick labels", False, "the figure has no axes", hint="fig, ax = plt.subplots()")
        return
    grade.compare("x tick labels", ax.xticklabels, list(labels), hint="ax.set_xticks(range(len(labels)), labels)")
    grade.compare("axis labels", [ax.xlabel, ax.ylabel], AXIS_LABELS,
                  mistakes={Mistake("axis labels swapped",
                                    "the axis labels are swapped: layers go along x"): AXIS_LABELS[::-1]},
                  hint=f"ax.set_xlabel({AXIS_LABELS[0]!r}), ax.set_ylabel({AXIS_LABELS[1]!r})")
    grade.check("shows the title", title in (ax.title, fig.suptitle),
                f"expected the title {title!r}, got {ax.title!r}", hint="ax.set_title(title) when a title is given")
