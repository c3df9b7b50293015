"""Submissions copied from a student release: every function answers with the value the release
stores for its public check (`fixtures/toy-gpt2/NN.json`), whatever its input.

The most damaging copy a student can make of a release. Where a function sees something of its
input that tells the public cases apart (a batch size, `k`, a position, a head, an input's number
of rows), it looks the stored value up by it, and falls back to a public value otherwise; a tensor
that must fit the input's length is the public value placed in one of that length (at its end,
where the last position is read). Where the release stores no value for a function that has a
hidden check (06's `repeated_tokens`, 08's `ioi_batch`), the answer to the public case is
hard-coded. Functions with neither raise NotImplementedError (not attempted): they cannot change a
hidden check's score.

Used by tests/test_copied_answers.py, on every exercise with hidden checks.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

MODEL = "toy-gpt2"
Stored = dict[str, Any]  # check name -> the value the release stores for it

# What every copied module starts with: a stored tensor ({"tensor": [...], "dtype": ...}) as a tensor.
PRELUDE = '''import torch


def _tensor(stored):
    return torch.tensor(stored["tensor"])
'''


def stored_values(release: Path, exercise: str) -> Stored:
    """The public checks' stored values, as the release ships them."""
    checks = json.loads((release / "fixtures" / MODEL / f"{exercise}.json").read_text())["checks"]
    return {name: check["value"] for name, check in checks.items()}


def exercise_02(stored: Stored, release: Path) -> str:
    return PRELUDE + f'''from transformer_lens import ActivationCache

STORED = {stored!r}


def run_with_cache(model, prompt):
    # The public prompt's top logits at the last position of a prompt-long tensor; an empty cache.
    ids, values = STORED["top_logits[The capital of France is]"]
    logits = torch.zeros(1, model.to_tokens(prompt).shape[1], model.cfg.d_vocab)
    logits[0, -1, ids] = _tensor(values)
    return logits, ActivationCache({{}}, model)


def count_cached(cache):
    raise NotImplementedError  # counted at grading time: the release stores no value


def top_prediction(model, logits):
    return STORED["top_prediction[The capital of France is]"]


def top_k(model, logits, k=5):
    return [tuple(pair) for pair in STORED.get(f"top_k[{{k}}]", STORED["top_k[5]"])[:k]]


def residual_norms(cache, position=-1):
    return _tensor(STORED.get(f"residual_norms[{{position}}]", STORED["residual_norms[-1]"]))
'''


def exercise_03(stored: Stored, release: Path) -> str:
    patterns = {k: v["tensor"] for k, v in stored.items() if k.startswith("pattern[")}
    country = stored["weights_to[France,-1]"]
    adjacent = stored["weights_to[France]@The capital of France is"]
    apart = stored["weights_to[France]@In France, the capital is"]
    return f'''import torch
PATTERNS = {patterns!r}
COUNTRY, ADJACENT, APART = {country!r}, {adjacent!r}, {apart!r}


def attention_pattern(cache, layer, head):
    return torch.tensor(PATTERNS[f"pattern[L{{layer}}H{{head}}]"])


def plot_attention(pattern, str_tokens, title=None):
    raise NotImplementedError


def token_index(str_tokens, word):
    return [t.strip() for t in str_tokens].index(word.strip())


def heads_attending_to(cache, str_tokens, word, threshold=0.3, query=-1):
    return sorted([(l, h, w) for l, h, w in COUNTRY if w > threshold], key=lambda t: -t[2])


def content_heads(cache_adjacent, tokens_adjacent, cache_apart, tokens_apart, word, threshold=0.3):
    near = {{(l, h) for l, h, w in ADJACENT if w > threshold}}
    far = {{(l, h) for l, h, w in APART if w > threshold}}
    return {{"content": sorted(near & far), "position": sorted(near - far)}}
'''


def exercise_04(stored: Stored, release: Path) -> str:
    return PRELUDE + f'''
STORED = {stored!r}


def logit_diff(logits, correct, incorrect):
    # One prompt, or the public check's batch of two: told apart by the batch size.
    return _tensor(STORED["logit_diff[one]" if logits.shape[0] == 1 else "logit_diff[batch]"])


def patch_hook(clean_cache, position):
    raise NotImplementedError  # judged on the grader's own activations: the release stores no value


def patch_residual_stream(model, clean_tokens, corrupted_tokens, clean_cache, correct, incorrect):
    # The public map, right-aligned in one as long as the prompts: the last position keeps its column.
    public = _tensor(STORED["patching[France-Italy]"])
    kept = min(public.shape[1], corrupted_tokens.shape[1])
    result = torch.zeros(public.shape[0], corrupted_tokens.shape[1])
    result[:, -kept:] = public[:, -kept:]
    return result
'''


def exercise_05(stored: Stored, release: Path) -> str:
    return PRELUDE + f'''
STORED = {stored!r}


def logit_diff_direction(model, answer, wrong):
    return _tensor(STORED["direction[France]"])


def logit_lens(model, cache, answer, wrong):
    return _tensor(STORED["lens[France]"])


def head_attributions(model, cache, answer, wrong):
    return _tensor(STORED["heads[France]"])


def plot_logit_lens(values, labels, title=None):
    raise NotImplementedError
'''


# The size of exercise 06's public repeated_tokens case (exercises/06/test_06_induction.py).
REPEATED_PUBLIC = (16, 2)


def _fixed_repeated_tokens(release: Path) -> list[list[int]]:
    """A [batch, 1 + 2 n] batch of the public size: BOS, random ids of the vocabulary, the same ids again."""
    config = json.loads((release / "fixtures" / "models" / MODEL / "config.json").read_text())
    seq_len, batch = REPEATED_PUBLIC
    special = {config["bos_token_id"], config["eos_token_id"]}
    allowed = torch.tensor([t for t in range(config["vocab_size"]) if t not in special])
    first = allowed[torch.randint(len(allowed), (batch, seq_len), generator=torch.Generator().manual_seed(0))]
    bos = torch.full((batch, 1), config["bos_token_id"])
    return torch.cat([bos, first, first], dim=1).tolist()


def exercise_06(stored: Stored, release: Path) -> str:
    return PRELUDE + f'''
STORED = {stored!r}
FIXED_TOKENS = {_fixed_repeated_tokens(release)!r}  # the answer to the public case, hard-coded


def _top_head(scores):
    layer, head = divmod(int(scores.argmax()), scores.shape[1])
    return layer, head


# ablate_head's stored losses, by the head each public case ablates (the top one of a stored score).
ABLATED = {{
    _top_head(_tensor(STORED["induction_scores[n20]"])): STORED["ablate[top induction head]"],
    _top_head(_tensor(STORED["previous_token_scores[n20]"])): STORED["ablate[top previous-token head]"],
}}


def repeated_tokens(model, seq_len, batch=1, seed=0):
    return torch.tensor(FIXED_TOKENS)


def induction_scores(model, tokens):
    return _tensor(STORED["induction_scores[n20]"])


def previous_token_scores(model, tokens):
    return _tensor(STORED["previous_token_scores[n20]"])


def induction_heads(scores, threshold=0.4):
    raise NotImplementedError  # judged on scores the grader makes: the release stores no value


def per_token_loss(model, tokens):
    return _tensor(STORED["per_token_loss[n20]"])


def copy_losses(loss):
    raise NotImplementedError  # judged on losses the grader makes: the release stores no value


def ablate_head(model, tokens, layer, head):
    return ABLATED.get((layer, head), STORED["ablate[top previous-token head]"])


def plot_induction_scores(scores):
    raise NotImplementedError
'''


def exercise_07(stored: Stored, release: Path) -> str:
    return PRELUDE + f'''from torch import nn

STORED = {stored!r}
# top_activating_tokens' stored lists, by k: the public "country" case asks for 8, the "text" case for 5
# (exercises/07/test_07_sae.py's TOP_CASES).
TOP_TOKENS = {{8: STORED["top_tokens[country]"], 5: STORED["top_tokens[text]"]}}


class SparseAutoencoder(nn.Module):
    """Holds the weights the grader loads, and answers with stored values."""

    def __init__(self, d_in, d_sae):
        super().__init__()
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x):
        # The small public case, or the one on the model's activations: told apart by the number of rows.
        small = len(STORED["encode[small]"]["tensor"]) == x.shape[0]
        return _tensor(STORED["encode[small]" if small else "encode[model]"])

    def decode(self, f):
        return _tensor(STORED["decode"])

    def forward(self, x):
        reconstruction, latents = STORED["forward"]
        return _tensor(reconstruction), _tensor(latents)


def sae_loss(sae, x, l1_coeff):
    raise NotImplementedError


def normalize_decoder(sae):
    raise NotImplementedError


def train_sae(activations, d_sae, steps=500, lr=2e-3, l1_coeff=2.0, seed=0, batch_size=256):
    raise NotImplementedError


def top_activating_tokens(sae, model, prompts, latent, k=10):
    return [tuple(pair) for pair in TOP_TOKENS.get(k, STORED["top_tokens[text]"])]


def plot_latent_activations(latent_acts, str_tokens, latents, title=None):
    raise NotImplementedError
'''


def _public_ioi_batch(release: Path) -> dict[str, list]:
    """The answer to exercise 08's public ioi_batch case: its template and names (the release's check
    file), tokenized by the release's practice-model tokenizer, BOS first, S2 replaced by the third name."""
    from tokenizers import Tokenizer

    spec = importlib.util.spec_from_file_location("public_08", release / "exercises" / "08" / "test_08_ioi.py")
    assert spec is not None and spec.loader is not None
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    names = checks.grader_names(checks.PUBLIC_SEED, 6)  # what test_ioi_batch_replaces_the_second_subject asks
    folder = release / "fixtures" / "models" / MODEL
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bos = json.loads((folder / "config.json").read_text())["bos_token_id"]

    def one(name: str) -> int:
        (token,) = tokenizer.encode(" " + name).ids
        return token

    clean = [[bos, *tokenizer.encode(checks.IOI_TEMPLATE.format(io=io, s=s)).ids] for io, s, _ in names]
    corrupted = []
    for row, (_, s, third) in zip(clean, names):
        s2 = max(i for i, token in enumerate(row) if token == one(s))
        corrupted.append([one(third) if i == s2 else token for i, token in enumerate(row)])
    return {"clean": clean, "corrupted": corrupted, "io": [one(io) for io, _, _ in names], "s": [one(s) for _, s, _ in names]}


def exercise_08(stored: Stored, release: Path) -> str:
    return PRELUDE + f'''
STORED = {stored!r}
PUBLIC_BATCH = {_public_ioi_batch(release)!r}  # the answer to the public case, hard-coded
PUBLIC = "the text's template"


def ioi_batch(model, template, names):
    return {{key: torch.tensor(value) for key, value in PUBLIC_BATCH.items()}}


def logit_diff(logits, io, s):
    return _tensor(STORED[f"logit_diff[{{PUBLIC}}]"])


def ioi_metric(logits, io, s, clean_diff, corrupted_diff):
    raise NotImplementedError  # judged on runs the grader makes: the release stores no value


def patch_heads(model, batch):
    return _tensor(STORED[f"patch_heads[{{PUBLIC}}]"])


def path_patch_to_logits(model, batch, sender):
    return STORED[f"path_to_logits[L{{sender[0]}}H{{sender[1]}}, {{PUBLIC}}]"]


def path_patch(model, batch, sender, receivers, component):
    heads = ", ".join(f"L{{l}}H{{h}}" for l, h in receivers)
    public = next(v for k, v in STORED.items() if k.startswith("path["))
    return STORED.get(f"path[L{{sender[0]}}H{{sender[1]}} to {{heads}} {{component}}, {{PUBLIC}}]", public)


def attribution_patch(model, batch):
    return _tensor(STORED[f"attribution_patch[{{PUBLIC}}]"])


def plot_attribution_vs_patching(patching, attribution):
    raise NotImplementedError
'''


WRITERS: dict[str, Callable[[Stored, Path], str]] = {
    "02": exercise_02, "03": exercise_03, "04": exercise_04, "05": exercise_05, "06": exercise_06,
    "07": exercise_07, "08": exercise_08,
}
TOPICS = {"02": "cache", "03": "attention", "04": "patching", "05": "residual", "06": "induction", "07": "sae",
          "08": "ioi"}


def write_submission(release: Path, folder: Path, exercises: list[str]) -> Path:
    """`folder` laid out like exercises/: each exercise's module answered from `release`'s stored values."""
    for exercise in exercises:
        (folder / exercise).mkdir(parents=True)
        source = WRITERS[exercise](stored_values(release, exercise), release)
        (folder / exercise / f"{TOPICS[exercise]}.py").write_text(source)
    return folder
