"""Build the toy GPT-2: corpus -> tokenizer -> training -> saved folder -> verification.

    python -m grader.toy.build                    # rebuild fixtures/models/toy-gpt2
    python -m grader.toy.build --check-repro      # ... and rebuild again in a temp dir, compare sha256
    python -m grader.toy.build --out /tmp/toy --steps 300   # a quick experiment elsewhere

Exits non-zero when a threshold in grader/toy/verify.py is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never reach for the hub

from grader.models import TOY_BUILD_COMMAND, TOY_MODEL_DIR  # noqa: E402
from grader.toy import corpus  # noqa: E402
from grader.toy.tokenizer import train_tokenizer  # noqa: E402
from grader.toy.train import TrainConfig, train  # noqa: E402
from grader.toy.verify import (  # noqa: E402
    CAPITAL_PROMPT,
    INDUCTION_BATCH,
    INDUCTION_LEN,
    IOI_PROMPT,
    VerifyReport,
    sha256_file,
    verify,
)

# Files save_pretrained writes that the model does not need (generation defaults only).
UNNEEDED = ("generation_config.json",)


@dataclass(frozen=True)
class Reproducibility:
    other_sha256: str
    other_seconds: float  # wall-clock training time of the second build
    bitwise: bool
    max_abs_diff: float  # largest |w1 - w2| over all weights; 0.0 when bitwise


def save(out_dir: Path, cfg: TrainConfig) -> tuple[float, float]:
    """Train and write the Hugging Face folder plus the sha256 file; returns (wall, CPU) seconds."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # keep the build's output to its own progress lines
    tok = train_tokenizer(corpus.generate(cfg.tokenizer_docs, cfg.seed), vocab_size=cfg.vocab_size)
    print(f"tokenizer: {len(tok)} tokens; training {cfg.n_layer}L d{cfg.n_embd} for {cfg.steps} steps", flush=True)
    result = train(cfg, tok)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    for name in UNNEEDED:
        (out_dir / name).unlink(missing_ok=True)
    weights = out_dir / "model.safetensors"
    weights.chmod(0o644)  # save_pretrained writes 0600; the shipped file should be world-readable
    (out_dir / "model.safetensors.sha256").write_text(f"{sha256_file(weights)}  model.safetensors\n")
    print(f"trained in {result.seconds:.1f} s ({result.cpu_seconds:.0f} s CPU), final loss {result.final_loss:.3f}", flush=True)
    return result.seconds, result.cpu_seconds


def compare_weights(a: Path, b: Path, other_seconds: float) -> Reproducibility:
    from safetensors.torch import load_file

    sha_a, sha_b = sha256_file(a), sha256_file(b)
    wa, wb = load_file(str(a)), load_file(str(b))
    if wa.keys() != wb.keys():
        raise ValueError(f"the two builds store different tensors: {sorted(wa.keys() ^ wb.keys())}")
    diff = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
    return Reproducibility(other_sha256=sha_b, other_seconds=other_seconds, bitwise=sha_a == sha_b, max_abs_diff=diff)


def build(
    out_dir: Path = TOY_MODEL_DIR,
    seed: int = 0,
    steps: int | None = None,
    check_repro: bool = False,
    config: TrainConfig | None = None,
) -> VerifyReport:
    """Train the toy model into `out_dir`, verify it through TransformerLens, write verify.json and
    the model card. With `check_repro`, train a second copy in a temp dir and record whether the
    weights match bit for bit."""
    cfg = config or TrainConfig()
    cfg = dataclasses.replace(cfg, seed=seed, **({"steps": steps} if steps is not None else {}))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} exists and is not a folder")

    seconds, cpu_seconds = save(out_dir, cfg)
    report = verify(out_dir, train_seconds=round(seconds, 1), train_cpu_seconds=round(cpu_seconds, 1))
    (out_dir / "verify.json").write_text(report.to_json())

    repro: Reproducibility | None = None
    if check_repro:
        print("rebuilding in a temp dir to check reproducibility ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="toy-gpt2-") as tmp:
            other_seconds, _ = save(Path(tmp), dataclasses.replace(cfg, log_every=0))
            repro = compare_weights(out_dir / "model.safetensors", Path(tmp) / "model.safetensors", other_seconds)
        print(f"rebuild sha256 {'matches' if repro.bitwise else 'DIFFERS'}; max |diff| {repro.max_abs_diff:.3g}")

    write_card(out_dir / "README.md", report, cfg, repro, machine=_machine())
    print(report.table())
    return report


def write_card(path: Path, report: VerifyReport, cfg: TrainConfig, repro: Reproducibility | None, machine: str) -> None:
    """The model card: what the model is, how it was trained, and every figure as measured."""
    d_head = cfg.n_embd // cfg.n_head
    vocab = json.loads((path.parent / "config.json").read_text())["vocab_size"]
    if repro is None:
        repro_text = (
            "Not checked in this build. Run `python -m grader.toy.build --check-repro` to train a second "
            "copy and compare the weights."
        )
    elif repro.bitwise:
        repro_text = (
            "Checked: a second build from scratch in a temporary folder, same seed, same machine, gave "
            f"**bitwise identical** weights (sha256 {repro.other_sha256} both times; the second "
            f"training took {repro.other_seconds:.0f} s wall-clock)."
        )
    else:
        repro_text = (
            f"Checked: a second build with the same seed on the same machine gave **different** bytes "
            f"(sha256 {repro.other_sha256}); the largest absolute weight difference was {repro.max_abs_diff:.3g}."
            f" (The second training took {repro.other_seconds:.0f} s wall-clock.)"
        )
    if report.train_seconds is None:
        seconds = "not measured"
    else:
        seconds = f"{report.train_seconds:.0f} s wall-clock"
        if report.train_cpu_seconds is not None:
            seconds += f" ({report.train_cpu_seconds:.0f} s of CPU time over {cfg.threads} threads)"
    rows = "\n".join(
        f"| {name} | {value:.3f} | {threshold:.3f} | {'pass' if ok else 'FAIL'} |"
        for name, (value, threshold, ok) in report.checks.items()
    )
    layer_c, head_c = report.country_attn_head
    layer_i, head_i = report.induction_head
    text = f"""# toy-gpt2

A tiny GPT-2-architecture model that mechgrade trains itself, so the exercises can run with no
access to the Hugging Face hub. It is a practice model: its circuits are real but small, and its
numbers are not GPT-2 small's. Load it as students do:

```python
from grader.models import MODELS, load_model
model = load_model(MODELS["toy-gpt2"], "cpu")  # TransformerBridge, compatibility mode, eval
```

## Architecture

| | |
|---|---|
| architecture | Hugging Face `GPT2LMHeadModel` (learned positions, pre-LayerNorm, `gelu_new` MLP, tied embeddings) |
| layers x heads | {cfg.n_layer} x {cfg.n_head} (d_head {d_head}) |
| d_model / d_mlp | {cfg.n_embd} / {cfg.n_inner} |
| context (n_ctx) | {cfg.n_ctx} tokens |
| vocabulary | {vocab} tokens: byte-level BPE like GPT-2's, `<|endoftext|>` = id 0 (BOS/EOS) |
| parameters | {report.n_params:,} |
| model.safetensors | {report.size_bytes:,} bytes, sha256 `{report.sha256}` |

Every country, capital and first name of `grader/toy/corpus.py` is one token with a leading space
(`" France"` -> `ĠFrance`), as in GPT-2.

## Training data

Synthetic, generated by `grader/toy/corpus.py` (seed {cfg.seed}); documents separated by `<|endoftext|>`:

- capital facts for {len(corpus.CAPITALS)} countries in {len(corpus.CAPITAL_TEMPLATES)} paraphrases, including
  the exact prompt `The capital of France is Paris.`;
- IOI sentences, e.g. `When Mary and John went to the store, John gave a drink to Mary.`, over
  {len(corpus.NAMES)} names, {len(corpus.PLACES)} places, {len(corpus.OBJECTS)} objects and {len(corpus.IOI_TEMPLATES)} templates;
- runs of {corpus.REPEAT_MIN}-{corpus.REPEAT_MAX} random words repeated once, and ({cfg.random_repeat_frac:.0%} of segments)
  runs of uniformly random token ids repeated once, with no loss on the unpredictable first copy;
- short filler sentences.

## Training

{cfg.steps} AdamW steps of {cfg.batch_size} x {cfg.n_ctx} tokens, peak lr {cfg.lr:g} ({cfg.warmup} warmup steps, cosine
decay to lr/10), weight decay {cfg.weight_decay:g}, grad clip {cfg.grad_clip:g}, no dropout; seed {cfg.seed},
`torch.use_deterministic_algorithms(True)`, {cfg.threads} torch threads, float32 on the CPU.
Training took **{seconds}** (optimisation loop only) on this machine: {machine}.
Wall-clock time grows when other jobs share the cores; the CPU time is the steadier figure.

## Measured on the saved folder through TransformerLens

All figures come from `grader/toy/verify.py`, which boots this folder with
`TransformerBridge.boot_transformers` + `enable_compatibility_mode()`, as students get it, and are
stored in `verify.json`. `tests/test_toy_model.py` asserts each threshold on the shipped files.

| check | measured | needed | result |
|---|---|---|---|
{rows}

- **Capitals**: `"{CAPITAL_PROMPT.format(country="X")}"` -> top next token is `" <capital>"` for {report.capital_accuracy:.1%} of
  {len(corpus.CAPITALS)} countries{(" (misses: " + ", ".join(report.capital_misses) + ")") if report.capital_misses else ""}.
- **Attention to the country**: head L{layer_c}H{head_c} puts {report.country_attn:.3f} of the last position's
  attention on the country token, mean over countries.
- **Induction**: head L{layer_i}H{head_i} scores {report.induction_score:.3f} on `[BOS, r_1..r_{INDUCTION_LEN}, r_1..r_{INDUCTION_LEN}]`
  (r uniform over the vocabulary except BOS, batch {INDUCTION_BATCH}, fixed seed): the mean attention
  from each second-copy token to the token after its first occurrence.
- **IOI**: `"{IOI_PROMPT.format(a="A", b="B")}"` -> logit(" A") > logit(" B") in
  {report.ioi_accuracy:.1%} of {report.ioi_prompts} prompts (every ordered pair of distinct names); mean logit
  difference {report.ioi_mean_logit_diff:.2f}.

## Reproducibility

{repro_text}
Bitwise reproducibility is only expected with the same torch build, thread count and CPU type.

## Rebuild

```
mechgrade toy build                      # or: python -m grader.toy.build
python -m grader.toy.build --check-repro # also rebuild in a temp dir and compare sha256
```

The build rewrites this folder (weights, tokenizer, `model.safetensors.sha256`, `verify.json`,
this card) and exits non-zero if any threshold above is missed. Commit the folder only then.
"""
    path.write_text(text)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here; platform.processor() is often empty
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores available, {platform.system()}, torch {_torch_version()}"


def _torch_version() -> str:
    import torch

    return torch.__version__


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog=TOY_BUILD_COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TOY_MODEL_DIR, help="folder to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed for corpus, init and data order")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps (default: %(default)s)")
    parser.add_argument("--check-repro", action="store_true", help="train twice and compare the weights' sha256")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out that holds no model")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1; got {args.steps}")
    out: Path = args.out
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").exists() and not args.force:
        parser.error(f"--out {out} is a non-empty folder that holds no model; pass --force to write into it")
    try:
        report = build(out, seed=args.seed, steps=args.steps, check_repro=args.check_repro)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not report.passed:
        print("FAILED: the model misses a threshold above; it was written but must not be shipped.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
