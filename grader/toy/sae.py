"""The sparse autoencoder of exercise 07: the grader's own math, the activations it trains and
judges on, and the reference SAE the project ships for toy-gpt2.

Everything that decides a grade about a student's SAE lives here and reads only tensors: the
four parameters fetched from the sandbox (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``), never the
student's ``forward``. ``python -m grader.toy.sae`` rebuilds the shipped SAE
(``fixtures/models/toy-gpt2-sae``), its sha256 and its card, and appends the SAE's section to the
toy model's card.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from grader.judging.prompts import CLEAN_PROMPT
from grader.models import MODELS, load_model
from grader.project import PROJECT_ROOT
from grader.toy.corpus import generate

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

HOOK_POINT = "blocks.0.hook_resid_post"  # token identity plus a little context: latents a student can read
EXPANSION, MAX_D_SAE = 4, 512  # d_sae = 4 * d_model, at most 512 (GPT-2 small on a CPU must train in seconds)
PARAMETER_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")

# The activations the checks give train_sae and the ones they judge it on: text of the toy model's
# training distribution, with seeds the toy model never saw (its corpus used seed 0).
TRAIN_DOCS, TRAIN_SEED = 600, 101
HELD_OUT_DOCS, HELD_OUT_SEED = 200, 102
# What the checks ask train_sae to do. L1_PER_NORM * the mean activation norm is the L1
# coefficient: the L1 term scales with the activations, the squared error with their square.
STEPS, LR, BATCH_SIZE, SEED = 500, 2e-3, 256, 0
L1_PER_NORM = 2.0 / 15.54  # l1_coeff 2.0 on toy-gpt2, whose mean activation norm there is 15.54
# A student's SAE passes where the reference train_sae's, trained on the same activations, does
# with these margins (see `bar`): on toy-gpt2 about 0.82 of the variance, 37 latents per token,
# 26% dead.
VARIANCE_MARGIN, L0_FACTOR, L0_MARGIN, DEAD_MARGIN = 0.10, 1.5, 10.0, 0.20

# The shipped reference SAE (toy-gpt2 only): more data and steps than a check can afford.
SAE_DIR = PROJECT_ROOT / "fixtures" / "models" / "toy-gpt2-sae"
WEIGHTS = "sae.safetensors"
SHIP_DOCS, SHIP_DATA_SEED, SHIP_STEPS, SHIP_LR, SHIP_L1 = 3000, 100, 3000, 1e-3, 2.0
CARD_HEADING = "## Sparse autoencoder (exercise 07)"


# ---- the math ----


def encode(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """ReLU((x - b_dec) @ W_enc + b_enc): [..., d_in] -> [..., d_sae]."""
    return torch.relu((x - params["b_dec"]) @ params["W_enc"] + params["b_enc"])


def decode(params: dict[str, Tensor], f: Tensor) -> Tensor:
    return f @ params["W_dec"] + params["b_dec"]


@dataclass(frozen=True)
class Quality:
    variance_explained: float  # 1 - sum of squared errors / total variance of the activations
    mean_l0: float  # latents active (> 0) per activation, mean over the activations
    dead_share: float  # share of latents active on none of the activations
    d_sae: int


@torch.no_grad()
def measure(params: dict[str, Tensor], x: Tensor) -> Quality:
    """How well an SAE reconstructs `x` [n, d_in] and how sparsely; the grader's math only."""
    params = {k: v.to(x.device, torch.float32) for k, v in params.items()}
    latents = encode(params, x)
    error = ((decode(params, latents) - x) ** 2).sum()
    total = ((x - x.mean(0)) ** 2).sum()
    active = latents > 0
    return Quality(float(1 - error / total), float(active.sum(-1).float().mean()),
                   float((~active.any(0)).float().mean()), latents.shape[-1])


def sae_width(d_in: int) -> int:
    return min(EXPANSION * d_in, MAX_D_SAE)


@dataclass(frozen=True)
class Bar:
    """What a trained SAE must reach on the held-out activations."""

    min_variance_explained: float
    max_mean_l0: float
    max_dead_share: float

    def describe(self) -> str:
        return (f"explains at least {self.min_variance_explained:.2f} of the variance with at most "
                f"{self.max_mean_l0:.1f} latents active per token")


def bar(reference: Quality) -> Bar:
    """The bar a student's SAE must clear, from the reference train_sae's quality on the same data:
    a bar that follows the model (toy-gpt2 or GPT-2 small) instead of numbers tuned for one. Never
    below half the reference's variance explained, so an SAE that explains nothing cannot pass."""
    return Bar(max(reference.variance_explained - VARIANCE_MARGIN, reference.variance_explained / 2),
               max(L0_FACTOR * reference.mean_l0, reference.mean_l0 + L0_MARGIN),
               min(reference.dead_share + DEAD_MARGIN, 0.9))


def parameter_problems(params: Any, d_in: int, d_sae: int) -> list[str]:
    """Why fetched parameters are not an SAE of these sizes (empty when they are)."""
    if not isinstance(params, dict):
        return [f"state_dict() gave a {type(params).__name__}, not a dict of tensors"]
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    problems = []
    for name, shape in shapes.items():
        value = params.get(name)
        if not isinstance(value, Tensor):
            problems.append(f"no parameter {name}")
        elif tuple(value.shape) != shape:
            problems.append(f"{name} has shape {tuple(value.shape)}, not {shape}")
        elif not value.is_floating_point():
            problems.append(f"{name} is {value.dtype}, not a float tensor")
    return problems


# ---- the activations ----


@torch.no_grad()
def collect_activations(model: TransformerBridge, docs: list[str], hook: str = HOOK_POINT, batch: int = 200) -> Tensor:
    """[n_tokens, d_model]: `hook`'s activation at every token of `docs` but the BOS token.

    Prompts are padded on the right (with the BOS/EOS token, which is dropped): a causal model's
    earlier positions never see the padding, so each activation is the one of its own prompt."""
    bos = model.tokenizer.bos_token_id
    # The model runs only up to the hook's block: on GPT-2 small the rest (and the 50257-wide
    # unembedding) would cost ten times as much.
    stop = int(hook.split(".")[1]) + 1 if hook.startswith("blocks.") else None
    out = []
    with torch.no_grad():
        for start in range(0, len(docs), batch):
            tokens = model.to_tokens(docs[start : start + batch])
            _, cache = model.run_with_cache(tokens, names_filter=hook, stop_at_layer=stop)
            out.append(cache[hook][tokens != bos].float())
    return torch.cat(out)


def training_activations(model: TransformerBridge) -> Tensor:
    return collect_activations(model, generate(TRAIN_DOCS, TRAIN_SEED))


def held_out_activations(model: TransformerBridge) -> Tensor:
    return collect_activations(model, generate(HELD_OUT_DOCS, HELD_OUT_SEED))


def l1_coeff_for(activations: Tensor) -> float:
    return round(L1_PER_NORM * float(activations.norm(dim=-1).mean()), 4)


# ---- training (the shipped SAE; the solution's train_sae does the same) ----


def train(activations: Tensor, d_sae: int, steps: int, lr: float, l1_coeff: float, seed: int,
          batch_size: int = BATCH_SIZE) -> dict[str, Tensor]:
    """Adam on squared error (summed over d_in) + l1_coeff * L1 (summed over latents), means over
    the batch; decoder rows renormalised after every step."""
    generator = torch.Generator().manual_seed(seed)
    d_in = activations.shape[1]
    W_dec = torch.randn(d_sae, d_in, generator=generator)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    params = {"W_enc": W_dec.T.clone(), "b_enc": torch.zeros(d_sae), "W_dec": W_dec,
              "b_dec": activations.mean(0).clone()}
    for value in params.values():
        value.requires_grad_(True)
    optimiser = torch.optim.Adam(params.values(), lr=lr)
    for _ in range(steps):
        x = activations[torch.randint(0, len(activations), (batch_size,), generator=generator)]
        latents = encode(params, x)
        loss = ((decode(params, latents) - x) ** 2).sum(-1).mean() + l1_coeff * latents.abs().sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            params["W_dec"] /= params["W_dec"].norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return {k: v.detach() for k, v in params.items()}


# ---- the shipped SAE ----


class ShippedSaeError(Exception):
    """The shipped SAE is missing or its bytes are not the recorded ones."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_shipped(folder: Path = SAE_DIR) -> dict[str, Tensor]:
    """The reference SAE's parameters, after checking the file against its recorded sha256."""
    from safetensors.torch import load_file

    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ShippedSaeError(f"{weights} is missing: run `python -m grader.toy.sae`")
    recorded = (folder / f"{WEIGHTS}.sha256").read_text().split()[0]
    if sha256_file(weights) != recorded:
        raise ShippedSaeError(f"{weights} does not match its recorded sha256: run `python -m grader.toy.sae`")
    return load_file(str(weights))


def reference_sae(model: TransformerBridge, model_id: str) -> dict[str, Tensor]:
    """The SAE the top-token checks use: the shipped one on toy-gpt2; on another model (none is
    shipped) a seeded random one of that model's sizes, so the checks still run the same way."""
    if model_id == "toy-gpt2":
        return load_shipped()
    d_in = model.cfg.d_model
    generator = torch.Generator().manual_seed(SEED)
    W_dec = torch.randn(sae_width(d_in), d_in, generator=generator)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    return {"W_enc": W_dec.T.clone(), "b_enc": torch.full((sae_width(d_in),), -0.5),
            "W_dec": W_dec, "b_dec": torch.zeros(d_in)}


@torch.no_grad()
def top_tokens(params: dict[str, Tensor], model: TransformerBridge, docs: list[str], latent: int,
               k: int) -> list[tuple[str, float]]:
    """The `k` tokens of `docs` on which `latent` is most active (> 0), highest first."""
    bos = model.tokenizer.bos_token_id
    found: list[tuple[str, float]] = []
    for doc in docs:
        tokens = model.to_tokens(doc)
        _, cache = model.run_with_cache(tokens, names_filter=HOOK_POINT)
        values = encode(params, cache[HOOK_POINT][0].float())[:, latent]
        found += [(model.to_string(t), float(v)) for t, v in zip(tokens[0].tolist(), values.tolist())
                  if v > 0 and t != bos]
    return sorted(found, key=lambda item: -item[1])[:k]


# ---- the build ----


@dataclass(frozen=True)
class ShipReport:
    quality: Quality  # on the checks' held-out activations
    train_seconds: float
    sha256: str
    size_bytes: int
    latents: dict[str, list[tuple[str, float]]]  # "latent N (what it reads)" -> top tokens
    training_tokens: int


def build(folder: Path = SAE_DIR) -> ShipReport:
    from safetensors.torch import save_file

    torch.set_num_threads(1)  # bitwise reproducible on one CPU thread
    model = load_model(MODELS["toy-gpt2"], "cpu")
    activations = collect_activations(model, generate(SHIP_DOCS, SHIP_DATA_SEED))
    start = time.process_time()
    params = train(activations, sae_width(model.cfg.d_model), SHIP_STEPS, SHIP_LR, SHIP_L1, SEED)
    seconds = time.process_time() - start
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    save_file({k: v.contiguous() for k, v in params.items()}, str(weights))
    digest = sha256_file(weights)
    (folder / f"{WEIGHTS}.sha256").write_text(f"{digest}  {WEIGHTS}\n")
    quality = measure(params, held_out_activations(model))
    docs = generate(HELD_OUT_DOCS, HELD_OUT_SEED)
    latents = {f"latent {n} (most active on {word!r})": top_tokens(params, model, docs, n, 8)
               for word, n in card_latents(model, params).items()}
    report = ShipReport(quality, seconds, digest, weights.stat().st_size, latents, len(activations))
    (folder / "report.json").write_text(json.dumps(asdict(report), indent=1) + "\n")
    (folder / "README.md").write_text(card(report))
    if folder == SAE_DIR:  # a build elsewhere (a reproducibility check) leaves the model card alone
        append_to_model_card(SAE_DIR.parent / "toy-gpt2" / "README.md", report)
    return report


def card_latents(model: TransformerBridge, params: dict[str, Tensor]) -> dict[str, int]:
    """The latent most active on a few words of "The capital of France is": what the card shows."""
    tokens = model.to_tokens(CLEAN_PROMPT)
    _, cache = model.run_with_cache(tokens, names_filter=HOOK_POINT)
    latents = encode(params, cache[HOOK_POINT][0].float())
    words = [t.strip() for t in model.to_str_tokens(CLEAN_PROMPT)]
    return {word: int(latents[words.index(word)].argmax()) for word in ("France", "is")}


def card(report: ShipReport) -> str:
    q = report.quality
    rows = "\n".join(f"| {name} | {', '.join(f'`{t!r}` {v:.2f}' for t, v in tokens)} |"
                     for name, tokens in report.latents.items())
    return f"""# toy-gpt2-sae

The reference sparse autoencoder of exercise 07, trained on toy-gpt2's `{HOOK_POINT}` by
`python -m grader.toy.sae` (`grader/toy/sae.py`). Its parameters are `W_enc` [d_in, d_sae],
`b_enc` [d_sae], `W_dec` [d_sae, d_in] (unit-norm rows) and `b_dec` [d_in], with
`encode(x) = ReLU((x - b_dec) @ W_enc + b_enc)` and `decode(f) = f @ W_dec + b_dec`. The checks
of `top_activating_tokens` load it into the student's own class.

| | |
|---|---|
| d_in / d_sae | 128 / {q.d_sae} |
| training data | every non-BOS token of {SHIP_DOCS} documents of `grader/toy/corpus.py` (seed {SHIP_DATA_SEED}): {report.training_tokens:,} activations |
| training | {SHIP_STEPS} Adam steps of {BATCH_SIZE} activations, lr {SHIP_LR:g}, l1_coeff {SHIP_L1:g}, seed {SEED}; decoder rows renormalised after every step; one torch thread, float32, CPU |
| training time | {report.train_seconds:.1f} s of CPU time |
| {WEIGHTS} | {report.size_bytes:,} bytes, sha256 `{report.sha256}` |

Measured on the checks' held-out activations ({HELD_OUT_DOCS} documents, seed {HELD_OUT_SEED}):
fraction of variance explained **{q.variance_explained:.3f}**, mean L0 **{q.mean_l0:.1f}** latents
per token, dead latents **{q.dead_share:.1%}**.

| latent | top tokens on the held-out documents (activation) |
|---|---|
{rows}

Rebuild (after a rebuild of toy-gpt2, whose activations it reads): `python -m grader.toy.sae`,
then `mechgrade fixtures refresh --model toy-gpt2 --exercise 07`, and commit both.
"""


def model_card_section(report: ShipReport) -> str:
    q = report.quality
    return f"""{CARD_HEADING}

A sparse autoencoder trained on this model's `{HOOK_POINT}` ships beside it, in
`fixtures/models/toy-gpt2-sae/` (`{WEIGHTS}`, sha256 `{report.sha256}`; its card is that folder's
README.md). On held-out text it explains {q.variance_explained:.1%} of the variance with
{q.mean_l0:.1f} of {q.d_sae} latents active per token ({q.dead_share:.1%} dead). Rebuild it with
`python -m grader.toy.sae` whenever this model is rebuilt (the SAE reads its activations), then
refresh exercise 07's fixtures.
"""


def append_to_model_card(path: Path, report: ShipReport) -> None:
    """Put the SAE's section at the end of the toy model's card, replacing an older one."""
    text = path.read_text()
    if CARD_HEADING in text:
        text = text[: text.index(CARD_HEADING)].rstrip("\n") + "\n"
    path.write_text(f"{text.rstrip(chr(10))}\n\n{model_card_section(report)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and ship the reference SAE of exercise 07 for toy-gpt2.")
    parser.add_argument("--out", type=Path, default=SAE_DIR)
    args = parser.parse_args(argv)
    report = build(args.out)
    q = report.quality
    print(f"variance explained {q.variance_explained:.3f}, mean L0 {q.mean_l0:.1f}, dead {q.dead_share:.1%}, "
          f"{report.train_seconds:.1f} s CPU, sha256 {report.sha256}")
    for name, tokens in report.latents.items():
        print(name, tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
