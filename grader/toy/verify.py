"""Measure what the toy model must show, on the saved folder, through TransformerLens.

The model is loaded with `grader.models.boot` (TransformerBridge + compatibility mode), exactly
as students get it, so a figure here is a figure an exercise can reproduce.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from grader.models import boot
from grader.toy.corpus import CAPITALS, NAMES

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

# Thresholds the shipped model must meet (tests/test_toy_model.py asserts the same ones).
CAPITAL_MIN = 0.95  # share of countries whose capital is the top next token
COUNTRY_ATTN_MIN = 0.5  # best head's mean attention from " is" to the country (adjacent, and not)
INDUCTION_MIN = 0.5  # best head's induction score on repeated random tokens
IOI_MIN = 0.90  # share of IOI prompts with logit(IO) > logit(S)
# With the previous-token head's output zeroed, the induction heads lose their way (exercise 06):
COMPOSITION_LOSS_MIN = 5.0  # ... the second copy's loss rises to at least this (0.05 with the head)
COMPOSITION_INDUCTION_MAX = 0.5  # ... and no later head keeps an induction score this high
MAX_BYTES = 10_000_000  # model.safetensors size limit

CAPITAL_PROMPT = "The capital of {country} is"  # the country is the token right before " is"
# The country is NOT the token before the last one: only a head that finds it by content attends to it.
APART_PROMPTS = ("In {country}, the capital is", "{country}'s capital is")
ROLE_MIN = 0.5  # a head takes a role when its score for it is at least this
IOI_PROMPT = "When {a} and {b} went to the store, {b} gave a drink to"
INDUCTION_LEN = 20  # n: tokens [BOS, r_1..r_n, r_1..r_n]
INDUCTION_BATCH = 10
INDUCTION_SEED = 0


# The per-head scores verify.json stores (`head_scores`), and the role each one names. A head's
# roles are the scores >= ROLE_MIN, in this order. "country_adjacent" names no role: a
# previous-token head scores high on it without knowing anything about countries.
ROLES: dict[str, str] = {
    "induction": "induction",
    "previous_token": "previous-token",
    "country_apart": "country by content",
    "current_token": "current-token",
    "first_token": "first-token",
    "duplicate_token": "duplicate-token",
    "end_to_io": "end to IO",
    "end_to_s2": "end to S2",
}
HEAD_SCORES = ("previous_token", "current_token", "first_token", "induction", "country_adjacent", "country_apart",
               "duplicate_token", "end_to_io", "end_to_s2")
# Exercise 08's batch for the IOI figures: IO_PROMPT with (io, s, c) triples of distinct names, seeded.
IOI_TRIPLES = 256
IOI_SEED = 0


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def roles_of(scores: dict[str, float], threshold: float = ROLE_MIN) -> list[str]:
    """The roles whose score is at least `threshold`, in the order of ROLES."""
    return [role for key, role in ROLES.items() if scores[key] >= threshold]


@dataclass(frozen=True)
class VerifyReport:
    capital_accuracy: float  # share of countries where " <capital>" is the top next token
    capital_misses: tuple[str, ...]  # the countries that failed
    country_attn_head: tuple[int, int]  # (layer, head) with the most attention " is" -> country
    country_attn: float  # that head's attention, mean over countries
    induction_head: tuple[int, int]  # (layer, head) with the highest induction score
    induction_score: float
    ioi_accuracy: float  # share of prompts with logit(" A") - logit(" B") > 0
    ioi_mean_logit_diff: float
    ioi_prompts: int
    n_params: int
    size_bytes: int  # of model.safetensors
    sha256: str  # of model.safetensors
    train_seconds: float | None = None  # wall-clock training time, filled in by the build
    train_cpu_seconds: float | None = None  # CPU time of the training loop, filled in by the build
    # What each head does (absent from a verify.json written before they were measured):
    # "L0H0" -> {score name (HEAD_SCORES) -> score}, and "L0H0" -> its roles (ROLES, >= role_threshold).
    head_scores: dict[str, dict[str, float]] | None = None
    head_roles: dict[str, list[str]] | None = None
    role_threshold: float | None = None
    repeat_loss: tuple[float, float] | None = None  # mean loss on the first and on the second copy
    # The previous-token head feeding the induction heads: that head, and with its z zeroed, the
    # induction score of every head after its layer and the loss on both copies.
    composition: dict[str, Any] | None = None
    # The IOI circuit (exercise 08), on IOI_PROMPT and its ABC corruption: per head, the direct logit
    # attribution in the IO - S direction and the metric with its z corrupted; per component, the
    # direct logit attribution; the head that moves S2 to the end, and where its effect goes.
    ioi_circuit: dict[str, Any] | None = None

    @property
    def content_head(self) -> tuple[tuple[int, int], float] | None:
        """The head attending most to the country where it is not adjacent, and that attention."""
        if not self.head_scores:
            return None
        name = max(self.head_scores, key=lambda n: self.head_scores[n]["country_apart"])  # type: ignore[index]
        layer, head = (int(x) for x in name[1:].split("H"))
        return (layer, head), self.head_scores[name]["country_apart"]

    @property
    def checks(self) -> dict[str, tuple[float, float, bool]]:
        """name -> (measured, threshold, passed)."""
        rows = {
            "capital top-1 accuracy": (self.capital_accuracy, CAPITAL_MIN),
            "country attention (best head)": (self.country_attn, COUNTRY_ATTN_MIN),
        }
        if self.content_head is not None:
            rows["country attention, not adjacent"] = (self.content_head[1], COUNTRY_ATTN_MIN)
        rows["induction score (best head)"] = (self.induction_score, INDUCTION_MIN)
        if self.composition is not None:
            rows["copy loss, prev-token head off"] = (self.composition["repeat_loss"][1], COMPOSITION_LOSS_MIN)
        rows |= {
            "IOI accuracy": (self.ioi_accuracy, IOI_MIN),
        }
        out = {k: (v, t, v >= t) for k, (v, t) in rows.items()}
        out["model.safetensors < 10 MB"] = (self.size_bytes / 1e6, MAX_BYTES / 1e6, self.size_bytes < MAX_BYTES)
        return out

    @property
    def passed(self) -> bool:
        return all(ok for _, _, ok in self.checks.values())

    def table(self) -> str:
        lines = [f"{'check':<32}{'measured':>10}{'needed':>10}  result"]
        for name, (value, threshold, ok) in self.checks.items():
            lines.append(f"{name:<32}{value:>10.3f}{threshold:>10.3f}  {'PASS' if ok else 'FAIL'}")
        content = self.content_head
        lines.append(f"most attention to the adjacent country {head_name(*self.country_attn_head)}"
                     + (f", to the country by content {head_name(*content[0])}" if content else "")
                     + f", induction head {head_name(*self.induction_head)}, "
                     f"IOI mean logit diff {self.ioi_mean_logit_diff:.2f} over {self.ioi_prompts} prompts")
        if self.head_scores and self.head_roles:
            lines.append(f"{'head':<6}" + "".join(f"{k:>18}" for k in HEAD_SCORES) + "  roles")
            for name, scores in self.head_scores.items():
                lines.append(f"{name:<6}" + "".join(f"{scores[k]:>18.3f}" for k in HEAD_SCORES)
                             + "  " + (", ".join(self.head_roles[name]) or "-"))
        if self.capital_misses:
            shown = ", ".join(self.capital_misses[:10])
            more = f" ... ({len(self.capital_misses)} in all)" if len(self.capital_misses) > 10 else ""
            lines.append(f"capital misses: {shown}{more}")
        lines.append(f"{self.n_params:,} parameters, {self.size_bytes:,} bytes, sha256 {self.sha256}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> VerifyReport:
        raw: dict[str, Any] = json.loads(text)
        names = {f.name for f in fields(cls)}
        optional = {f.name for f in fields(cls) if f.default is None}
        if missing := names - raw.keys() - optional:
            raise ValueError(f"verify.json lacks {sorted(missing)}")
        kept = {k: v for k, v in raw.items() if k in names}
        for key in ("capital_misses", "country_attn_head", "induction_head", "repeat_loss"):
            if kept.get(key) is not None:
                kept[key] = tuple(kept[key])
        return cls(**kept)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(folder: Path) -> TransformerBridge:
    """Boot the saved folder the way students do, never touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return boot(str(folder), "cpu")


def _single_token(model: TransformerBridge, word: str) -> int:
    ids = model.to_tokens(" " + word, prepend_bos=False)[0]
    if ids.numel() != 1:
        raise ValueError(f"{word!r} is not a single token for this model: {model.to_str_tokens(' ' + word)}")
    return int(ids[0])


@torch.no_grad()
def measure_capitals(model: TransformerBridge) -> tuple[float, tuple[str, ...], tuple[int, int], float]:
    """Top-1 capital accuracy, the misses, and the head attending most from ' is' to the country."""
    countries = list(CAPITALS)
    tokens = model.to_tokens([CAPITAL_PROMPT.format(country=c) for c in countries])
    country_pos = 4  # [BOS, The, capital, of, <country>, is]
    if tokens.shape[1] != 6 or any(int(tokens[i, country_pos]) != _single_token(model, c) for i, c in enumerate(countries)):
        raise ValueError("capital prompts did not tokenize as [BOS, The, capital, of, <country>, is]")
    logits, cache = model.run_with_cache(tokens)
    top = logits[:, -1].argmax(-1)
    want = torch.tensor([_single_token(model, CAPITALS[c]) for c in countries])
    misses = tuple(c for c, ok in zip(countries, (top == want).tolist()) if not ok)
    # attn[layer, head] = mean over countries of attention from the last position to the country
    attn = torch.stack([cache["pattern", layer][:, :, -1, country_pos].mean(0) for layer in range(model.cfg.n_layers)])
    layer, head = divmod(int(attn.argmax()), attn.shape[1])
    return 1 - len(misses) / len(countries), misses, (layer, head), float(attn[layer, head])


def repeated_random_tokens(model: TransformerBridge) -> torch.Tensor:
    """[INDUCTION_BATCH, 1 + 2n]: BOS, then n uniformly random token ids (never BOS) twice."""
    n = INDUCTION_LEN
    gen = torch.Generator().manual_seed(INDUCTION_SEED)
    bos = model.tokenizer.bos_token_id
    rand = torch.randint(1, model.cfg.d_vocab, (INDUCTION_BATCH, n), generator=gen)  # never BOS
    return torch.cat([torch.full((INDUCTION_BATCH, 1), bos), rand, rand], dim=1)


def _induction_scores(cache: Any, n_layers: int) -> torch.Tensor:
    """[layer, head]: mean attention from each second-copy token to the token after its first copy."""
    n = INDUCTION_LEN
    # With BOS at 0, r_j sits at j and again at n + j; query q = n + j should look at q - n + 1.
    queries = torch.arange(n + 1, 2 * n + 1)
    return torch.stack([cache["pattern", layer][:, :, queries, queries - n + 1].mean((0, 2)) for layer in range(n_layers)])


@torch.no_grad()
def measure_induction(model: TransformerBridge) -> tuple[tuple[int, int], float]:
    """Best head's mean attention from each second-copy token to the token after its first copy."""
    _, cache = model.run_with_cache(repeated_random_tokens(model))
    scores = _induction_scores(cache, model.cfg.n_layers)
    layer, head = divmod(int(scores.argmax()), scores.shape[1])
    return (layer, head), float(scores[layer, head])


def _country_attention(model: TransformerBridge, template: str) -> torch.Tensor:
    """[layer, head]: attention from the last position to the country, mean over every country."""
    countries = list(CAPITALS)
    prompts = [template.format(country=c) for c in countries]
    tokens = model.to_tokens(prompts)
    words = [[t.strip() for t in model.to_str_tokens(p)] for p in prompts]
    positions = {w.index(c) if c in w else -1 for w, c in zip(words, countries)}
    if len(positions) != 1 or -1 in positions or len({len(w) for w in words}) != 1:
        raise ValueError(f"{template!r}: every country must be one token, at the same position")
    _, cache = model.run_with_cache(tokens)
    key = positions.pop()
    return torch.stack([cache["pattern", layer][:, :, -1, key].mean(0) for layer in range(model.cfg.n_layers)])


@torch.no_grad()
def measure_heads(model: TransformerBridge) -> tuple[dict[str, dict[str, float]], tuple[float, float]]:
    """Every head's score for each of HEAD_SCORES, and the loss on the two copies of random tokens.

    - previous_token / current_token: mean attention from each position q >= 2 to q - 1 / to q, on
      the repeated random tokens of the induction score (no content to find, only positions);
    - first_token: mean attention to position 0 (BOS) from positions 2 on of the capital prompts
      (text with nothing to copy, where a head with no job rests on BOS);
    - induction: as in measure_induction;
    - country_adjacent: from the last position of CAPITAL_PROMPT to the country, the token before it;
    - country_apart: the same on APART_PROMPTS, where the country is not adjacent (mean over both).
    """
    n_layers = model.cfg.n_layers
    tokens = repeated_random_tokens(model)
    logits, cache = model.run_with_cache(tokens)
    queries = torch.arange(2, tokens.shape[1])
    previous = torch.stack([cache["pattern", layer][:, :, queries, queries - 1].mean((0, 2)) for layer in range(n_layers)])
    current = torch.stack([cache["pattern", layer][:, :, queries, queries].mean((0, 2)) for layer in range(n_layers)])
    induction = _induction_scores(cache, n_layers)
    # Loss of each next token; the first copy's r_2..r_n are unpredictable, the second copy's
    # r_2..r_n are copies (its r_1 follows r_n and is left out of both).
    n = INDUCTION_LEN
    losses = -logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    repeat_loss = (float(losses[:, 1:n].mean()), float(losses[:, n + 1 :].mean()))

    prompts = model.to_tokens([CAPITAL_PROMPT.format(country=c) for c in CAPITALS])
    _, text_cache = model.run_with_cache(prompts)
    first = torch.stack([text_cache["pattern", layer][:, :, 2:, 0].mean((0, 2)) for layer in range(n_layers)])
    adjacent = _country_attention(model, CAPITAL_PROMPT)
    apart = torch.stack([_country_attention(model, t) for t in APART_PROMPTS]).mean(0)

    by_name = {"previous_token": previous, "current_token": current, "first_token": first,
               "induction": induction, "country_adjacent": adjacent, "country_apart": apart}
    scores = {
        head_name(layer, head): {k: float(by_name[k][layer, head]) for k in HEAD_SCORES if k in by_name}
        for layer in range(n_layers)
        for head in range(model.cfg.n_heads)
    }
    return scores, repeat_loss


def _repeat_loss(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[float, float]:
    """Mean loss on r_2..r_n of the first copy and of the second (r_1 of each is unpredictable)."""
    n = INDUCTION_LEN
    losses = -logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    return float(losses[:, 1:n].mean()), float(losses[:, n + 1 :].mean())


@torch.no_grad()
def measure_composition(model: TransformerBridge, head_scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Does the best previous-token head feed the induction heads? Zero its output (its z, at
    ``blocks.{layer}.attn.hook_z``, as exercise 06's ablate_head does) and measure again the
    induction score of every head in the layers after it, and the loss on both copies."""
    name = max(head_scores, key=lambda n: head_scores[n]["previous_token"])
    layer, head = (int(x) for x in name[1:].split("H"))

    def zero_head(z: torch.Tensor, hook: Any) -> torch.Tensor:
        z[:, :, head] = 0.0
        return z

    tokens = repeated_random_tokens(model)
    with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)]):
        logits, cache = model.run_with_cache(tokens)
    induction = _induction_scores(cache, model.cfg.n_layers)
    after = {head_name(later, h): float(induction[later, h])
             for later in range(layer + 1, model.cfg.n_layers) for h in range(model.cfg.n_heads)}
    return {"previous_token_head": [layer, head], "induction_scores": after, "repeat_loss": list(_repeat_loss(logits, tokens))}


@torch.no_grad()
def measure_ioi(model: TransformerBridge) -> tuple[float, float, int]:
    """Every ordered pair of distinct names: does ' A' (the indirect object) beat ' B' (the subject)?"""
    pairs = list(itertools.permutations(NAMES, 2))  # both orders of every pair
    tokens = model.to_tokens([IOI_PROMPT.format(a=a, b=b) for a, b in pairs])
    if (tokens[:, 1:] == model.tokenizer.bos_token_id).any():  # padding: some prompt was longer
        raise ValueError("IOI prompts differ in length; every name must be a single token")
    ids = {name: _single_token(model, name) for name in NAMES}
    io = torch.tensor([ids[a] for a, _ in pairs])
    s = torch.tensor([ids[b] for _, b in pairs])
    diffs = []
    for chunk in torch.arange(len(pairs)).split(256):  # bounded memory
        last = model(tokens[chunk])[:, -1]
        diffs.append(last.gather(1, io[chunk, None])[:, 0] - last.gather(1, s[chunk, None])[:, 0])
    diff = torch.cat(diffs)
    return float((diff > 0).float().mean()), float(diff.mean()), len(pairs)


def ioi_triples(count: int = IOI_TRIPLES, seed: int = IOI_SEED) -> list[tuple[str, str, str]]:
    """(io, s, c): the indirect object, the subject and a third name, all distinct, seeded."""
    rng = random.Random(seed)
    return [tuple(rng.sample(NAMES, 3)) for _ in range(count)]  # type: ignore[misc]


def _ioi_batch(model: TransformerBridge) -> dict[str, Any]:
    """IOI_PROMPT (a = IO, b = S) and its ABC corruption (S2 replaced by c), with the positions."""
    triples = ioi_triples()
    clean = model.to_tokens([IOI_PROMPT.format(a=io, b=s) for io, s, _ in triples])
    io = torch.tensor([_single_token(model, io) for io, _, _ in triples])
    s = torch.tensor([_single_token(model, s) for _, s, _ in triples])
    rows = torch.arange(len(triples))
    io_pos = int((clean[0] == io[0]).nonzero()[0])
    s1, s2 = (int(p) for p in (clean[0] == s[0]).nonzero()[:, 0])
    if not ((clean[:, io_pos] == io).all() and (clean[:, s1] == s).all() and (clean[:, s2] == s).all()):
        raise ValueError("IOI prompts do not put the names at the same positions")
    corrupted = clean.clone()
    corrupted[rows, s2] = torch.tensor([_single_token(model, c) for _, _, c in triples])
    return {"clean": clean, "corrupted": corrupted, "io": io, "s": s, "io_pos": io_pos, "s1": s1, "s2": s2}


@torch.no_grad()
def measure_ioi_circuit(model: TransformerBridge) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Attention scores per head (for head_scores) and the causal figures of the IOI circuit.

    - duplicate_token: attention from S2 to S1; end_to_io, end_to_s2: from the last position to IO, to S2;
    - end_to_went (in the circuit's heads): from the last position to " went", after the two names;
    - logit_attribution: each head's output at the end (centred, over the final LayerNorm's cached
      scale) on W_U[:, IO] - W_U[:, S], mean over prompts (exercise 05's head_attributions);
    - abc_patching: the clean run with the head's z (every position) from the ABC run, on the scale
      clean = 1, ABC = 0 (exercise 08's patch_heads);
    - the head whose corruption costs most, its direct effect (every other head's z frozen at
      clean) and its effect through the next layers' queries, keys and values (path patching).
    """
    batch = _ioi_batch(model)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    io, s = batch["io"], batch["s"]

    def logit_diff(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last.gather(1, io[:, None]) - last.gather(1, s[:, None])).mean()

    clean_logits, cache = model.run_with_cache(batch["clean"])
    corrupted_logits, corrupted_cache = model.run_with_cache(batch["corrupted"])
    clean_diff, corrupted_diff = logit_diff(clean_logits), logit_diff(corrupted_logits)

    def metric(logits: torch.Tensor) -> float:
        return float((logit_diff(logits) - corrupted_diff) / (clean_diff - corrupted_diff))

    direction = (model.W_U[:, io] - model.W_U[:, s]).T  # [prompt, d_model]
    scale = cache["ln_final.hook_scale"][:, -1]  # [prompt, 1]

    def attribution(vectors: torch.Tensor) -> float:  # [prompt, d_model] written at the end
        centred = vectors - vectors.mean(-1, keepdim=True)
        return float(((centred / scale) * direction).sum(-1).mean())

    scores: dict[str, dict[str, float]] = {}
    heads: dict[str, dict[str, float]] = {}
    for layer in range(n_layers):
        pattern = cache["pattern", layer]
        out = torch.einsum("phd,hdm->phm", cache[f"blocks.{layer}.attn.hook_z"][:, -1], model.W_O[layer])
        for head in range(n_heads):
            def corrupt(z: torch.Tensor, hook: Any, head: int = head) -> torch.Tensor:
                z[:, :, head] = corrupted_cache[hook.name][:, :, head]
                return z

            patched = model.run_with_hooks(batch["clean"], fwd_hooks=[(f"blocks.{layer}.attn.hook_z", corrupt)])
            scores[head_name(layer, head)] = {
                "duplicate_token": float(pattern[:, head, batch["s2"], batch["s1"]].mean()),
                "end_to_io": float(pattern[:, head, -1, batch["io_pos"]].mean()),
                "end_to_s2": float(pattern[:, head, -1, batch["s2"]].mean()),
            }
            heads[head_name(layer, head)] = {"logit_attribution": attribution(out[:, head]),
                                             "abc_patching": metric(patched),
                                             # " went", after the first clause's names: where layer 1 looks
                                             "end_to_went": float(pattern[:, head, -1, batch["s1"] + 1].mean())}
    components = {"embeddings": attribution(cache["hook_embed"][:, -1] + cache["hook_pos_embed"][:, -1])}
    for layer in range(n_layers):
        components[f"attention {layer}"] = attribution(cache[f"blocks.{layer}.hook_attn_out"][:, -1])
        components[f"MLP {layer}"] = attribution(cache[f"blocks.{layer}.hook_mlp_out"][:, -1])
    components["total"] = attribution(cache[f"blocks.{n_layers - 1}.hook_resid_post"][:, -1])

    name = min(heads, key=lambda n: heads[n]["abc_patching"])
    sender_layer, sender_head = (int(x) for x in name[1:].split("H"))

    def sender_hooks(extra: list[Any]) -> list[Any]:
        def freeze(z: torch.Tensor, hook: Any) -> torch.Tensor:
            z[:] = cache[hook.name]
            if hook.layer() == sender_layer:
                z[:, :, sender_head] = corrupted_cache[hook.name][:, :, sender_head]
            return z

        return [(lambda n: n.endswith("attn.hook_z"), freeze), *extra]

    paths = {"direct": metric(model.run_with_hooks(batch["clean"], fwd_hooks=sender_hooks([])))}
    later = range(sender_layer + 1, n_layers)
    for component in ("q", "k", "v"):
        names = {f"blocks.{layer}.attn.hook_{component}" for layer in later}
        kept: dict[str, torch.Tensor] = {}

        def keep(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            kept[hook.name] = activation.clone()
            return activation

        model.run_with_hooks(batch["clean"], fwd_hooks=sender_hooks([(lambda n, names=names: n in names, keep)]))
        logits = model.run_with_hooks(batch["clean"], fwd_hooks=[(lambda n, names=names: n in names,
                                                                    lambda a, hook: kept[hook.name])])
        paths[f"through later {component}"] = metric(logits)
    circuit = {"prompts": len(io), "clean_logit_diff": float(clean_diff), "abc_logit_diff": float(corrupted_diff),
               "heads": heads, "components": components, "s2_mover": [sender_layer, sender_head], "paths": paths}
    return scores, circuit


def verify(
    folder: Path,
    model: TransformerBridge | None = None,
    train_seconds: float | None = None,
    train_cpu_seconds: float | None = None,
) -> VerifyReport:
    """All measurements on the saved folder (booted here unless `model` is that folder's bridge)."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist; build the model first")
    model = load(folder) if model is None else model
    accuracy, misses, c_head, c_attn = measure_capitals(model)
    i_head, i_score = measure_induction(model)
    ioi_acc, ioi_diff, ioi_n = measure_ioi(model)
    head_scores, repeat_loss = measure_heads(model)
    composition = measure_composition(model, head_scores)
    ioi_scores, ioi_circuit = measure_ioi_circuit(model)
    head_scores = {name: {**scores, **ioi_scores[name]} for name, scores in head_scores.items()}
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as fh:  # count the stored weights (tied lm_head stored once)
        n_params = sum(_numel(fh.get_slice(k).get_shape()) for k in fh.keys())
    return VerifyReport(
        capital_accuracy=accuracy,
        capital_misses=misses,
        country_attn_head=c_head,
        country_attn=c_attn,
        induction_head=i_head,
        induction_score=i_score,
        ioi_accuracy=ioi_acc,
        ioi_mean_logit_diff=ioi_diff,
        ioi_prompts=ioi_n,
        n_params=n_params,
        size_bytes=weights.stat().st_size,
        sha256=sha256_file(weights),
        train_seconds=train_seconds,
        train_cpu_seconds=train_cpu_seconds,
        head_scores=head_scores,
        head_roles={name: roles_of(scores) for name, scores in head_scores.items()},
        role_threshold=ROLE_MIN,
        repeat_loss=repeat_loss,
        composition=composition,
        ioi_circuit=ioi_circuit,
    )


def _numel(shape: list[int]) -> int:
    out = 1
    for dim in shape:
        out *= dim
    return out
