"""Exercise 08's checks catch the mistakes they name (an answer that does nothing: see
test_points_follow_work.py).

The machinery is tests/test_exercise_mistakes.py's: a submission is ``solutions/`` with some
functions rewritten, graded in a subprocess as an LMS would, here on exercise 08's checks only.
The reference's patching functions call its ``logit_diff`` and ``ioi_metric``: a slip in those two
reaches every patching check, so their rows say so (``also``); every other rewrite is
self-contained.
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

BATCH = "test_ioi_batch_replaces_the_second_subject"
DIFF = "test_logit_diff_reads_each_prompts_own_names"
METRIC = "test_ioi_metric_is_one_when_clean_and_zero_when_corrupted"
HEADS = "test_patch_heads_corrupts_one_head_of_the_clean_run"
TO_LOGITS = "test_path_patch_to_logits_freezes_every_other_head"
PATH = "test_path_patch_reaches_the_logits_only_through_the_receivers"
ATTRIBUTION = "test_attribution_patch_estimates_every_head_from_one_backward_pass"
PLOT = "test_plot_attribution_vs_patching_scatters_every_head"
# The hidden checks: the same functions on a template and names the exercise text never shows
# (the held-out inputs' defaults, grader.judging.held_out.DEFAULT).
BATCH_HIDDEN = "test_ioi_batch_on_a_held_out_template"
HEADS_HIDDEN = "test_patch_heads_on_a_held_out_batch"
TO_LOGITS_HIDDEN = "test_path_patch_to_logits_on_a_held_out_batch"
PATH_HIDDEN = "test_path_patch_on_a_held_out_batch"
ATTRIBUTION_HIDDEN = "test_attribution_patch_on_a_held_out_batch"

FUNCTION_TESTS = {
    "ioi_batch": (BATCH, BATCH_HIDDEN),
    "logit_diff": (DIFF,),
    "ioi_metric": (METRIC,),
    "patch_heads": (HEADS, HEADS_HIDDEN),
    "path_patch_to_logits": (TO_LOGITS, TO_LOGITS_HIDDEN),
    "path_patch": (PATH, PATH_HIDDEN),
    "attribution_patch": (ATTRIBUTION, ATTRIBUTION_HIDDEN),
    "plot_attribution_vs_patching": (PLOT,),
}
# The checks of the functions that call ioi_metric.
PATCHING = (HEADS, HEADS_HIDDEN, TO_LOGITS, TO_LOGITS_HIDDEN, PATH, PATH_HIDDEN)


def _corrupting(which: str) -> str:
    """ioi_batch replacing another occurrence than S2: `which` indexes the positions of a name."""
    return _fn(f'''
        def ioi_batch(model, template, names):
            ids = lambda name: model.to_single_token(" " + name)
            clean = model.to_tokens([template.format(io=io, s=s) for io, s, _ in names])
            io = torch.tensor([ids(io) for io, _, _ in names])
            s = torch.tensor([ids(s) for _, s, _ in names])
            corrupted = clean.clone()
            for row, (_, _, third) in enumerate(names):
                corrupted[row, {which}] = ids(third)
            return {{"clean": clean, "corrupted": corrupted, "io": io, "s": s}}
        ''')


def _patch_heads(run: str, extra: str = "", cache_per_head: bool = False) -> str:
    """patch_heads with its own metric; `run` is the tokens each head's run starts from."""
    baselines = "clean_diff, corrupted_diff, clean_cache, corrupted_cache = _baselines(model, batch)"
    return _fn(f'''
        @torch.no_grad()
        def patch_heads(model, batch):
            {baselines}
            source = corrupted_cache if {run!r} == "clean" else clean_cache
            result = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
            for layer in range(model.cfg.n_layers):
                for head in range(model.cfg.n_heads):
                    {baselines if cache_per_head else "pass"}
                    def paste(z, hook, head=head):
                        z[:, :, head] = source[hook.name][:, :, head]
                        return z
                    logits = model.run_with_hooks(batch[{run!r}], fwd_hooks=[(f"blocks.{{layer}}.attn.hook_z", paste)])
                    result[layer, head] = (logit_diff(logits, batch["io"], batch["s"]) - corrupted_diff) / (clean_diff - corrupted_diff)
            {extra}
            return result
        ''')


def _attribution(at: str = "clean", sign: str = "+", extra_passes: int = 0) -> str:
    """attribution_patch with the gradient at the `at` run, the change added with `sign`."""
    return _fn(f'''
        def attribution_patch(model, batch):
            io, s = batch["io"], batch["s"]
            with torch.no_grad():
                for _ in range({extra_passes}):
                    model(batch["clean"])  # a baseline run the exercise does not need
                corrupted_logits, corrupted_cache = model.run_with_cache(batch["corrupted"], names_filter=_is_z)
                corrupted_diff = logit_diff(corrupted_logits, io, s)
                if {at!r} == "corrupted":
                    clean_logits, clean_cache = model.run_with_cache(batch["clean"], names_filter=_is_z)
                    clean_diff = logit_diff(clean_logits, io, s)
            kept = {{}}
            def keep(z, hook):
                kept[hook.name] = z
                return z
            with torch.enable_grad():
                logits = model.run_with_hooks(batch[{at!r}], fwd_hooks=[(_is_z, keep)])
                diff = logit_diff(logits, io, s)
                top = diff.detach() if {at!r} == "clean" else clean_diff
                metric = (diff - corrupted_diff) / (top - corrupted_diff)
                names = sorted(kept, key=lambda n: int(n.split(".")[1]))
                grads = torch.autograd.grad(metric, [kept[n] for n in names])
            clean_z = {{n: kept[n].detach() for n in names}} if {at!r} == "clean" else clean_cache
            rows = [((corrupted_cache[n] - clean_z[n]) * g).sum((0, 1, 3)) for n, g in zip(names, grads)]
            return 1 {sign} torch.stack(rows).cpu()
        ''')


MISTAKES = [
    # ---------------------------------------------------------------- batch A
    Mistake("08-corrupts-s1", "A", "08", "ioi_batch", _corrupting("(clean[row] == s[row]).nonzero()[0]"),
            BATCH, "the first occurrence of the subject (S1) was replaced",
            also={BATCH_HIDDEN: "the first occurrence of the subject (S1) was replaced"}),
    Mistake("08-patching-the-wrong-way", "A", "08", "patch_heads", _patch_heads("corrupted"),
            HEADS, "the patching goes the wrong way", also={HEADS_HIDDEN: "the patching goes the wrong way"}),
    Mistake("08-path-not-frozen", "A", "08", "path_patch_to_logits", _fn('''
        @torch.no_grad()
        def path_patch_to_logits(model, batch, sender):
            clean_diff, corrupted_diff, clean_cache, corrupted_cache = _baselines(model, batch)
            layer, head = sender
            def corrupt(z, hook):  # the sender only: nothing is frozen
                z[:, :, head] = corrupted_cache[hook.name][:, :, head]
                return z
            logits = model.run_with_hooks(batch["clean"], fwd_hooks=[(f"blocks.{layer}.attn.hook_z", corrupt)])
            return float(ioi_metric(logits, batch["io"], batch["s"], clean_diff, corrupted_diff))
        '''), TO_LOGITS, "the other heads are not frozen",
        also={TO_LOGITS_HIDDEN: "the other heads are not frozen"}),
    Mistake("08-path-through-every-path", "A", "08", "path_patch", _fn('''
        @torch.no_grad()
        def path_patch(model, batch, sender, receivers, component):
            clean_diff, corrupted_diff, clean_cache, corrupted_cache = _baselines(model, batch)
            layer, head = sender
            def corrupt(z, hook):  # the patched run itself, measured: every path counts
                z[:, :, head] = corrupted_cache[hook.name][:, :, head]
                return z
            logits = model.run_with_hooks(batch["clean"], fwd_hooks=[(f"blocks.{layer}.attn.hook_z", corrupt)])
            return float(ioi_metric(logits, batch["io"], batch["s"], clean_diff, corrupted_diff))
        '''), PATH, "that is the sender's total effect, through every path",
        also={PATH_HIDDEN: "that is the sender's total effect"}),
    Mistake("08-attribution-gradient-at-corrupted", "A", "08", "attribution_patch", _attribution(at="corrupted"),
            ATTRIBUTION, "the gradient was taken at the corrupted run",
            also={ATTRIBUTION_HIDDEN: "the gradient was taken at the corrupted run"}),
    Mistake("08-plot-axes-swapped", "A", "08", "plot_attribution_vs_patching", _fn('''
        def plot_attribution_vs_patching(patching, attribution):
            fig, ax = plt.subplots()
            ax.scatter(attribution.flatten().tolist(), patching.flatten().tolist())
            ax.plot([0, 1], [0, 1], "--")
            ax.set_xlabel("Activation patching")
            ax.set_ylabel("Attribution patching")
            ax.set_title("Attribution against activation patching")
            return fig
        '''), PLOT, "x and y are swapped"),
    # ---------------------------------------------------------------- batch B
    Mistake("08-corrupts-the-indirect-object", "B", "08", "ioi_batch", _corrupting("(clean[row] == io[row]).nonzero()[0]"),
            BATCH, "the indirect object was replaced", also={BATCH_HIDDEN: "the indirect object was replaced"}),
    # Right values, and a hook left behind: only the guard fails.
    Mistake("08-patch-heads-leaves-a-hook", "B", "08", "patch_heads",
            _patch_heads("clean", extra='model.add_hook("blocks.0.attn.hook_z", lambda z, hook: z)'),
            HEADS, "use model.run_with_hooks", also={HEADS_HIDDEN: "use model.run_with_hooks"}),
    Mistake("08-attribution-sign-flipped", "B", "08", "attribution_patch", _attribution(sign="-"),
            ATTRIBUTION, "the sign is flipped", also={ATTRIBUTION_HIDDEN: "the sign is flipped"}),
    Mistake("08-path-to-logits-the-wrong-way", "B", "08", "path_patch_to_logits", _fn('''
        @torch.no_grad()
        def path_patch_to_logits(model, batch, sender):
            clean_diff, corrupted_diff, clean_cache, corrupted_cache = _baselines(model, batch)
            layer, head = sender
            def freeze(z, hook):  # the corrupted run, frozen at corrupted, with the clean sender
                z[:] = corrupted_cache[hook.name]
                if hook.layer() == layer:
                    z[:, :, head] = clean_cache[hook.name][:, :, head]
                return z
            logits = model.run_with_hooks(batch["corrupted"], fwd_hooks=[(_is_z, freeze)])
            return float(ioi_metric(logits, batch["io"], batch["s"], clean_diff, corrupted_diff))
        '''), TO_LOGITS, "the patching goes the wrong way", also={TO_LOGITS_HIDDEN: "the patching goes the wrong way"}),
    Mistake("08-path-patches-keys", "B", "08", "path_patch", _fn('''
        def path_patch(model, batch, sender, receivers, component):
            layers = sorted({layer for layer, _ in receivers})
            with torch.no_grad():
                clean_diff, corrupted_diff, clean_cache, corrupted_cache = _baselines(model, batch)
                names = {f"blocks.{layer}.attn.hook_k" for layer in layers}  # always the keys
                kept = {}
                def keep(activation, hook):
                    kept[hook.name] = activation.clone()
                    return activation
                _sender_run(model, batch, sender, clean_cache, corrupted_cache, [(lambda n: n in names, keep)])
                def paste(activation, hook):
                    for layer, head in receivers:
                        if layer == hook.layer():
                            activation[:, :, head] = kept[hook.name][:, :, head]
                    return activation
                logits = model.run_with_hooks(batch["clean"], fwd_hooks=[(lambda n: n in names, paste)])
            return float(ioi_metric(logits, batch["io"], batch["s"], clean_diff, corrupted_diff))
        '''), PATH, "that patches the receivers' k, not their q",
        also={PATH_HIDDEN: "that patches the receivers' k, not their v"}),
    # ---------------------------------------------------------------- batch C
    # Right values at too high a cost: only the cost checks fail.
    Mistake("08-attribution-extra-forward-passes", "C", "08", "attribution_patch", _attribution(extra_passes=2),
            ATTRIBUTION, "attribution_patch ran the model 4 times; the exercise allows 2",
            also={ATTRIBUTION_HIDDEN: "the exercise allows 2"}),
    Mistake("08-patch-heads-caches-per-head", "C", "08", "patch_heads", _patch_heads("clean", cache_per_head=True),
            HEADS, "patch_heads ran the model 26 times; the exercise allows 10",
            also={HEADS_HIDDEN: "the exercise allows 10"}),
    Mistake("08-corrupts-both-subjects", "C", "08", "ioi_batch", _corrupting("(clean[row] == s[row]).nonzero()[:, 0]"),
            BATCH, "both occurrences of the subject were replaced",
            also={BATCH_HIDDEN: "both occurrences of the subject were replaced"}),
    # ---------------------------------------------------------------- batch D: the metric, which every patching function uses
    Mistake("08-metric-not-normalised", "D", "08", "ioi_metric", _fn('''
        def ioi_metric(logits, io, s, clean_diff, corrupted_diff):
            return logit_diff(logits, io, s)
        '''), METRIC, "not normalised: that is the logit difference itself",
        also={**{check: None for check in PATCHING}, HEADS: "not normalised", HEADS_HIDDEN: "not normalised"}),
    # ---------------------------------------------------------------- batch E
    Mistake("08-metric-the-wrong-way-round", "E", "08", "ioi_metric", _fn('''
        def ioi_metric(logits, io, s, clean_diff, corrupted_diff):
            return (clean_diff - logit_diff(logits, io, s)) / (clean_diff - corrupted_diff)
        '''), METRIC, "normalised the wrong way round",
        also={check: "the metric is the wrong way round" for check in PATCHING}),
    # ---------------------------------------------------------------- batch F
    Mistake("08-logit-diff-every-prompts-ids", "F", "08", "logit_diff", _fn('''
        def logit_diff(logits, io, s):
            last = logits[:, -1]
            return (last[:, io] - last[:, s]).mean()
        '''), DIFF, "every prompt's IO read at every prompt",
        also={METRIC: None, ATTRIBUTION: None, ATTRIBUTION_HIDDEN: None, **{check: None for check in PATCHING}}),
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
    """graded(batch) -> that batch's grading run on exercise 08's checks; every batch starts at once."""
    with grading_batches(tmp_path_factory, _rewrites, BATCHES, "exercises/08") as get:
        yield get


@pytest.mark.parametrize("mistake", [pytest.param(m, id=m.id) for m in MISTAKES])
def test_the_check_catches_the_mistake_and_names_it(mistake: Mistake, graded) -> None:
    assert_caught_and_named(graded(mistake.batch), mistake)


@pytest.mark.parametrize("batch", BATCHES)
def test_checks_of_untouched_functions_keep_full_points(batch: str, graded) -> None:
    assert_untouched_keep_full_points(graded(batch), [m for m in MISTAKES if m.batch == batch], FUNCTION_TESTS)


def test_a_costly_answer_keeps_the_points_of_its_right_values(graded) -> None:
    """Right estimates from four forward passes: the values earn their share, the cost check does not."""
    for name, entry in graded("C").matching(ATTRIBUTION).items():
        assert 0 < entry["score"] < entry["max_score"], (name, entry["output"])
