"""Exercise 06's checks catch the mistakes they name (an answer that does nothing: see
test_points_follow_work.py).

The machinery is tests/test_exercise_mistakes.py's: a submission is ``solutions/`` with some
functions rewritten, graded in a subprocess as an LMS would, here on exercise 06's checks only.
Rows of one batch rewrite different functions, and every rewrite is self-contained (the reference
ablate_head calls copy_losses, so a rewritten ablate_head computes its own loss), so a mistake
costs only its own function's checks.
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


FUNCTION_TESTS = {
    "repeated_tokens": ("test_repeated_tokens",),
    "induction_scores": ("test_induction_scores",),
    "previous_token_scores": ("test_previous_token_scores",),
    "induction_heads": ("test_induction_heads",),
    "per_token_loss": ("test_per_token_loss",),
    "copy_losses": ("test_copy_losses",),
    "ablate_head": ("test_ablate_head",),
    "plot_induction_scores": ("test_plot_induction_scores",),
}

# A check on the grader's token batch has the public case n20 and a hidden twin, f"{check}{HIDDEN}",
# on a batch the exercise never shows.
HIDDEN = "_on_held_out_tokens"
I = "test_induction_scores_read_the_induction_diagonal"
P = "test_previous_token_scores_read_the_first_diagonal"
LOSS = "test_per_token_loss_scores_each_next_token"
A = "test_ablate_head_zeroes_one_heads_output"  # cases: the top induction head, the top previous-token head
A_HIDDEN = "test_ablate_head_on_held_out_tokens"  # the top previous-token head of a held-out batch
REPEATED_HIDDEN = "test_repeated_tokens_on_a_held_out_size"


def _scores(queries: str, offset: str, name: str = "induction_scores") -> str:
    """A scores function over the reference's _patterns with other queries or another diagonal."""
    return _fn(f'''
        def {name}(model, tokens):
            n = _copy_length(tokens)
            queries = {queries}
            return _diagonal_scores(_patterns(model, tokens), queries, {offset})
        ''')


def _ablation(index: str, second_copy: str = "loss[:, n + 1:]", reset: bool = True) -> str:
    """ablate_head zeroing z[index], its own loss over `second_copy`; `reset=False` leaves the hook on."""
    run = ("model.run_with_hooks(tokens, fwd_hooks=[(name, zero)])" if reset
           else "(model.add_hook(name, zero), model(tokens))[1]")
    return _fn(f'''
        def ablate_head(model, tokens, layer, head):
            def zero(z, hook):
                z[{index}] = 0.0
                return z
            name = f"blocks.{{layer}}.attn.hook_z"
            with torch.no_grad():
                logits = {run}
            loss = -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None].to(logits.device))[..., 0]
            n = (tokens.shape[1] - 1) // 2
            return float({second_copy}.mean())
        ''')


MISTAKES = [
    # ---------------------------------------------------------------- batch A
    Mistake("06-duplicate-token-diagonal", "A", "06", "induction_scores", _scores("torch.arange(n + 1, 2 * n + 1)", "n"),
            f"{I}[n20]", "q - n is the token's own first occurrence", also={f"{I}{HIDDEN}": "a duplicate-token head"}),
    Mistake("06-previous-token-from-bos", "A", "06", "previous_token_scores",
            _scores("torch.arange(1, tokens.shape[1])", "1", "previous_token_scores"), f"{P}[n20]", "position 1 is counted",
            also={f"{P}{HIDDEN}": "position 1 is counted"}),
    Mistake("06-global-rng", "A", "06", "repeated_tokens", _fn('''
        def repeated_tokens(model, seq_len, batch=1, seed=0):
            first = torch.randint(1, model.cfg.d_vocab, (batch, seq_len))  # the global RNG, seed unused
            bos = torch.full((batch, 1), model.tokenizer.bos_token_id)
            return torch.cat([bos, first, first], dim=1)
        '''), "test_repeated_tokens_repeats_a_random_run_after_bos", "seed a generator of your own",
        also={REPEATED_HIDDEN: "seed a generator of your own"}),
    Mistake("06-threshold-inclusive", "A", "06", "induction_heads", _fn('''
        def induction_heads(scores, threshold=0.4):
            found = [(l, h) for l, h in torch.nonzero(scores >= threshold).tolist()]
            return sorted(found, key=lambda lh: float(scores[lh[0], lh[1]]), reverse=True)
        '''), "test_induction_heads_lists_the_heads_above_the_threshold", "a head exactly at the threshold"),
    Mistake("06-loss-not-shifted", "A", "06", "per_token_loss", _fn('''
        def per_token_loss(model, tokens):
            with torch.no_grad():
                logits = model(tokens)
            return -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, :-1, None])[..., 0].cpu()
        '''), f"{LOSS}[n20]", "not shifted", also={f"{LOSS}{HIDDEN}": "not shifted"}),
    Mistake("06-first-token-of-each-copy-counted", "A", "06", "copy_losses", _fn('''
        def copy_losses(loss):
            n = loss.shape[1] // 2
            return float(loss[:, :n].mean()), float(loss[:, n:].mean())
        '''), "test_copy_losses_average_each_copy", "r_1 of each copy is counted"),
    Mistake("06-whole-layer-ablated", "A", "06", "ablate_head", _ablation(":, :"), f"{A}[top induction head]",
            "the whole layer was zeroed", also={f"{A}[top previous-token head]": "the whole layer was zeroed",
                                                A_HIDDEN: "the whole layer was zeroed"}),
    Mistake("06-plot-transposed", "A", "06", "plot_induction_scores", _fn('''
        def plot_induction_scores(scores):
            fig, ax = plt.subplots()
            image = ax.imshow(scores.T.numpy(), cmap="Blues")
            ax.set_xticks(range(scores.shape[1]), [str(h) for h in range(scores.shape[1])])
            ax.set_yticks(range(scores.shape[0]), [str(l) for l in range(scores.shape[0])])
            ax.set_xlabel("Head")
            ax.set_ylabel("Layer")
            ax.set_title("Induction scores")
            fig.colorbar(image, ax=ax)
            return fig
        '''), "test_plot_induction_scores_draws_a_labelled_heatmap", "the image is transposed"),
    # ---------------------------------------------------------------- batch B
    Mistake("06-induction-is-previous-token", "B", "06", "induction_scores",
            _scores("torch.arange(2, tokens.shape[1])", "1"), f"{I}[n20]", "these are previous-token scores",
            also={f"{I}{HIDDEN}": "these are previous-token scores"}),
    Mistake("06-previous-token-is-induction", "B", "06", "previous_token_scores",
            _scores("torch.arange(n + 1, 2 * n + 1)", "n - 1", "previous_token_scores"), f"{P}[n20]", "these are induction scores",
            also={f"{P}{HIDDEN}": "these are induction scores"}),
    Mistake("06-ablation-hook-left", "B", "06", "ablate_head", _ablation(":, :, head", reset=False),
            f"{A}[top induction head]", "use model.run_with_hooks",
            also={f"{A}[top previous-token head]": "use model.run_with_hooks", A_HIDDEN: "use model.run_with_hooks"}),
    Mistake("06-loss-sign-flipped", "B", "06", "per_token_loss", _fn('''
        def per_token_loss(model, tokens):
            with torch.no_grad():
                logits = model(tokens)
            return logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0].cpu()
        '''), f"{LOSS}[n20]", "the sign is flipped", also={f"{LOSS}{HIDDEN}": "the sign is flipped"}),
    Mistake("06-heads-unsorted", "B", "06", "induction_heads", _fn('''
        def induction_heads(scores, threshold=0.4):
            return [(l, h) for l, h in torch.nonzero(scores > threshold).tolist()]
        '''), "test_induction_heads_lists_the_heads_above_the_threshold", "sort by score, highest first"),
    # ---------------------------------------------------------------- batch C
    # Right values, at the cost of every activation of the model: only the cost check fails.
    Mistake("06-full-cache", "C", "06", "previous_token_scores", _fn('''
        def previous_token_scores(model, tokens):
            with torch.no_grad():
                _, cache = model.run_with_cache(tokens)
            patterns = [cache["pattern", layer] for layer in range(model.cfg.n_layers)]
            return _diagonal_scores(patterns, torch.arange(2, tokens.shape[1]), 1)
        '''), f"{P}[n20]", "a run_with_cache without names_filter",
        also={f"{P}{HIDDEN}": "a run_with_cache without names_filter"}),
    Mistake("06-bos-not-counted", "C", "06", "induction_scores", _scores("torch.arange(n, 2 * n)", "n - 1"),
            f"{I}[n20]", "BOS is not counted", also={f"{I}{HIDDEN}": "BOS is not counted"}),
    Mistake("06-whole-sequence-loss", "C", "06", "ablate_head", _ablation(":, :, head", second_copy="loss"),
            f"{A}[top induction head]", "the loss over the whole sequence",
            also={f"{A}[top previous-token head]": "the loss over the whole sequence",
                  A_HIDDEN: "the loss over the whole sequence"}),
]

BATCHES = sorted({m.batch for m in MISTAKES})


def _rewrites(batch: str) -> dict[tuple[str, str], str]:
    return {(m.exercise, m.function): m.source for m in MISTAKES if m.batch == batch}


def test_each_batch_rewrites_a_function_at_most_once() -> None:
    for batch in BATCHES:
        touched = [m.function for m in MISTAKES if m.batch == batch]
        assert len(touched) == len(set(touched)), f"batch {batch} rewrites a function twice: {touched}"
    assert len({m.id for m in MISTAKES}) == len(MISTAKES)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Graded]]:
    """graded(batch) -> that batch's grading run on exercise 06's checks; every batch starts at once."""
    with grading_batches(tmp_path_factory, _rewrites, BATCHES, "exercises/06") as get:
        yield get


@pytest.mark.parametrize("mistake", [pytest.param(m, id=m.id) for m in MISTAKES])
def test_the_check_catches_the_mistake_and_names_it(mistake: Mistake, graded) -> None:
    assert_caught_and_named(graded(mistake.batch), mistake)


@pytest.mark.parametrize("batch", BATCHES)
def test_checks_of_untouched_functions_keep_full_points(batch: str, graded) -> None:
    assert_untouched_keep_full_points(graded(batch), [m for m in MISTAKES if m.batch == batch], FUNCTION_TESTS)


def test_the_full_cache_mistake_keeps_the_points_of_its_right_values(graded) -> None:
    """Right scores from a full run_with_cache: the values earn their share, the cost check does not."""
    for name, entry in graded("C").matching(P).items():
        assert 0 < entry["score"] < entry["max_score"], (name, entry["output"])
