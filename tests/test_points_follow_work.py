"""Points follow work: an answer that does nothing earns (next to) nothing.

Two submissions that do no work are graded as an LMS would, on the practice model:
- every function returns None: 0 points in every exercise;
- every function returns a do-nothing answer of the right kind and shape (zeros, [], "?", an
  empty figure, an identity hook, a dict of zeros): at most 5% of any exercise.
Checks such as "no hook left behind", "the clean cache is unchanged" or "returns a Figure" hold
for these answers too; they earn points only together with a right answer (Grade.guard).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_exercise_mistakes import TOPICS, Graded, grade

MOST_FOR_NO_WORK = 0.05  # share of an exercise's points a do-nothing answer may earn

RETURNS_NONE = {
    "01": '''
def load_model(name="gpt2", device=None):
    return None
def model_summary(model):
    return None
''',
    "02": '''
def run_with_cache(model, prompt):
    return None
def count_cached(cache):
    return None
def top_prediction(model, logits):
    return None
def top_k(model, logits, k=5):
    return None
def residual_norms(cache, position=-1):
    return None
''',
    "03": '''
def attention_pattern(cache, layer, head):
    return None
def plot_attention(pattern, str_tokens, title=None):
    return None
def token_index(str_tokens, word):
    return None
def heads_attending_to(cache, str_tokens, word="France", threshold=0.3, query=-1):
    return None
def content_heads(cache_adjacent, str_tokens_adjacent, cache_apart, str_tokens_apart, word="France", threshold=0.3):
    return None
''',
    "04": '''
def logit_diff(logits, correct, incorrect):
    return None
def patch_hook(clean_cache, position):
    return None
def patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect):
    return None
''',
    "05": '''
def logit_diff_direction(model, answer, wrong):
    return None
def logit_lens(model, cache, answer, wrong):
    return None
def head_attributions(model, cache, answer, wrong):
    return None
def plot_logit_lens(values, labels, title=None):
    return None
''',
    "06": '''
def repeated_tokens(model, seq_len, batch=1, seed=0):
    return None
def induction_scores(model, tokens):
    return None
def previous_token_scores(model, tokens):
    return None
def induction_heads(scores, threshold=0.4):
    return None
def per_token_loss(model, tokens):
    return None
def copy_losses(loss):
    return None
def ablate_head(model, tokens, layer, head):
    return None
def plot_induction_scores(scores):
    return None
''',
    "07": '''
from torch import nn
class SparseAutoencoder(nn.Module):
    def __init__(self, d_in, d_sae):
        super().__init__()
    def encode(self, x):
        return None
    def decode(self, f):
        return None
    def forward(self, x):
        return None
def sae_loss(sae, x, l1_coeff):
    return None
def normalize_decoder(sae):
    return None
def train_sae(activations, d_sae, steps=500, lr=2e-3, l1_coeff=2.0, seed=0, batch_size=256):
    return None
def top_activating_tokens(sae, model, prompts, latent, k=10):
    return None
def plot_latent_activations(latent_acts, str_tokens, latents, title=None):
    return None
''',
    "08": '''
def ioi_batch(model, template, names):
    return None
def logit_diff(logits, io, s):
    return None
def ioi_metric(logits, io, s, clean_diff, corrupted_diff):
    return None
def patch_heads(model, batch):
    return None
def path_patch_to_logits(model, batch, sender):
    return None
def path_patch(model, batch, sender, receivers, component):
    return None
def attribution_patch(model, batch):
    return None
def plot_attribution_vs_patching(patching, attribution):
    return None
''',
}

RETURNS_EMPTY_OF_THE_RIGHT_SHAPE = {
    "01": '''
def load_model(name="gpt2", device=None):
    return None
def model_summary(model):
    return dict.fromkeys(["n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx"], 0)
''',
    "02": '''
import torch
def run_with_cache(model, prompt):
    return torch.zeros(1, model.to_tokens(prompt).shape[1], model.cfg.d_vocab), {}
def count_cached(cache):
    return 0
def top_prediction(model, logits):
    return "?"
def top_k(model, logits, k=5):
    return [("?", 0.0)] * k
def residual_norms(cache, position=-1):
    return torch.zeros(len([k for k in cache.keys() if k.endswith("hook_resid_pre")]) + 1)
''',
    "03": '''
import matplotlib.pyplot as plt
import torch
def attention_pattern(cache, layer, head):
    n = cache["pattern", 0].shape[-1]
    return torch.zeros(n, n)
def plot_attention(pattern, str_tokens, title=None):
    fig, ax = plt.subplots()
    return fig
def token_index(str_tokens, word):
    return 0
def heads_attending_to(cache, str_tokens, word="France", threshold=0.3, query=-1):
    return []
def content_heads(cache_adjacent, str_tokens_adjacent, cache_apart, str_tokens_apart, word="France", threshold=0.3):
    return {"content": [], "position": []}
''',
    "04": '''
import torch
def logit_diff(logits, correct, incorrect):
    return torch.tensor(0.0)
def patch_hook(clean_cache, position):
    def hook(activation, hook):
        return activation
    return hook
def patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect):
    return torch.zeros(model.cfg.n_layers, corrupted_tokens.shape[1])
''',
    "05": '''
import matplotlib.pyplot as plt
import torch
def logit_diff_direction(model, answer, wrong):
    return torch.zeros(model.cfg.d_model)
def logit_lens(model, cache, answer, wrong):
    return torch.zeros(model.cfg.n_layers + 1)
def head_attributions(model, cache, answer, wrong):
    return torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
def plot_logit_lens(values, labels, title=None):
    fig, ax = plt.subplots()
    return fig
''',
    "06": '''
import matplotlib.pyplot as plt
import torch
def repeated_tokens(model, seq_len, batch=1, seed=0):
    return torch.zeros(batch, 1 + 2 * seq_len, dtype=torch.long)
def induction_scores(model, tokens):
    return torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
def previous_token_scores(model, tokens):
    return torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
def induction_heads(scores, threshold=0.4):
    return []
def per_token_loss(model, tokens):
    return torch.zeros(tokens.shape[0], tokens.shape[1] - 1)
def copy_losses(loss):
    return 0.0, 0.0
def ablate_head(model, tokens, layer, head):
    return 0.0
def plot_induction_scores(scores):
    fig, ax = plt.subplots()
    return fig
''',
    "07": '''
import matplotlib.pyplot as plt
import torch
from torch import nn
class SparseAutoencoder(nn.Module):
    def __init__(self, d_in, d_sae):
        super().__init__()
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
    def encode(self, x):
        return torch.zeros(*x.shape[:-1], self.W_enc.shape[1])
    def decode(self, f):
        return torch.zeros(*f.shape[:-1], self.W_dec.shape[1])
    def forward(self, x):
        return self.decode(self.encode(x)), self.encode(x)
def sae_loss(sae, x, l1_coeff):
    return {"reconstruction": torch.tensor(0.0), "l1": torch.tensor(0.0), "total": torch.tensor(0.0)}
def normalize_decoder(sae):
    return None
def train_sae(activations, d_sae, steps=500, lr=2e-3, l1_coeff=2.0, seed=0, batch_size=256):
    return SparseAutoencoder(activations.shape[1], d_sae)
def top_activating_tokens(sae, model, prompts, latent, k=10):
    return []
def plot_latent_activations(latent_acts, str_tokens, latents, title=None):
    return plt.figure()
''',
    "08": '''
import matplotlib.pyplot as plt
import torch
def ioi_batch(model, template, names):
    tokens = torch.zeros_like(model.to_tokens([template.format(io=io, s=s) for io, s, _ in names]))
    zeros = torch.zeros(len(names), dtype=torch.long)
    return {"clean": tokens, "corrupted": tokens.clone(), "io": zeros, "s": zeros}
def logit_diff(logits, io, s):
    return torch.tensor(0.0)
def ioi_metric(logits, io, s, clean_diff, corrupted_diff):
    return torch.tensor(1.0)
def patch_heads(model, batch):
    return torch.ones(model.cfg.n_layers, model.cfg.n_heads)
def path_patch_to_logits(model, batch, sender):
    return 1.0
def path_patch(model, batch, sender, receivers, component):
    return 1.0
def attribution_patch(model, batch):
    return torch.ones(model.cfg.n_layers, model.cfg.n_heads)
def plot_attribution_vs_patching(patching, attribution):
    fig, ax = plt.subplots()
    return fig
''',
}

SUBMISSIONS = {"returns-none": RETURNS_NONE, "returns-empty": RETURNS_EMPTY_OF_THE_RIGHT_SHAPE}


def _write(folder: Path, modules: dict[str, str]) -> Path:
    for exercise, source in modules.items():
        target = folder / exercise / f"{TOPICS[exercise]}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.lstrip())
    return folder


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Graded]:
    def run(kind: str) -> Graded:
        root = tmp_path_factory.mktemp(kind)
        return grade(_write(root / "submission", SUBMISSIONS[kind]), root / "out")

    with ThreadPoolExecutor(max_workers=len(SUBMISSIONS)) as pool:
        return dict(zip(SUBMISSIONS, pool.map(run, SUBMISSIONS)))


def _points_by_exercise(run: Graded) -> dict[str, tuple[float, float]]:
    totals: dict[str, tuple[float, float]] = {}
    for entry in run.document["tests"]:
        exercise = entry["name"].split(" · ")[0]
        got, most = totals.get(exercise, (0.0, 0.0))
        totals[exercise] = (got + entry["score"], most + entry["max_score"])
    return totals


def test_the_submissions_cover_every_exercise_and_function() -> None:
    for modules in SUBMISSIONS.values():
        assert set(modules) == set(TOPICS)


def test_returning_none_everywhere_scores_zero(graded: dict[str, Graded]) -> None:
    run = graded["returns-none"]
    earned = {name: entry["score"] for name, entry in run.tests.items() if entry["score"] > 0}
    assert run.document["score"] == 0 and not earned, earned
    assert set(_points_by_exercise(run)) == set(TOPICS)


@pytest.mark.parametrize("exercise", sorted(TOPICS))
def test_empty_answers_of_the_right_shape_earn_at_most_5_percent(exercise: str, graded: dict[str, Graded]) -> None:
    got, most = _points_by_exercise(graded["returns-empty"])[exercise]
    assert most > 0
    earned = {name: entry["score"] for name, entry in graded["returns-empty"].tests.items() if entry["score"] > 0}
    assert got <= MOST_FOR_NO_WORK * most, f"exercise {exercise}: {got} of {most} points for no work: {earned}"


def test_a_guard_that_holds_without_a_right_answer_says_so(graded: dict[str, Graded]) -> None:
    entry = graded["returns-empty"].entry(
        "test_patch_residual_stream_measures_every_layer_and_position[France-Italy]")
    assert entry["score"] == 0
    assert "no hook left on the model" in entry["output"] and "counts once the answer is right" in entry["output"]
