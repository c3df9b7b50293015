"""The exercise checks catch the common mistakes they claim to catch, and name them.

Each row of MISTAKES is one mistake a student makes: the reference solution with ONE function
rewritten. Mistakes that touch different functions (and do not leak into each other's checks)
share a submission, so one grading run on the practice model serves several rows: a submission
is ``solutions/`` copied into a temporary folder with the rows of one batch applied, graded in a
subprocess exactly as an LMS would (``--submission DIR --gradescope-json ...``).

For every row: the check named in the row loses points and its output shows the row's hint (the
phrase is pinned from the check file's ``mistakes={...}`` or ``hint=``). For every batch: the checks
of functions that no row touches keep full points. The last batch is untrusted code (exits the
interpreter, floods stdout, zeroes the model's weights): the run must go on and grade the checks
after it on a sound model.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from python_source import parse as parse_python

REPO = Path(__file__).resolve().parent.parent
MODEL = "toy-gpt2"
RUN_TIMEOUT = 600  # seconds for one grading run (about 15 s on 2 CPU cores)
PARALLEL_RUNS = 2

# Which checks grade which function (test-function name prefixes, per the check files).
FUNCTION_TESTS: dict[str, tuple[str, ...]] = {
    "load_model": ("test_load_model_",),
    "model_summary": ("test_model_summary",),
    "run_with_cache": ("test_run_with_cache",),
    "count_cached": ("test_count_cached",),
    "top_prediction": ("test_top_prediction",),
    "top_k": ("test_top_k",),
    "residual_norms": ("test_residual_norms",),
    "attention_pattern": ("test_attention_pattern",),
    "plot_attention": ("test_plot_attention",),
    "token_index": ("test_token_index",),
    "heads_attending_to": ("test_heads_attending_to",),
    "content_heads": ("test_content_heads",),
    "logit_diff": ("test_logit_diff",),
    "patch_hook": ("test_patch_hook",),
    "patch_residual_stream": ("test_patch_residual_stream",),
}
TOPICS = {"01": "load_model", "02": "cache", "03": "attention", "04": "patching", "05": "residual",
          "06": "induction", "07": "sae", "08": "ioi"}


@dataclass(frozen=True)
class Mistake:
    id: str
    batch: str  # rows of one batch share a submission, hence a grading run
    exercise: str
    function: str
    source: str  # the whole rewritten function
    test: str  # the check (pytest name, parameters included) that must lose points ...
    hint: str | None  # ... and whose output must contain this phrase
    # Other checks this mistake costs points (name prefix -> a phrase their output must show, or None).
    also: dict[str, str | None] = field(default_factory=dict)
    # Checks of the same function that must keep full points (e.g. the case a hard-coded answer fits).
    keeps: tuple[str, ...] = ()
    xfail: str | None = None


def _fn(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


def _patching_with(hook_point: str = "hook_resid_pre",
                   normalised: str = "(patched_diff - corrupted_diff) / (clean_diff - corrupted_diff)") -> str:
    """The reference patch_residual_stream with one mistake: another hook point or formula."""
    return _fn(f'''
        def patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect):
            with torch.no_grad():
                clean_diff = logit_diff(model(clean_tokens), correct, incorrect)
                corrupted_diff = logit_diff(model(corrupted_tokens), correct, incorrect)
                result = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
                for layer in range(model.cfg.n_layers):
                    for position in range(corrupted_tokens.shape[1]):
                        logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=[
                            (f"blocks.{{layer}}.{hook_point}", patch_hook(clean_cache, position))])
                        patched_diff = logit_diff(logits, correct, incorrect)
                        result[layer, position] = {normalised}
            return result
        ''')


P = "test_patch_residual_stream_measures_every_layer_and_position"  # case France-Italy
H = "test_heads_attending_to_finds_every_head_above_the_threshold"  # cases France>0.3, France>0.01
C = "test_content_heads_tells_content_from_position"  # cases France>0.3, France>0.03
# The hidden checks of the same functions, on inputs the exercise never shows (grader/judging/held_out.py).
# Their phrases below leave out the held-out words and heads, which a course's seed changes.
P_HIDDEN = "test_patch_residual_stream_on_a_held_out_pair"
H_HIDDEN = "test_heads_attending_to_on_a_held_out_prompt"
C_HIDDEN = "test_content_heads_on_held_out_prompts"

# Checks of functions that call the student's token_index, where the exact token is found on
# every prompt the check uses: a broken token_index costs them nothing (see exercise 03's checks).
TOKEN_INDEX_DEPENDENTS = (f"{H}[France>0.3]", H_HIDDEN, f"{H}[France>0.01]",
                          "test_heads_attending_to_keeps_only_weights_strictly_above",
                          f"{C}[France>0.3]", f"{C}[France>0.03]")

MISTAKES = [
    # ---------------------------------------------------------------- batch A
    Mistake("01-no-compatibility-mode", "A", "01", "load_model", _fn('''
        def load_model(name="gpt2", device=None):
            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            model = TransformerBridge.boot_transformers(name, device=device)
            model.eval()
            return model
        '''), "test_load_model_gives_a_ready_model", "call model.enable_compatibility_mode()",
        keeps=("test_load_model_chooses_a_device_when_none_is_given",)),
    Mistake("01-d_mlp-is-d_model", "A", "01", "model_summary", _fn('''
        def model_summary(model):
            cfg = model.cfg
            return {"n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model,
                    "d_head": cfg.d_head, "d_mlp": cfg.d_model, "d_vocab": cfg.d_vocab, "n_ctx": cfg.n_ctx}
        '''), "test_model_summary_reports_the_shape", "4 * d_model in GPT-2, not d_model"),
    Mistake("02-bos-dropped", "A", "02", "run_with_cache", _fn('''
        def run_with_cache(model, prompt):
            return model.run_with_cache(model.to_tokens(prompt, prepend_bos=False))
        '''), "test_run_with_cache_returns_logits_and_cache[The capital of France is]", "the BOS token was dropped",
        also={"test_run_with_cache_on_a_held_out_prompt": "the BOS token was dropped"}),
    Mistake("02-top-prediction-stripped", "A", "02", "top_prediction", _fn('''
        def top_prediction(model, logits):
            return model.to_string(logits[0, -1].argmax().item()).strip()
        '''), "test_top_prediction_is_the_next_token[The capital of France is]", "the leading space is missing",
        also={"test_top_prediction_on_a_held_out_prompt": "the leading space is missing"}),
    Mistake("02-top-k-logits", "A", "02", "top_k", _fn('''
        def top_k(model, logits, k=5):
            values, indices = logits[0, -1].topk(k)
            return [(model.to_string(i.item()), v.item()) for v, i in zip(values, indices)]
        '''), "test_top_k_gives_probabilities_most_probable_first[5]", "these are logits, not probabilities",
        also={"test_top_k_gives_probabilities_most_probable_first[3]": "these are logits, not probabilities",
              "test_top_k_on_a_held_out_prompt": "these are logits, not probabilities"}),
    Mistake("02-final-resid-post-missing", "A", "02", "residual_norms", _fn('''
        def residual_norms(cache, position=-1):
            n_layers = cache.model.cfg.n_layers
            return torch.stack([cache["resid_pre", layer][0, position] for layer in range(n_layers)]).norm(dim=-1)
        '''), "test_residual_norms_follow_the_stream[-1]", "the final resid_post is missing",
        also={"test_residual_norms_follow_the_stream[2]": "the final resid_post is missing",
              "test_residual_norms_on_a_held_out_prompt": "the final resid_post is missing"}),
    Mistake("03-pattern-transposed", "A", "03", "attention_pattern", _fn('''
        def attention_pattern(cache, layer, head):
            return cache["pattern", layer][0, head].T
        '''), "test_attention_pattern_is_one_heads_query_by_key_map[0]", "the pattern is transposed",
        also={"test_attention_pattern_is_one_heads_query_by_key_map[1]": "the pattern is transposed",
              "test_attention_pattern_on_a_held_out_prompt": "the pattern is transposed"}),
    Mistake("03-plot-returns-none", "A", "03", "plot_attention", _fn('''
        def plot_attention(pattern, str_tokens, title=None):
            fig, ax = plt.subplots()
            image = ax.imshow(pattern.detach().cpu().numpy(), cmap="Blues")
            ax.set_xticks(range(len(str_tokens)), str_tokens)
            ax.set_yticks(range(len(str_tokens)), str_tokens)
            ax.set_xlabel("Key (attends to)")
            ax.set_ylabel("Query (from)")
            ax.set_title(title)
            fig.colorbar(image, ax=ax)
        '''), "test_plot_attention_draws_a_labelled_heatmap", "return fig"),
    Mistake("03-token-index-exact-match", "A", "03", "token_index", _fn('''
        def token_index(str_tokens, word):
            return str_tokens.index(word)
        '''), "test_token_index_ignores_the_leading_space", "GPT-2's tokens start with a space",
        # The checks of the functions that call token_index pass them the exact token (" France")
        # and keep their points, except where no word works on both prompts (the hidden check's
        # " Spain" / "Spain's").
        also={C_HIDDEN: "fix token_index first"},
        keeps=TOKEN_INDEX_DEPENDENTS),
    Mistake("04-hook-writes-into-clean-cache", "A", "04", "patch_hook", _fn('''
        def patch_hook(clean_cache, position):
            def hook(activation, hook):
                patched = clean_cache[hook.name]  # no .clone(): the clean cache's own tensor
                patched[:, :position] = activation[:, :position]
                patched[:, position + 1:] = activation[:, position + 1:]
                return patched
            return hook
        '''), "test_patch_hook_pastes_one_position_and_leaves_the_clean_cache_alone", "changed the clean cache"),
    # Its own hook, so the broken patch_hook of this batch does not leak into it.
    Mistake("04-normalisation-inverted", "A", "04", "patch_residual_stream", _fn('''
        def patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect):
            def paste(activation, hook, position):
                activation[:, position] = clean_cache[hook.name][:, position]
                return activation
            with torch.no_grad():
                clean_diff = logit_diff(model(clean_tokens), correct, incorrect)
                corrupted_diff = logit_diff(model(corrupted_tokens), correct, incorrect)
                result = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
                for layer in range(model.cfg.n_layers):
                    for position in range(corrupted_tokens.shape[1]):
                        hook = lambda activation, hook, position=position: paste(activation, hook, position)
                        logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])
                        patched_diff = logit_diff(logits, correct, incorrect)
                        result[layer, position] = (clean_diff - corrupted_diff) / (patched_diff - corrupted_diff)
            return result
        '''), f"{P}[France-Italy]", "the normalisation is inverted",
        also={P_HIDDEN: "the normalisation is inverted"}),
    # ---------------------------------------------------------------- batch B
    Mistake("01-left-in-training-mode", "B", "01", "load_model", _fn('''
        def load_model(name="gpt2", device=None):
            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            model = TransformerBridge.boot_transformers(name, device=device)
            model.enable_compatibility_mode()
            model.train()
            return model
        '''), "test_load_model_gives_a_ready_model", "call model.eval() after booting",
        keeps=("test_load_model_chooses_a_device_when_none_is_given",)),
    Mistake("02-top-prediction-first-position", "B", "02", "top_prediction", _fn('''
        def top_prediction(model, logits):
            return model.to_string(logits[0, 0].argmax().item())
        '''), "test_top_prediction_is_the_next_token[The capital of France is]",
        "that is the prediction at the first position",
        also={"test_top_prediction_on_a_held_out_prompt": "that is the prediction at the first position"}),
    Mistake("03-layer-and-head-swapped", "B", "03", "attention_pattern", _fn('''
        def attention_pattern(cache, layer, head):
            return cache["pattern", head][0, layer]
        '''), "test_attention_pattern_is_one_heads_query_by_key_map[1]", "layer and head are swapped"),
    Mistake("03-threshold-inclusive", "B", "03", "heads_attending_to", _fn('''
        def heads_attending_to(cache, str_tokens, word="France", threshold=0.3, query=-1):
            key = token_index(str_tokens, word)
            found = []
            for layer in range(cache.model.cfg.n_layers):
                for head, weight in enumerate(cache["pattern", layer][0, :, query, key].tolist()):
                    if weight >= threshold:
                        found.append((layer, head, weight))
            return sorted(found, key=lambda item: item[2], reverse=True)
        '''), "test_heads_attending_to_keeps_only_weights_strictly_above", "weight > threshold, not >=",
        keeps=(f"{H}[France>0.3]", f"{H}[France>0.01]", H_HIDDEN)),
    Mistake("03-plot-shows-and-returns-axes", "B", "03", "plot_attention", _fn('''
        def plot_attention(pattern, str_tokens, title=None):
            fig, ax = plt.subplots()
            image = ax.imshow(pattern.detach().cpu().numpy(), cmap="Blues")
            ax.set_xticks(range(len(str_tokens)), str_tokens)
            ax.set_yticks(range(len(str_tokens)), str_tokens)
            ax.set_xlabel("Key (attends to)")
            ax.set_ylabel("Query (from)")
            ax.set_title(title)
            fig.colorbar(image, ax=ax)
            plt.show()
            return ax
        '''), "test_plot_attention_draws_a_labelled_heatmap", "don't return the Axes"),
    # The course module's question, "which heads pay attention to France?", answered on the adjacent
    # prompt alone: the previous-token head L0H0 comes out as a France head.
    Mistake("03-previous-token-head-counted-as-content", "B", "03", "content_heads", _fn('''
        def content_heads(cache_adjacent, str_tokens_adjacent, cache_apart, str_tokens_apart, word="France", threshold=0.3):
            adjacent = heads_attending_to(cache_adjacent, str_tokens_adjacent, word, threshold)
            apart = {(layer, head) for layer, head, _ in heads_attending_to(cache_apart, str_tokens_apart, word, threshold)}
            return {"content": [(layer, head) for layer, head, _ in adjacent],  # every head attending to the word
                    "position": [(layer, head) for layer, head, _ in adjacent if (layer, head) not in apart]}
        '''), f"{C}[France>0.3]", "L0H0 attends to 'France' above the threshold only where it is the token before the last one",
        # Not the hidden check: on its default held-out prompts no head attends by position alone,
        # so this answer is right there (a drawn course's prompts may differ).
        also={f"{C}[France>0.03]": "L0H2 attends to 'France' above the threshold only where it is the token before the last one"}),
    # The reference patch_residual_stream calls patch_hook, so it patches every position too.
    Mistake("04-hook-patches-every-position", "B", "04", "patch_hook", _fn('''
        def patch_hook(clean_cache, position):
            def hook(activation, hook):
                activation[:] = clean_cache[hook.name]
                return activation
            return hook
        '''), "test_patch_hook_pastes_one_position_and_leaves_the_clean_cache_alone",
        "every position was patched: replace only [:, position]",
        also={P: "every position was patched at once: patch one position per run",
              P_HIDDEN: "every position was patched at once: patch one position per run"}),
    # ---------------------------------------------------------------- batch C
    Mistake("02-top-prediction-hard-coded", "C", "02", "top_prediction", _fn('''
        def top_prediction(model, logits):
            return " Paris"
        '''), "test_top_prediction_on_a_held_out_prompt", "argmax of logits[0, -1]",
        keeps=("test_top_prediction_is_the_next_token[The capital of France is]",)),
    Mistake("03-heads-sorted-ascending", "C", "03", "heads_attending_to", _fn('''
        def heads_attending_to(cache, str_tokens, word="France", threshold=0.3, query=-1):
            key = token_index(str_tokens, word)
            found = []
            for layer in range(cache.model.cfg.n_layers):
                for head, weight in enumerate(cache["pattern", layer][0, :, query, key].tolist()):
                    if weight > threshold:
                        found.append((layer, head, weight))
            return sorted(found, key=lambda item: item[2])  # forgot reverse=True
        '''), f"{H}[France>0.3]", "sort by weight, in descending order",
        keeps=("test_heads_attending_to_keeps_only_weights_strictly_above",)),
    Mistake("03-content-heads-adjacent-prompt-only", "C", "03", "content_heads", _fn('''
        def content_heads(cache_adjacent, str_tokens_adjacent, cache_apart, str_tokens_apart, word="France", threshold=0.3):
            adjacent = heads_attending_to(cache_adjacent, str_tokens_adjacent, word, threshold)
            return {"content": [(layer, head) for layer, head, _ in adjacent], "position": []}
        '''), f"{C}[France>0.3]", "only the adjacent prompt was used",
        also={f"{C}[France>0.03]": "only the adjacent prompt was used"}),  # right where no head is position-only (default held-out)
    Mistake("04-hooks-left-attached", "C", "04", "patch_residual_stream", _fn('''
        def patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect):
            with torch.no_grad():
                clean_diff = logit_diff(model(clean_tokens), correct, incorrect)
                corrupted_diff = logit_diff(model(corrupted_tokens), correct, incorrect)
                result = torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
                for layer in range(model.cfg.n_layers):
                    for position in range(corrupted_tokens.shape[1]):
                        model.reset_hooks()  # clears the previous hook, but the last one stays
                        model.add_hook(f"blocks.{layer}.hook_resid_pre", patch_hook(clean_cache, position))
                        patched_diff = logit_diff(model(corrupted_tokens), correct, incorrect)
                        result[layer, position] = (patched_diff - corrupted_diff) / (clean_diff - corrupted_diff)
            return result
        '''), f"{P}[France-Italy]", "use model.run_with_hooks (it removes its hooks), or call model.reset_hooks()",
        also={P_HIDDEN: "hooks still attached after the call"}),
    # ---------------------------------------------------------------- batch D
    Mistake("03-heads-hard-coded-for-france", "D", "03", "heads_attending_to", _fn('''
        def heads_attending_to(cache, str_tokens, word="France", threshold=0.3, query=-1):
            key = token_index(str_tokens, "France")
            found = []
            for layer in range(cache.model.cfg.n_layers):
                for head, weight in enumerate(cache["pattern", layer][0, :, query, key].tolist()):
                    if weight > threshold:
                        found.append((layer, head, weight))
            return sorted(found, key=lambda item: item[2], reverse=True)
        '''), H_HIDDEN, "raised ValueError",
        keeps=(f"{H}[France>0.3]", f"{H}[France>0.01]", "test_heads_attending_to_keeps_only_weights_strictly_above")),
    Mistake("03-content-heads-hard-coded", "D", "03", "content_heads", _fn('''
        def content_heads(cache_adjacent, str_tokens_adjacent, cache_apart, str_tokens_apart, word="France", threshold=0.3):
            return {"content": [(0, 1)], "position": [(0, 0)]}  # read off the report once, for France at 0.3
        '''), f"{C}[France>0.03]", "missing heads: L0H0, L0H3",
        keeps=(f"{C}[France>0.3]",), also={C_HIDDEN: None}),  # France's heads are not the held-out answer
    Mistake("03-heads-hard-coded-list", "E", "03", "heads_attending_to", _fn('''
        def heads_attending_to(cache, str_tokens, word="France", threshold=0.3, query=-1):
            key = token_index(str_tokens, word)
            # the heads found for France, read off the report once and kept
            return [(layer, head, cache["pattern", layer][0, head, -1, key].item()) for layer, head in [(0, 0), (0, 1)]]
        '''), f"{H}[France>0.01]", "missing heads",
        # What the hidden check reports depends on its held-out heads: it must cost points there too.
        keeps=(f"{H}[France>0.3]",), also={H_HIDDEN: None,
                                            f"{C}[": None}),  # content_heads calls heads_attending_to
    Mistake("04-normalisation-upside-down", "D", "04", "patch_residual_stream", _patching_with(normalised="(clean_diff - patched_diff) / (clean_diff - corrupted_diff)"), f"{P}[France-Italy]", "the normalisation is upside down",
        also={P_HIDDEN: "the normalisation is upside down"}),
    # ---------------------------------------------------------------- batch U: untrusted code
    Mistake("02-top-k-exits", "U", "02", "top_k", _fn('''
        def top_k(model, logits, k=5):
            import sys
            sys.exit(3)
        '''), "test_top_k_gives_probabilities_most_probable_first[5]", "SystemExit: 3",
        also={"test_top_k_gives_probabilities_most_probable_first[3]": "SystemExit: 3",
              "test_top_k_on_a_held_out_prompt": "SystemExit: 3"}),
    Mistake("03-heads-not-sorted", "U", "03", "heads_attending_to", _fn('''
        def heads_attending_to(cache, str_tokens, word="France", threshold=0.3, query=-1):
            key = token_index(str_tokens, word)
            found = []
            for layer in range(cache.model.cfg.n_layers):
                for head, weight in enumerate(cache["pattern", layer][0, :, query, key].tolist()):
                    if weight > threshold:
                        found.append((layer, head, weight))
            return found  # in loop order
        '''), f"{H}[France>0.01]", "sort by weight, in descending order"),
    Mistake("03-content-and-position-swapped", "U", "03", "content_heads", _fn('''
        def content_heads(cache_adjacent, str_tokens_adjacent, cache_apart, str_tokens_apart, word="France", threshold=0.3):
            adjacent = heads_attending_to(cache_adjacent, str_tokens_adjacent, word, threshold)
            apart = {(layer, head) for layer, head, _ in heads_attending_to(cache_apart, str_tokens_apart, word, threshold)}
            found = {"content": [], "position": []}
            for layer, head, _ in adjacent:
                found["position" if (layer, head) in apart else "content"].append((layer, head))
            return found
        '''), f"{C}[France>0.3]", "content and position are swapped",
        also={f"{C}[France>0.03]": "content and position are swapped", C_HIDDEN: "content and position are swapped"}),
    Mistake("04-patches-resid-post", "U", "04", "patch_residual_stream", _patching_with(hook_point="hook_resid_post"), f"{P}[France-Italy]", "that patches resid_post",
        also={P_HIDDEN: "that patches resid_post"}),
]

# Untrusted code that still returns the right answer: the check keeps its points, and so do the later ones.
FLOODS_STDOUT = _fn('''
    def count_cached(cache):
        for _ in range(10_000):
            print("spam " * 20)  # about 1 MB
        return len(cache)
    ''')
ZEROES_WEIGHTS = _fn('''
    def residual_norms(cache, position=-1):
        with torch.no_grad():
            for parameter in cache.model.parameters():  # the grader's own model
                parameter.zero_()
        n_layers = cache.model.cfg.n_layers
        streams = [cache["resid_pre", layer][0, position] for layer in range(n_layers)]
        streams.append(cache["resid_post", n_layers - 1][0, position])
        return torch.stack(streams).norm(dim=-1)
    ''')
UNTRUSTED_EXTRA = {("02", "count_cached"): FLOODS_STDOUT, ("02", "residual_norms"): ZEROES_WEIGHTS}
BATCHES = sorted({m.batch for m in MISTAKES})


def _rewrites(batch: str) -> dict[tuple[str, str], str]:
    rewrites = {(m.exercise, m.function): m.source for m in MISTAKES if m.batch == batch}
    if batch == "U":
        rewrites.update(UNTRUSTED_EXTRA)
    return rewrites


def test_each_batch_rewrites_a_function_at_most_once() -> None:
    for batch in BATCHES:
        touched = [(m.exercise, m.function) for m in MISTAKES if m.batch == batch]
        assert len(touched) == len(set(touched)), f"batch {batch} rewrites a function twice: {touched}"
    assert len({m.id for m in MISTAKES}) == len(MISTAKES)


# ---- building a submission and grading it ----


def replace_function(source: str, name: str, new: str) -> str:
    """`source` with the top-level function `name` (decorators included) replaced by `new`."""
    tree = parse_python(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            lines = source.splitlines(keepends=True)
            return "".join(lines[:start]) + new + "".join(lines[node.end_lineno:])
    raise LookupError(f"no function {name} in the source")


def build_submission(folder: Path, rewrites: dict[tuple[str, str], str]) -> Path:
    for exercise, topic in TOPICS.items():
        target = folder / exercise / f"{topic}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "solutions" / exercise / f"{topic}.py", target)
    for (exercise, function), new in rewrites.items():
        target = folder / exercise / f"{TOPICS[exercise]}.py"
        target.write_text(replace_function(target.read_text(), function, new))
        parse_python(target.read_text())  # the rewrite itself must be valid Python
    return folder


@dataclass
class Graded:
    """One grading run: results.json's tests, keyed by the check's pytest name."""

    tests: dict[str, dict[str, Any]]
    document: dict[str, Any]
    returncode: int
    log: str

    def entry(self, name: str) -> dict[str, Any]:
        assert name in self.tests, f"no check {name!r} in the run; checks: {sorted(self.tests)}\n{self.log[-3000:]}"
        return self.tests[name]

    def matching(self, prefix: str) -> dict[str, dict[str, Any]]:
        found = {n: e for n, e in self.tests.items() if n == prefix or (not prefix.endswith("]") and n.startswith(prefix))}
        assert found, f"no check matches {prefix!r}; checks: {sorted(self.tests)}"
        return found


def grade(submission: Path, out: Path, target: str = "exercises") -> Graded:
    """Grade `submission` on the checks under `target` (all exercises, or one: "exercises/06")."""
    out.mkdir(parents=True, exist_ok=True)
    results, junit = out / "results.json", out / "junit.xml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MECHGRADE_MODEL": MODEL, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", target, "-p", "no:cacheprovider", "-q", "--model", MODEL,
         "--submission", str(submission), "--gradescope-json", str(results), "--report-html", "",
         "--junitxml", str(junit),
         # A temp root of its own: a child pytest prunes old numbered temp dirs, this run's among them.
         "--basetemp", str(out / "basetemp")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    log = f"exit status {completed.returncode}\n{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}"
    assert results.is_file(), f"the run wrote no results.json\n{log}"
    document = json.loads(results.read_text())
    # results.json names checks by their docstring (parametrized cases share it); the JUnit XML
    # lists the same checks, in the same order, by pytest name.
    names = [case.get("name") for case in ET.parse(junit).getroot().iter("testcase")]
    assert len(names) == len(document["tests"]) == len(set(names)), f"{names}\n{log}"
    return Graded(dict(zip(names, document["tests"])), document, completed.returncode, log)


@pytest.fixture(scope="module")
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Graded]]:
    """graded(batch) -> the Graded run of that batch's submission.

    Every batch the selected tests need is graded once, two runs at a time (one torch thread each:
    the toy model is tiny, and two runs of two threads each would fight over the CPU)."""
    needed: list[str] = []
    for item in request.session.items:
        if item.path != request.path:
            continue
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        batch = params["mistake"].batch if "mistake" in params else params.get("batch")
        if item.name.startswith("test_untrusted_code"):
            batch = "U"
        if batch and batch not in needed:
            needed.append(batch)

    with grading_batches(tmp_path_factory, _rewrites, needed) as get:
        yield get


@contextmanager
def grading_batches(tmp_path_factory: pytest.TempPathFactory, rewrites: Callable[[str], dict[tuple[str, str], str]] | None,
                    batches: list[str], target: str = "exercises",
                    build: Callable[[str, Path], Path] | None = None) -> Iterator[Callable[[str], Graded]]:
    """get(batch) -> the Graded run of `solutions/` with `rewrites(batch)` applied (or of what
    `build(batch, folder)` writes), on the checks under `target`. The batches start at once,
    PARALLEL_RUNS at a time; one asked for later starts then."""

    def run(batch: str) -> Graded:
        root = tmp_path_factory.mktemp(f"batch_{batch}")
        folder = root / "submission"
        submission = build(batch, folder) if build else build_submission(folder, rewrites(batch) if rewrites else {})
        return grade(submission, root / "out", target)

    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        futures = {batch: pool.submit(run, batch) for batch in batches}

        def get(batch: str) -> Graded:
            if batch not in futures:
                futures[batch] = pool.submit(run, batch)
            return futures[batch].result()

        yield get
        for future in futures.values():
            future.cancel()


def _loses_points(entry: dict[str, Any]) -> bool:
    return entry["score"] < entry["max_score"] and entry["status"] == "failed"


def _full_points(entry: dict[str, Any]) -> bool:
    return entry["score"] == entry["max_score"] > 0 and entry["status"] == "passed"


# ---- the tests ----


@pytest.mark.parametrize(
    "mistake",
    [pytest.param(m, id=m.id, marks=[pytest.mark.xfail(strict=True, reason=m.xfail)] if m.xfail else [])
     for m in MISTAKES],
)
def test_the_check_catches_the_mistake_and_names_it(mistake: Mistake, graded) -> None:
    assert_caught_and_named(graded(mistake.batch), mistake)


@pytest.mark.parametrize("batch", BATCHES)
def test_checks_of_untouched_functions_keep_full_points(batch: str, graded) -> None:
    untouched = assert_untouched_keep_full_points(graded(batch), [m for m in MISTAKES if m.batch == batch], FUNCTION_TESTS)
    assert untouched, "every check was touched: the batch proves nothing about the rest"


def assert_caught_and_named(run: Graded, mistake: Mistake) -> None:
    """The mistake's check loses points and names it; the checks in `also` lose points too (and
    show their phrase); the checks in `keeps` keep full points."""
    entry = run.entry(mistake.test)
    assert _loses_points(entry), f"{mistake.test} kept its points:\n{entry['output']}"
    if mistake.hint:
        assert mistake.hint in entry["output"], f"hint {mistake.hint!r} missing from:\n{entry['output']}"
    for prefix, phrase in mistake.also.items():
        for name, other in run.matching(prefix).items():
            assert _loses_points(other), f"{name} kept its points:\n{other['output']}"
            if phrase:
                assert phrase in other["output"], f"{name}: {phrase!r} missing from:\n{other['output']}"
    for name in mistake.keeps:
        assert _full_points(run.entry(name)), f"{name} lost points:\n{run.entry(name)['output']}"


def assert_untouched_keep_full_points(run: Graded, mistakes: list[Mistake],
                                      function_tests: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """Every check of a function that none of `mistakes` rewrites, and that none names in `also`,
    keeps full points: a mistake costs only the checks it should. Returns those checks."""
    rewritten = {m.function for m in mistakes}
    affected = {prefix for m in mistakes for prefix in m.also}
    untouched = {
        name: entry
        for name, entry in run.tests.items()
        if not any(name.startswith(p) for f in rewritten for p in function_tests[f])
        and not any(name.startswith(prefix) for prefix in affected)
    }
    lost = {name: e["output"] for name, e in untouched.items() if not _full_points(e)}
    assert not lost, f"checks of untouched functions lost points: {json.dumps(lost, indent=1)[:4000]}"
    return untouched


def test_untrusted_code_does_not_break_later_checks(graded) -> None:
    run = graded("U")
    assert run.returncode == 1, f"pytest should end normally, with failed checks\n{run.log}"  # 1: tests failed
    # sys.exit(3) in top_k is an error of that check, not the end of the run.
    for name, entry in run.matching("test_top_k_").items():  # the hidden check's too
        assert entry["score"] == 0 and "SystemExit" in entry["output"], entry["output"]
    # 1 MB of output: the check keeps its points and the report keeps a capped excerpt.
    flooded = run.entry("test_count_cached_counts_every_activation")
    assert _full_points(flooded), flooded["output"]
    assert "spam spam" in flooded["output"] and len(flooded["output"]) < 10_000
    # Zeroed weights: the grader reloads them after the check, and says so.
    for name, entry in run.matching("test_residual_norms_").items():  # the hidden check's too
        assert _full_points(entry), entry["output"]
        assert "the model's weights were changed: copied them back" in entry["output"], entry["output"]
    # Everything graded after those checks is graded on a sound model.
    later = [n for n in run.tests if n.startswith(("test_attention_pattern", "test_plot_attention", "test_token_index",
                                                     "test_heads_attending_to_keeps", "test_logit_diff", "test_patch_hook"))]
    assert len(later) >= 7, later
    assert all(_full_points(run.tests[n]) for n in later), {n: run.tests[n]["output"] for n in later}
    assert len(json.dumps(run.document)) < 200_000


def test_a_broken_token_index_costs_points_once_and_is_named_where_it_matters(graded) -> None:
    """The cascade case: `str_tokens.index(word)` fails token_index's own check, with the error read
    as an error; every check of a function that calls it keeps its points and names the root cause."""
    run = graded("A")
    own = run.entry("test_token_index_ignores_the_leading_space")
    assert "your token_index raised ValueError: 'John' is not in list" in own["output"], own["output"]
    for name in TOKEN_INDEX_DEPENDENTS:
        output = run.entry(name)["output"]
        assert "your token_index raised ValueError" in output and "passed the exact token" in output, output
        assert "token_index finds a word whatever its surrounding whitespace" in output, output  # its own check, named
    unavoidable = run.entry(C_HIDDEN)["output"]
    assert "your content_heads raised ValueError" in unavoidable and "fix token_index first" in unavoidable, unavoidable
