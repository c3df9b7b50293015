"""A whole circuit: indirect object identification"""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
import torch

from grader.judging.compare import Tolerance
from grader.judging.mistakes import Mistake
from grader.judging.pictures import MATCHES, figure_to_artifact, reference_heatmap, remembered
from grader.judging.prompts import IOI_NAMES, IOI_TEMPLATE

TOPIC = "ioi"
DIFF_TOL = dict(atol=1e-3, rtol=1e-3)  # logit differences of about 13
METRIC = Tolerance(atol=2e-4, rtol=2e-4)  # normalised metrics near 0 and 1; path patching moves them by 0.003-0.03
METRIC_TOL = dict(atol=METRIC.atol, rtol=METRIC.rtol)
BATCH = 16

# The public checks run on the template the exercise text shows, with names drawn from the ones it
# lists (grader.judging.prompts). The hidden checks take a template and names it never shows from
# `held_out`, so an answer written for the text's prompts cannot pass them.
PUBLIC = "the text's template"  # the name a public check's expected values are stored under
HELD_OUT = "held-out"  # the name a hidden check's expected values are stored under
PUBLIC_SEED = 8  # of the public batch's names


def grader_names(seed: int, count: int = BATCH) -> list[tuple[str, str, str]]:
    """The public batch's (io, s, third) triples, from the names the text lists."""
    rng = random.Random(seed)
    return [tuple(rng.sample(IOI_NAMES, 3)) for _ in range(count)]  # type: ignore[misc]


def _id(model, name: str) -> int:
    return model.to_single_token(" " + name)


def grader_batch(model, template: str, names: list[tuple[str, str, str]], corrupt: str = "s2") -> dict[str, torch.Tensor]:
    """The grader's own batch; `corrupt` says which name the third one replaces (for the mistakes)."""
    clean = model.to_tokens([template.format(io=io, s=s) for io, s, _ in names])
    io = torch.tensor([_id(model, io) for io, _, _ in names])
    s = torch.tensor([_id(model, s) for _, s, _ in names])
    corrupted = clean.clone()
    for row, (_, _, third) in enumerate(names):
        places = {"s2": (clean[row] == s[row]).nonzero()[-1:], "s1": (clean[row] == s[row]).nonzero()[:1],
                  "both": (clean[row] == s[row]).nonzero(), "io": (clean[row] == io[row]).nonzero()}[corrupt]
        corrupted[row, places[:, 0]] = _id(model, third)
    return {"clean": clean, "corrupted": corrupted, "io": io.to(clean.device), "s": s.to(clean.device)}


def public_batch(model) -> dict[str, torch.Tensor]:
    return grader_batch(model, IOI_TEMPLATE, grader_names(PUBLIC_SEED))


def held_out_batch(model, held_out) -> dict[str, torch.Tensor]:
    return grader_batch(model, held_out.ioi_template, held_out.ioi_triples())


# ---- the grader's own computations (the expected values come from the reference; these only name mistakes) ----


def _is_z(name: str) -> bool:
    # not the reference's own body, which a release must not carry (tests/test_release.py)
    return name.rsplit(".", 1)[-1] == "hook_z"


def _diff(logits: torch.Tensor, batch) -> torch.Tensor:
    last = logits[:, -1]
    return (last.gather(1, batch["io"][:, None]) - last.gather(1, batch["s"][:, None])).mean()


class Runs:
    """Both runs of a batch once, and the patched runs a mistake would make, on the grader's model."""

    def __init__(self, model, batch) -> None:
        self.model, self.batch = model, batch
        with torch.no_grad():
            clean_logits, self.clean = model.run_with_cache(batch["clean"], names_filter=_is_z)
            corrupted_logits, self.corrupted = model.run_with_cache(batch["corrupted"], names_filter=_is_z)
        self.clean_diff, self.corrupted_diff = _diff(clean_logits, batch), _diff(corrupted_logits, batch)

    def metric(self, logits: torch.Tensor) -> float:
        return float((_diff(logits, self.batch) - self.corrupted_diff) / (self.clean_diff - self.corrupted_diff))

    @torch.no_grad()
    def heads(self, base: str = "clean", whole_layer: bool = False) -> torch.Tensor:
        """[layer, head]: the `base` run with one head's z (or its whole layer's) from the other run."""
        source = self.corrupted if base == "clean" else self.clean
        cfg = self.model.cfg
        out = torch.zeros(cfg.n_layers, cfg.n_heads)
        for layer in range(cfg.n_layers):
            for head in range(cfg.n_heads):
                index = slice(None) if whole_layer else head

                def paste(z, hook, index=index):
                    z[:, :, index] = source[hook.name][:, :, index]
                    return z

                logits = self.model.run_with_hooks(self.batch[base], fwd_hooks=[(f"blocks.{layer}.attn.hook_z", paste)])
                out[layer, head] = self.metric(logits)
        return out

    def _sender_hooks(self, sender, base: str, frozen: bool):
        layer, head = sender
        keep, other = (self.clean, self.corrupted) if base == "clean" else (self.corrupted, self.clean)

        def freeze(z, hook):
            if frozen:
                z[:] = keep[hook.name]
            if hook.layer() == layer:
                z[:, :, head] = other[hook.name][:, :, head]
            return z

        return [(_is_z, freeze)]

    @torch.no_grad()
    def to_logits(self, sender, base: str = "clean", frozen: bool = True) -> float:
        logits = self.model.run_with_hooks(self.batch[base], fwd_hooks=self._sender_hooks(sender, base, frozen))
        return self.metric(logits)

    @torch.no_grad()
    def path(self, sender, receivers, component: str, base: str = "clean", frozen: bool = True) -> float:
        names = {f"blocks.{layer}.attn.hook_{component}" for layer, _ in receivers}
        kept: dict[str, torch.Tensor] = {}

        def keep(activation, hook):
            kept[hook.name] = activation.clone()
            return activation

        self.model.run_with_hooks(self.batch[base], fwd_hooks=[*self._sender_hooks(sender, base, frozen),
                                                                (lambda n: n in names, keep)])

        def paste(activation, hook):
            for layer, head in receivers:
                if hook.layer() == layer:
                    activation[:, :, head] = kept[hook.name][:, :, head]
            return activation

        return self.metric(self.model.run_with_hooks(self.batch[base], fwd_hooks=[(lambda n: n in names, paste)]))

    def attribution(self, at: str = "clean") -> torch.Tensor:
        """[layer, head]: sum of (z_corrupted - z_clean) * the metric's gradient at the `at` run."""
        zs: dict[str, torch.Tensor] = {}

        def keep(z, hook):
            zs[hook.name] = z
            return z

        with torch.enable_grad():
            logits = self.model.run_with_hooks(self.batch[at], fwd_hooks=[(_is_z, keep)])
            metric = (_diff(logits, self.batch) - self.corrupted_diff) / (self.clean_diff - self.corrupted_diff)
            names = sorted(zs, key=lambda n: int(n.split(".")[1]))
            grads = torch.autograd.grad(metric, [zs[n] for n in names])
        return torch.stack([((self.corrupted[n] - self.clean[n]) * g).sum((0, 1, 3)) for n, g in zip(names, grads)]).cpu()


def _layer_by_head(model):
    return (("layer", [f"L{l}" for l in range(model.cfg.n_layers)]), ("head", [f"H{h}" for h in range(model.cfg.n_heads)]))


def _as_float(value):
    """A 0-dimensional tensor or a number as a float; anything else as it is (it then fails as what it is)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _cost(grade, activity, most: int, right: bool, function: str, hint: str) -> None:
    passes = activity.forward_passes
    ok = activity.known and (passes is None or passes <= most)
    message = ("what the call did with the model could not be recorded" if not activity.known
               else f"{function} ran the model {passes} times; the exercise allows {most}")
    grade.guard(f"at most {most} forward passes", ok, message, hint=hint, given=right)


def _no_hooks_left(grade, sandbox, right: bool) -> None:
    left = sandbox.hooks_on_model()
    grade.guard("no hook left on the model", not left, f"hooks still attached after the call: {left[:5]}",
                hint="use model.run_with_hooks (it removes its hooks), not model.add_hook", given=right)


def expected_patching(expected, reference, model, case: str, batch):
    """`case`: the batch's name in the stored values (PUBLIC, or the hidden checks' own)."""
    return expected(f"patch_heads[{case}]", lambda: reference.patch_heads(model, batch), **METRIC_TOL)


def expected_attribution(expected, reference, model, case: str, batch):
    return expected(f"attribution_patch[{case}]", lambda: reference.attribution_patch(model, batch), **METRIC_TOL)


# ---- the batch ----


@pytest.mark.points(2)
def test_ioi_batch_replaces_the_second_subject(student, model, grade):
    """ioi_batch: the clean prompts, the same with S2 replaced by a third name, and the answer ids"""
    _ioi_batch(IOI_TEMPLATE, grader_names(PUBLIC_SEED, 6), student, model, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_ioi_batch_on_a_held_out_template(held_out, student, model, grade):
    """ioi_batch on a template and names the exercise never shows"""
    _ioi_batch(held_out.ioi_template, held_out.ioi_triples()[:6], student, model, grade)


def _ioi_batch(template, names, student, model, grade):
    want = grader_batch(model, template, names)
    got = student.ioi_batch(model, template, names)
    keys = {"clean", "corrupted", "io", "s"}
    if not (isinstance(got, dict) and keys <= set(got) and all(isinstance(got[k], torch.Tensor) for k in keys)):
        grade.wrong_kind("returns the batch", got, 'a dict with tensors "clean", "corrupted", "io" and "s"',
                         hint='return {"clean": clean, "corrupted": corrupted, "io": io_ids, "s": s_ids}')
        return
    got = {k: got[k].cpu() for k in keys}
    want = {k: v.cpu() for k, v in want.items()}
    str_tokens = model.to_str_tokens(want["clean"][0])
    tokens_axes = (("prompt", None), ("position", str_tokens))
    grade.compare("clean tokens", got["clean"], want["clean"], tol=Tolerance(0, 0),
                                mistakes={Mistake("BOS token missing",
                                                  "the BOS token is missing: model.to_tokens adds it"): want["clean"][:, 1:]},
                                hint="model.to_tokens([template.format(io=io, s=s) for io, s, _ in names])",
                                axes=tokens_axes)
    grade.compare(
        "corrupted tokens",
        got["corrupted"],
        want["corrupted"],
        tol=Tolerance(0, 0),
        mistakes=lambda w: {
            Mistake("IO replaced instead of S2",
                    "the indirect object was replaced: the ABC prompt keeps IO and S1 and replaces S2, the subject's "
                    "second occurrence"): lambda: grader_batch(model, template, names, "io")["corrupted"].cpu(),
            Mistake("S1 replaced instead of S2",
                    "the first occurrence of the subject (S1) was replaced: replace the second one (S2), the last "
                    "position holding the subject"): lambda: grader_batch(model, template, names, "s1")["corrupted"].cpu(),
            Mistake("both subject occurrences replaced",
                    "both occurrences of the subject were replaced: only S2 changes, S1 stays"):
                lambda: grader_batch(model, template, names, "both")["corrupted"].cpu(),
            Mistake("nothing corrupted", "nothing was corrupted: replace S2 by the third name"): want["clean"],
        },
        hint="clone the clean tokens and put the third name's id at the last position holding the subject's id",
        weight=3,
        axes=tokens_axes,
    )
    grade.compare("io and s ids", [got["io"].tolist(), got["s"].tolist()], [want["io"].tolist(), want["s"].tolist()],
                  mistakes={Mistake("io and s swapped",
                                    "io and s are swapped"): [want["s"].tolist(), want["io"].tolist()]},
                  hint='model.to_single_token(" " + name) for each prompt\'s io and s, with the leading space')


# ---- the metric ----


@pytest.mark.points(2)
def test_logit_diff_reads_each_prompts_own_names(student, model, expected, reference, grade):
    """logit_diff: logit(IO) - logit(S) at the last position, each prompt with its own names, averaged"""
    batch = public_batch(model)
    with torch.no_grad():
        logits = model(batch["clean"])
    want = expected(f"logit_diff[{PUBLIC}]", lambda: reference.logit_diff(logits, batch["io"], batch["s"]), **DIFF_TOL)
    got = _as_float(student.logit_diff(logits, batch["io"], batch["s"]))
    last = logits[:, -1]
    grade.compare("logit difference", got, want,
                  mistakes=lambda w: {
                      Mistake("every prompt's IO read at every prompt",
                              "logits[:, -1, io] is [batch, batch]: every prompt's IO read at every prompt; gather one id "
                              "per prompt"): lambda: float((last[:, batch["io"]] - last[:, batch["s"]]).mean()),
                      Mistake("logit difference sign flipped", "the sign is flipped: IO minus S"): -w,
                      Mistake("first position instead of the last",
                              "that is the first position: the next token is predicted at the last, logits[:, -1]"):
                          lambda: float(_diff(logits[:, :1], batch)),
                  },
                  hint="logits[:, -1].gather(1, io[:, None]) - logits[:, -1].gather(1, s[:, None]), then .mean()")


@pytest.mark.points(2)
def test_ioi_metric_is_one_when_clean_and_zero_when_corrupted(student, model, grade):
    """ioi_metric: the logit difference normalised so that the clean run is 1 and the corrupted run 0"""
    batch = public_batch(model)
    runs = Runs(model, batch)

    def halfway(z, hook):  # a run between the two: one head corrupted (values the text never shows)
        z[:, :, 1] = runs.corrupted[hook.name][:, :, 1]
        return z

    with torch.no_grad():
        all_logits = [model(batch["clean"]), model(batch["corrupted"]),
                      model.run_with_hooks(batch["clean"], fwd_hooks=[("blocks.0.attn.hook_z", halfway)])]
    clean_diff, corrupted_diff = runs.clean_diff, runs.corrupted_diff
    diffs = [float(_diff(logits, batch)) for logits in all_logits]
    want = [(d - float(corrupted_diff)) / float(clean_diff - corrupted_diff) for d in diffs]
    got = [_as_float(student.ioi_metric(logits, batch["io"], batch["s"], clean_diff.clone(), corrupted_diff.clone()))
           for logits in all_logits]
    grade.compare("the clean run, the corrupted run, a run between", got, want, tol=METRIC,
                  mistakes={Mistake("metric not normalised",
                                    "not normalised: that is the logit difference itself"): diffs,
                            Mistake("metric the wrong way round",
                                    "normalised the wrong way round: clean must be 1 and corrupted 0"): [1 - w for w in want],
                            Mistake("corrupted difference not subtracted",
                                    "divided by the clean logit difference only: subtract the corrupted one first"):
                                [d / float(clean_diff) for d in diffs]},
                  hint="(logit_diff(logits, io, s) - corrupted_diff) / (clean_diff - corrupted_diff)", weight=3)


# ---- activation patching ----


@pytest.mark.points(3)
def test_patch_heads_corrupts_one_head_of_the_clean_run(student, sandbox, reference, model, expected, grade):
    """patch_heads: the clean run with one head's z from the corrupted run, for every head"""
    _patch_heads(PUBLIC, public_batch(model), student, sandbox, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(3)
def test_patch_heads_on_a_held_out_batch(held_out, student, sandbox, reference, model, expected, grade):
    """patch_heads on a template and names the exercise never shows"""
    _patch_heads(HELD_OUT, held_out_batch(model, held_out), student, sandbox, reference, model, expected, grade)


def _patch_heads(case, batch, student, sandbox, reference, model, expected, grade):
    want = expected_patching(expected, reference, model, case, batch)
    with sandbox.watching() as activity:
        got = student.patch_heads(model, batch)
    runs = functools.cache(lambda: Runs(model, batch))
    right = grade.compare(
        "normalised metric [layer, head]",
        got,
        want,
        mistakes=lambda w: {
            Mistake("patched clean into corrupted",
                    "the patching goes the wrong way: that pastes the clean head into the corrupted run (exercise 04's "
                    "direction); here the clean run gets one corrupted head"): lambda: runs().heads(base="corrupted"),
            Mistake("metric the wrong way round",
                    "the metric is the wrong way round: clean must be 1 and corrupted 0"): 1 - w,
            Mistake("metric not normalised",
                    "not normalised: those are logit differences; pass them through ioi_metric"):
                lambda: w * float(runs().clean_diff - runs().corrupted_diff) + float(runs().corrupted_diff),
            Mistake("whole layer corrupted",
                    "every head of the layer was corrupted: z[:, :, head] is one head"): lambda: runs().heads(whole_layer=True),
        },
        hint="for each (layer, head): run_with_hooks on the clean tokens with a hook on blocks.{layer}.attn.hook_z "
             "that sets z[:, :, head] from the corrupted cache; then ioi_metric",
        weight=3,
        axes=_layer_by_head(model),
    )
    cfg = model.cfg
    grade.figure(reference_heatmap(want.value.float(), [f"H{h}" for h in range(cfg.n_heads)],
                                   [f"L{l}" for l in range(cfg.n_layers)], f"reference: patch_heads ({case})",
                                   caption=MATCHES if right else "", group=case, xlabel="head", ylabel="layer"))
    _cost(grade, activity, 2 + cfg.n_layers * cfg.n_heads, right, "patch_heads",
          "cache both runs once (run_with_cache with a names_filter for hook_z), then one run per head")
    _no_hooks_left(grade, sandbox, right)


# ---- path patching ----


@pytest.mark.points(2)
def test_path_patch_to_logits_freezes_every_other_head(student, sandbox, reference, model, expected, grade):
    """path_patch_to_logits: the sender corrupted, every other head frozen at clean"""
    _path_patch_to_logits(PUBLIC, public_batch(model), (0, 1), student, sandbox, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_path_patch_to_logits_on_a_held_out_batch(held_out, student, sandbox, reference, model, expected, grade):
    """path_patch_to_logits on a template and names the exercise never shows"""
    # L0H1, the head whose corruption matters: its direct effect stands clear of its total effect
    # (that of an answer that freezes nothing), where a head that matters little is within 0.001 of it.
    _path_patch_to_logits(HELD_OUT, held_out_batch(model, held_out), (0, 1), student, sandbox, reference, model,
                          expected, grade)


def _path_patch_to_logits(case, batch, sender, student, sandbox, reference, model, expected, grade):
    which = f"L{sender[0]}H{sender[1]}, {case}"
    want = expected(f"path_to_logits[{which}]", lambda: reference.path_patch_to_logits(model, batch, sender), **METRIC_TOL)
    total = expected_patching(expected, reference, model, case, batch).value[sender]
    with sandbox.watching() as activity:
        got = _as_float(student.path_patch_to_logits(model, batch, sender))
    runs = functools.cache(lambda: Runs(model, batch))
    right = grade.compare(
        f"metric with L{sender[0]}H{sender[1]} corrupted, the others frozen",
        got,
        want,
        mistakes=lambda w: {
            Mistake("other heads not frozen",
                    "the other heads are not frozen: the sender's effect also flows through later heads (that is "
                    "patch_heads' total effect); set every other head's z to its clean value"): float(total),
            Mistake("patched clean into corrupted",
                    "the patching goes the wrong way: the clean run gets the corrupted sender, not the other way round"):
                lambda: runs().to_logits(sender, base="corrupted"),
            Mistake("metric the wrong way round",
                    "the metric is the wrong way round: clean must be 1 and corrupted 0"): 1 - w,
        },
        hint="one hook on every hook_z of a clean run: z[:] = clean z, then the sender's head from the corrupted "
             "cache; ioi_metric of that run",
        weight=2,
    )
    _cost(grade, activity, 3, right, "path_patch_to_logits", "cache both runs once, then one patched run")
    _no_hooks_left(grade, sandbox, right)


@pytest.mark.points(2)
def test_path_patch_reaches_the_logits_only_through_the_receivers(student, sandbox, reference, model, expected, grade):
    """path_patch: the sender's effect through the receivers' q, k or v only"""
    _path_patch(PUBLIC, public_batch(model), (0, 1), [(1, 0), (1, 1), (1, 2), (1, 3)], "q",
                student, sandbox, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_path_patch_on_a_held_out_batch(held_out, student, sandbox, reference, model, expected, grade):
    """path_patch on a template and names the exercise never shows, to other receivers' values"""
    _path_patch(HELD_OUT, held_out_batch(model, held_out), (0, 1), [(1, 1), (1, 3)], "v",
                student, sandbox, reference, model, expected, grade)


def _path_patch(case, batch, sender, receivers, component, student, sandbox, reference, model, expected, grade):
    layer = receivers[0][0]
    heads = ", ".join(f"L{l}H{h}" for l, h in receivers)
    which = f"L{sender[0]}H{sender[1]} to {heads} {component}, {case}"
    want = expected(f"path[{which}]", lambda: reference.path_patch(model, batch, sender, receivers, component), **METRIC_TOL)
    total = expected_patching(expected, reference, model, case, batch).value[sender]
    with sandbox.watching() as activity:
        got = _as_float(student.path_patch(model, batch, sender, list(receivers), component))
    runs = functools.cache(lambda: Runs(model, batch))
    others = [c for c in ("q", "k", "v") if c != component]
    right = grade.compare(
        f"metric through {component} of {heads}",
        got,
        want,
        mistakes=lambda w: {
            Mistake("total effect instead of the path",
                    "that is the sender's total effect, through every path: keep the receivers' inputs from the patched "
                    "run and paste only those into a fresh clean run"): float(total),
            Mistake("direct effect instead of the path",
                    "that is the sender's direct effect (path_patch_to_logits): paste the receivers' inputs into a fresh "
                    "clean run and let everything after them recompute"): lambda: runs().to_logits(sender),
            **{Mistake(f"{c} patched instead of {component}",
                       f"that patches the receivers' {c}, not their {component}"): (lambda c=c: runs().path(sender, receivers, c))
               for c in others},
            Mistake("whole receiver layer patched",
                    "every head of the receivers' layer was patched: only the receivers' heads"):
                lambda: runs().path(sender, [(layer, h) for h in range(model.cfg.n_heads)], component),
            Mistake("patched clean into corrupted",
                    "the patching goes the wrong way: the clean run gets the corrupted sender"):
                lambda: runs().path(sender, receivers, component, base="corrupted"),
            Mistake("metric the wrong way round",
                    "the metric is the wrong way round: clean must be 1 and corrupted 0"): 1 - w,
        },
        hint="run 1: clean tokens, sender's z corrupted, every other z frozen at clean, keep "
             "blocks.{layer}.attn.hook_{component}; run 2: clean tokens with the receivers' heads of that input pasted",
        weight=2,
    )
    _cost(grade, activity, 4, right, "path_patch", "cache both runs once, then the sender's run and the receivers' run")
    _no_hooks_left(grade, sandbox, right)


# ---- attribution patching ----


@pytest.mark.points(3)
def test_attribution_patch_estimates_every_head_from_one_backward_pass(student, sandbox, reference, model, expected,
                                                                        grade):
    """attribution_patch: 1 + (z_corrupted - z_clean) . the metric's gradient at the clean run, per head"""
    _attribution_patch(PUBLIC, public_batch(model), student, sandbox, reference, model, expected, grade)


@pytest.mark.hidden
@pytest.mark.points(3)
def test_attribution_patch_on_a_held_out_batch(held_out, student, sandbox, reference, model, expected, grade):
    """attribution_patch on a template and names the exercise never shows"""
    _attribution_patch(HELD_OUT, held_out_batch(model, held_out), student, sandbox, reference, model, expected, grade)


def _attribution_patch(case, batch, student, sandbox, reference, model, expected, grade):
    want = expected_attribution(expected, reference, model, case, batch)
    with sandbox.watching() as activity:
        got = student.attribution_patch(model, batch)
    runs = functools.cache(lambda: Runs(model, batch))
    right = grade.compare(
        "estimated metric [layer, head]",
        got,
        want,
        mistakes=lambda w: {
            Mistake("gradient at the corrupted run",
                    "the gradient was taken at the corrupted run: take it at the clean run, the point the estimate moves "
                    "away from"): lambda: 1 + runs().attribution(at="corrupted"),
            Mistake("attribution for clean into corrupted",
                    "that estimates pasting the clean head into the corrupted run, with the gradient there; this exercise "
                    "corrupts one head of the clean run"): lambda: -runs().attribution(at="corrupted"),
            Mistake("attribution sign flipped",
                    "the sign is flipped: the change is (z_corrupted - z_clean) . gradient"): 2 - w,
            Mistake("clean metric (1) not added",
                    "that is the estimated change alone: add the clean run's metric, 1, to put it on patch_heads' scale"): w - 1,
        },
        hint="keep the clean run's z tensors in hooks, torch.autograd.grad(ioi_metric(...), zs); per head, sum "
             "(z_corrupted - z_clean) * grad over batch, position and d_head; add 1",
        weight=3,
        axes=_layer_by_head(model),
    )
    _cost(grade, activity, 2, right, "attribution_patch",
          "one forward pass of the corrupted run (no gradient), one of the clean run and one backward pass")
    _no_hooks_left(grade, sandbox, right)


# ---- the plot ----


def _reference_scatter(patching: torch.Tensor, attribution: torch.Tensor, caption: str):
    import matplotlib.pyplot as plt

    def draw():
        fig, ax = plt.subplots(figsize=(4, 4))
        x, y = patching.flatten().tolist(), attribution.flatten().tolist()
        ax.scatter(x, y)
        n_heads = patching.shape[1]
        for index, point in enumerate(zip(x, y)):
            ax.annotate(f"L{index // n_heads}H{index % n_heads}", point, fontsize=8)
        ax.plot([min(x + y), max(x + y)], [min(x + y), max(x + y)], "--", color="grey")
        ax.set_xlabel("Activation patching")
        ax.set_ylabel("Attribution patching")
        return figure_to_artifact(fig, "reference: attribution against activation patching", caption, group="scatter")

    key = ("scatter", patching.numpy().tobytes(), attribution.numpy().tobytes(), caption)
    return remembered(key, draw)


@pytest.mark.points(3)
def test_plot_attribution_vs_patching_scatters_every_head(student, reference, model, expected, grade):
    """plot_attribution_vs_patching: one point per head, activation patching on x, attribution on y"""
    batch = public_batch(model)
    patching = expected_patching(expected, reference, model, PUBLIC, batch).value.float()
    attribution = expected_attribution(expected, reference, model, PUBLIC, batch).value.float()
    want = torch.stack([patching.flatten(), attribution.flatten()], dim=1)
    answer = student.plot_attribution_vs_patching(patching.clone(), attribution.clone())
    fig = grade.student_figure(answer, _reference_scatter(patching, attribution, ""))
    if fig is None:
        return
    sets = [points for ax in fig.axes for points in ax.points if points.shape == tuple(want.shape)]
    if not sets:
        grade.check("one point per head", False,
                    f"no scatter (or line) of {want.shape[0]} points in the figure",
                    hint="ax.scatter(patching.flatten(), attribution.flatten())", weight=2)
        return
    right = grade.compare("the points (x, y)", torch.as_tensor(sets[0]).float(), want, tol=METRIC,
                          mistakes={Mistake("x and y swapped",
                                            "x and y are swapped: activation patching goes on x"): want.flip(1)},
                          hint="x = patching.flatten(), y = attribution.flatten(), in [layer, head] order", weight=2)
    ax = next(ax for ax in fig.axes if any(p.shape == tuple(want.shape) for p in ax.points))
    grade.compare("axis labels", [ax.xlabel, ax.ylabel], ["Activation patching", "Attribution patching"],
                  mistakes={Mistake("axis labels swapped",
                                    "the axis labels are swapped"): ["Attribution patching", "Activation patching"]},
                  hint="ax.set_xlabel('Activation patching') and ax.set_ylabel('Attribution patching')")
    diagonal = any(len(p) >= 2 and np.allclose(p[:, 0], p[:, 1]) and np.ptp(p[:, 0]) > 0 for a in fig.axes for p in a.points)
    grade.guard("a y = x line", diagonal, "no line where y equals x", given=right,
                hint="ax.plot([low, high], [low, high], '--'): the points on it are the heads the estimate gets right")
    grade.guard("a title", bool(f"{ax.title}{fig.suptitle}".strip()), "the plot has no title", given=right,
                hint="ax.set_title('Attribution patching against activation patching')")
