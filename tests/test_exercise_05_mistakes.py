"""Exercise 05's checks catch the mistakes they claim to catch and name them (an answer that does
nothing: see test_points_follow_work.py).

The machinery is tests/test_exercise_mistakes.py's: a submission is ``solutions/`` with some
functions rewritten, graded in a subprocess as an LMS would; here only exercise 05's checks run.
A rewritten logit_lens or head_attributions computes its own direction, so that a broken
logit_diff_direction in the same batch does not leak into it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from test_exercise_mistakes import (
    Graded,
    Mistake,
    _fn,
    assert_caught_and_named,
    assert_untouched_keep_full_points,
    grading_batches,
)

EXERCISE = "05"
FUNCTION_TESTS = {
    "logit_diff_direction": ("test_logit_diff_direction",),
    "logit_lens": ("test_logit_lens",),
    "head_attributions": ("test_head_attributions",),
    "plot_logit_lens": ("test_plot_logit_lens",),
}
DIRECTION = "test_logit_diff_direction_is_the_unembedding_difference"
LENS = "test_logit_lens_reads_the_stream_after_every_layer"
HEADS = "test_head_attributions_give_each_heads_direct_effect"
SUM = "test_head_attributions_complete_the_decomposition"  # a prefix in `also`: every case, hidden ones too
PLOT = "test_plot_logit_lens_draws_a_labelled_line"
CASES = ("France",)  # the public checks' cases; the first is the rows' own
HIDDEN_CASES = ("held-out country", "held-out IOI")  # the hidden checks', named `{test}_on_held_out_prompts`


def _every_case(test: str, phrase: str | None) -> dict[str, str | None]:
    """`also` for the other cases of a parametrized check: its other public cases and every case of
    its hidden twin."""
    return {**{f"{test}[{case}]": phrase for case in CASES[1:]},
            **{f"{test}_on_held_out_prompts[{case}]": phrase for case in HIDDEN_CASES}}


def _lens(stream: str = "normalised", position: int = -1, bias: str = " + bias") -> str:
    """A logit_lens with one thing changed: how the streams are normalised, which position, the bias."""
    return _fn(f'''
        def logit_lens(model, cache, answer, wrong):
            a, w = model.to_single_token(answer), model.to_single_token(wrong)
            direction, bias = model.W_U[:, a] - model.W_U[:, w], model.b_U[a] - model.b_U[w]
            n_layers = model.cfg.n_layers
            streams = torch.stack([cache["resid_pre", layer][0, {position}] for layer in range(n_layers)]
                                  + [cache["resid_post", n_layers - 1][0, {position}]])
            normalised = _final_layer_norm(streams, model.cfg.eps)
            return ({stream} @ direction{bias}).detach()
        ''')


def _heads(scale: str = 'cache["ln_final.hook_scale"][0, -1]', position: int = -1, sign: str = "") -> str:
    """A head_attributions with one thing changed: the scale, the position or the sign."""
    return _fn(f'''
        def head_attributions(model, cache, answer, wrong):
            a, w = model.to_single_token(answer), model.to_single_token(wrong)
            direction = model.W_U[:, a] - model.W_U[:, w]
            z = torch.stack([cache["z", layer][0, {position}] for layer in range(model.cfg.n_layers)])
            outputs = torch.einsum("lhd,lhdm->lhm", z, model.W_O)
            centred = outputs - outputs.mean(dim=-1, keepdim=True)
            return ({sign}centred / {scale} @ direction).detach()
        ''')


def _plot(x: str = "positions", y: str = "values.detach().cpu().numpy()", xlabel: str = "Layer",
          ylabel: str = "Logit difference", returns: str = "fig") -> str:
    return _fn(f'''
        def plot_logit_lens(values, labels, title=None):
            fig, ax = plt.subplots()
            positions = range(len(labels))
            ax.plot({x}, {y}, marker="o")
            ax.set_xticks(positions, labels)
            ax.set_xlabel("{xlabel}")
            ax.set_ylabel("{ylabel}")
            ax.set_title(title)
            return {returns}
        ''')


MISTAKES = [
    # ---------------------------------------------------------------- batch A
    Mistake("05-direction-from-the-embedding", "A", EXERCISE, "logit_diff_direction", _fn('''
        def logit_diff_direction(model, answer, wrong):
            return (model.W_E[model.to_single_token(answer)] - model.W_E[model.to_single_token(wrong)]).detach()
        '''), f"{DIRECTION}[France]", "that is the embedding matrix W_E",
        also=_every_case(DIRECTION, "that is the embedding matrix W_E")),
    Mistake("05-lens-last-stream-without-layer-norm", "A", EXERCISE, "logit_lens", _fn('''
        def logit_lens(model, cache, answer, wrong):
            a, w = model.to_single_token(answer), model.to_single_token(wrong)
            direction, bias = model.W_U[:, a] - model.W_U[:, w], model.b_U[a] - model.b_U[w]
            n_layers = model.cfg.n_layers
            before = torch.stack([cache["resid_pre", layer][0, -1] for layer in range(n_layers)])
            last = cache["resid_post", n_layers - 1][0, -1]  # the final stream, without the final LayerNorm
            return torch.cat([_final_layer_norm(before, model.cfg.eps) @ direction + bias,
                              (last @ direction + bias).reshape(1)]).detach()
        '''), f"{LENS}[France]", "the last entry is the last block's resid_post without the final LayerNorm",
        also=_every_case(LENS, "the last entry is the last block's resid_post without the final LayerNorm")),
    Mistake("05-heads-sign-flipped", "A", EXERCISE, "head_attributions", _heads(sign="-"), f"{HEADS}[France]",
            "the sign is flipped", also={**_every_case(HEADS, "the sign is flipped"),
                                         SUM: "the sign of the heads is flipped"}),
    # ---------------------------------------------------------------- batch B
    Mistake("05-direction-sign-flipped", "B", EXERCISE, "logit_diff_direction", _fn('''
        def logit_diff_direction(model, answer, wrong):
            return (model.W_U[:, model.to_single_token(wrong)] - model.W_U[:, model.to_single_token(answer)]).detach()
        '''), f"{DIRECTION}[France]", "the sign is flipped: answer minus wrong",
        also=_every_case(DIRECTION, "the sign is flipped: answer minus wrong")),
    Mistake("05-lens-without-layer-norm", "B", EXERCISE, "logit_lens", _lens(stream="streams"), f"{LENS}[France]",
            "the final LayerNorm is missing", also=_every_case(LENS, "the final LayerNorm is missing")),
    Mistake("05-heads-without-layer-norm-scale", "B", EXERCISE, "head_attributions", _heads(scale="1"),
            f"{HEADS}[France]", "the final LayerNorm's scale is missing",
            also={**_every_case(HEADS, "the final LayerNorm's scale is missing"),
                  SUM: "the heads miss the final LayerNorm's scale"}),
    # ---------------------------------------------------------------- batch C
    # TransformerLens's own logit lens, read along the direction: right, but for the unembedding bias.
    Mistake("05-lens-without-unembedding-bias", "C", EXERCISE, "logit_lens", _fn('''
        def logit_lens(model, cache, answer, wrong):
            stack = cache.accumulated_resid(layer=-1, pos_slice=-1, apply_ln=True)[:, 0]
            return (stack @ logit_diff_direction(model, answer, wrong)).detach()
        '''), f"{LENS}[France]", "the unembedding bias is missing",
        also=_every_case(LENS, "the unembedding bias is missing")),
    Mistake("05-heads-each-normalised-by-its-own-scale", "C", EXERCISE, "head_attributions",
            _heads(scale="(centred.pow(2).mean(dim=-1, keepdim=True) + model.cfg.eps).sqrt()"), f"{HEADS}[France]",
            "each head was normalised by its own scale",
            also={**_every_case(HEADS, "each head was normalised by its own scale"), SUM: None}),
    Mistake("05-plot-reversed", "C", EXERCISE, "plot_logit_lens", _plot(y="values.flip(0).numpy()"), PLOT,
            "the values are drawn in reverse"),
    # ---------------------------------------------------------------- batch D
    Mistake("05-lens-first-position", "D", EXERCISE, "logit_lens", _lens(position=0), f"{LENS}[France]",
            "that is the first position", also=_every_case(LENS, "that is the first position")),
    Mistake("05-heads-first-position", "D", EXERCISE, "head_attributions",
            _heads(position=0, scale='cache["ln_final.hook_scale"][0, 0]'), f"{HEADS}[France]",
            "that is the first position", also={**_every_case(HEADS, "that is the first position"), SUM: None}),
    Mistake("05-plot-axis-labels-swapped", "D", EXERCISE, "plot_logit_lens",
            _plot(xlabel="Logit difference", ylabel="Layer"), PLOT, "the axis labels are swapped"),
    # ---------------------------------------------------------------- batch E
    # Every stream divided by the final stream's scale: the lens of decompose_resid, not of accumulated_resid.
    Mistake("05-lens-final-scale-for-every-layer", "E", EXERCISE, "logit_lens",
            _lens(stream='(streams - streams.mean(dim=-1, keepdim=True)) / cache["ln_final.hook_scale"][0, -1]'),
            f"{LENS}[France]", "every stream was divided by the final stream's cached scale",
            also=_every_case(LENS, "every stream was divided by the final stream's cached scale")),
    Mistake("05-plot-returns-nothing", "E", EXERCISE, "plot_logit_lens", _plot(returns="None"), PLOT, "return fig"),
]
BATCHES = sorted({m.batch for m in MISTAKES})

def _rewrites(batch: str) -> dict[tuple[str, str], str]:
    return {(m.exercise, m.function): m.source for m in MISTAKES if m.batch == batch}


def test_each_batch_rewrites_a_function_at_most_once() -> None:
    for batch in BATCHES:
        touched = [m.function for m in MISTAKES if m.batch == batch]
        assert len(touched) == len(set(touched)), f"batch {batch} rewrites a function twice: {touched}"


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Graded]]:
    """graded(batch) -> that batch's grading run on exercise 05's checks; every batch starts at once."""
    with grading_batches(tmp_path_factory, _rewrites, BATCHES, "exercises/05") as get:
        yield get


@pytest.mark.parametrize("mistake", [pytest.param(m, id=m.id) for m in MISTAKES])
def test_the_check_catches_the_mistake_and_names_it(mistake: Mistake, graded) -> None:
    assert_caught_and_named(graded(mistake.batch), mistake)


@pytest.mark.parametrize("batch", BATCHES)
def test_checks_of_untouched_functions_keep_full_points(batch: str, graded) -> None:
    assert_untouched_keep_full_points(graded(batch), [m for m in MISTAKES if m.batch == batch], FUNCTION_TESTS)
