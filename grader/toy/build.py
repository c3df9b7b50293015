"""Build the toy GPT-2: corpus -> tokenizer -> training -> saved folder -> verification.

    python -m grader.toy.build                    # rebuild fixtures/models/toy-gpt2
    python -m grader.toy.build --check-repro      # ... and rebuild again in a temp dir, compare sha256
    python -m grader.toy.build --out /tmp/toy --steps 300   # a quick experiment elsewhere
    python -m grader.toy.build --verify-only      # measure the saved weights again, no training

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
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never reach for the hub

from grader.models import TOY_BUILD_COMMAND, TOY_MODEL_DIR  # noqa: E402
from grader.toy import corpus  # noqa: E402
from grader.toy.tokenizer import train_tokenizer  # noqa: E402
from grader.toy.train import TrainConfig, train  # noqa: E402
from grader.toy.verify import (  # noqa: E402
    APART_PROMPTS,
    CAPITAL_PROMPT,
    HEAD_SCORES,
    INDUCTION_BATCH,
    INDUCTION_LEN,
    IOI_PROMPT,
    ROLE_MIN,
    VerifyReport,
    head_name,
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

{measured_section(report)}
## Reproducibility

{repro_text}
Bitwise reproducibility is only expected with the same torch build, thread count and CPU type.

{REBUILD_SECTION}"""
    path.write_text(text)


MEASURED_HEADING = "## Measured on the saved folder through TransformerLens"
REBUILD_HEADING = "## Rebuild"
REBUILD_SECTION = f"""{REBUILD_HEADING}

```
mechgrade toy build                      # or: python -m grader.toy.build
python -m grader.toy.build --check-repro # also rebuild in a temp dir and compare sha256
python -m grader.toy.build --verify-only # measure the shipped weights again, no training
```

The build rewrites this folder (weights, tokenizer, `model.safetensors.sha256`, `verify.json`,
this card) and exits non-zero if any threshold above is missed. Commit the folder only then.
`--verify-only` leaves the weights alone: it rewrites `verify.json` and this card's measured
section (and this one), keeping the training time and the reproducibility note.
"""

SCORE_COLUMNS = {
    "previous_token": "previous-token",
    "current_token": "current-token",
    "first_token": "first-token",
    "induction": "induction",
    "country_adjacent": "country, adjacent",
    "country_apart": "country, not adjacent",
    "duplicate_token": "duplicate-token (S2 to S1)",
    "end_to_io": "end to IO",
    "end_to_s2": "end to S2",
}


def measured_section(report: VerifyReport) -> str:
    """The card's section of measured figures, from `report` alone (verify.json holds all of it)."""
    rows = "\n".join(
        f"| {name} | {value:.3f} | {threshold:.3f} | {'pass' if ok else 'FAIL'} |"
        for name, (value, threshold, ok) in report.checks.items()
    )
    adjacent_head = head_name(*report.country_attn_head)
    country_x = CAPITAL_PROMPT.format(country="X")
    apart_x = " and ".join(f'`"{t.format(country="X")}"`' for t in APART_PROMPTS)
    text = f"""{MEASURED_HEADING}

All figures come from `grader/toy/verify.py`, which boots this folder with
`TransformerBridge.boot_transformers` + `enable_compatibility_mode()`, as students get it, and are
stored in `verify.json`. `tests/test_toy_model.py` asserts each threshold on the shipped files.

| check | measured | needed | result |
|---|---|---|---|
{rows}

- **Capitals**: `"{country_x}"` -> top next token is `" <capital>"` for {report.capital_accuracy:.1%} of
  {len(corpus.CAPITALS)} countries{(" (misses: " + ", ".join(report.capital_misses) + ")") if report.capital_misses else ""}.
"""
    scores = report.head_scores
    if scores and report.content_head is not None:
        content_name = head_name(*report.content_head[0])
        adjacent = scores[adjacent_head]
        content = scores[content_name]
        adjacent_roles = ", ".join(report.head_roles[adjacent_head]) if report.head_roles else ""
        text += f"""- **Attention to the country, by position and by content**: in `"{country_x}"` the country is
  the token right before the last one, so a head that always looks one token back attends to it
  without knowing anything about countries. Head {adjacent_head} puts {report.country_attn:.3f} of the last
  position's attention on the country there (`country_attn` in `verify.json`, mean over
  countries), but it is {"the previous-token head" if "previous-token" in adjacent_roles else "a head with roles: " + (adjacent_roles or "none")} ({adjacent["previous_token"]:.3f} of each position's attention
  on the position before it, on random tokens) and puts only {adjacent["country_apart"]:.3f} on the country when the
  country is not adjacent ({apart_x}). The head that finds the country by content
  is {content_name}: {content["country_apart"]:.3f} on the country from the last position of those prompts,
  {content["country_adjacent"]:.3f} on `"{country_x}"`. Exercise 03's `content_heads` asks students to tell
  the two kinds apart.
"""
    else:
        text += f"""- **Attention to the country**: head {adjacent_head} puts {report.country_attn:.3f} of the last position's
  attention on the country token, mean over countries.
"""
    text += f"""- **Induction**: head {head_name(*report.induction_head)} scores {report.induction_score:.3f} on `[BOS, r_1..r_{INDUCTION_LEN}, r_1..r_{INDUCTION_LEN}]`
  (r uniform over the vocabulary except BOS, batch {INDUCTION_BATCH}, fixed seed): the mean attention
  from each second-copy token to the token after its first occurrence."""
    if report.repeat_loss is not None:
        text += f""" The loss falls from
  {report.repeat_loss[0]:.2f} on the first copy to {report.repeat_loss[1]:.2f} on the second (mean over r_2..r_{INDUCTION_LEN} of each copy)."""
    if report.composition is not None:
        source = head_name(*report.composition["previous_token_head"])
        after = report.composition["induction_scores"].values()
        text += f""" The induction
  heads depend on the previous-token head {source}: with its output zeroed (its z at
  `blocks.{report.composition["previous_token_head"][0]}.attn.hook_z`, as exercise 06's `ablate_head` does), the induction scores of the
  heads after it fall to {min(after):.3f}-{max(after):.3f} and the second copy's loss rises to {report.composition["repeat_loss"][1]:.2f}
  (`composition` in `verify.json`)."""
    text += f"""
- **IOI**: `"{IOI_PROMPT.format(a="A", b="B")}"` -> logit(" A") > logit(" B") in
  {report.ioi_accuracy:.1%} of {report.ioi_prompts} prompts (every ordered pair of distinct names); mean logit
  difference {report.ioi_mean_logit_diff:.2f}.
"""
    if scores and report.head_roles is not None:
        threshold = report.role_threshold if report.role_threshold is not None else ROLE_MIN
        header = " | ".join(SCORE_COLUMNS[k] for k in HEAD_SCORES)
        table = "\n".join(
            f"| {name} | " + " | ".join(f"{scores[name][k]:.3f}" for k in HEAD_SCORES)
            + f" | {', '.join(report.head_roles[name]) or 'none'} |"
            for name in scores
        )
        text += f"""
### What each head does

Each head's score for each role (`head_scores` in `verify.json`); a head takes every role whose
score is at least {threshold:g} (`head_roles`). "country, adjacent" names no role: it cannot tell a head
that finds the country from one that looks one token back.

| head | {header} | roles |
|---|{"---|" * len(HEAD_SCORES)}---|
{table}

- previous-token, current-token: mean attention from each position q >= 2 to q - 1, and to q itself,
  on the induction batch above (random tokens: nothing to find but positions);
- first-token: mean attention to position 0 (BOS) from positions 2 on of `"{country_x}"` over
  every country, text with nothing to copy, where a head with no job rests on BOS;
- induction: as above;
- country, adjacent: from the last position of `"{country_x}"` to the country, which is the
  token before it; country, not adjacent: from the last position of {apart_x}
  to the country, mean over both and over every country;
- duplicate-token, end to IO, end to S2: on exercise 08's IOI batch (below), the attention from the
  second subject S2 to the first, S1; from the last position to the indirect object; and to S2.
"""
    if report.ioi_circuit is not None:
        text += ioi_section(report.ioi_circuit)
    return text


def ioi_section(circuit: dict[str, Any]) -> str:
    """The card's IOI table: what each head and each component does for the IO - S logit difference."""
    heads = circuit["heads"]
    rows = "\n".join(f"| {name} | {h['end_to_went']:.3f} | {h['logit_attribution']:.3f} | {h['abc_patching']:.3f} |"
                     for name, h in heads.items())
    parts = ", ".join(f"{name} {value:.2f}" for name, value in circuit["components"].items())
    mover = head_name(*circuit["s2_mover"])
    paths = circuit["paths"]
    through = ", ".join(f"{k.removeprefix('through later ')} {v:.3f}" for k, v in paths.items() if k != "direct")
    return f"""
### Indirect object identification (exercise 08)

On `"{IOI_PROMPT.format(a="{io}", b="{s}")}"` with {circuit["prompts"]} seeded triples of distinct names
(io, s, c) and its ABC corruption (S2 replaced by c): logit difference IO - S {circuit["clean_logit_diff"]:.2f}
clean, {circuit["abc_logit_diff"]:.2f} corrupted (`ioi_circuit` in `verify.json`).

| head | attention end -> " went" | direct logit attribution (IO - S) | metric with its z from the ABC run (clean 1, ABC 0) |
|---|---|---|---|
{rows}

- Direct logit attribution at the last position, by component: {parts}.
- {mover} matters most: with its z corrupted the metric falls to {heads[mover]["abc_patching"]:.3f}. Path patching
  from it, every other head's z frozen at clean: to the logits directly (MLPs recompute) {paths["direct"]:.3f};
  through the later layers' queries, keys, values: {through}.
"""


def refresh_card(path: Path, report: VerifyReport) -> None:
    """Rewrite the measured and rebuild sections of an existing card from `report`; keep the rest,
    sections appended after the rebuild one included (the SAE of grader.toy.sae writes one)."""
    text = path.read_text()
    for heading in (MEASURED_HEADING, "## Reproducibility", REBUILD_HEADING):
        if text.count(heading + "\n") != 1:
            raise ValueError(f"{path} does not have exactly one {heading!r} section; rebuild the model to rewrite the card")
    head, rest = text.split(MEASURED_HEADING + "\n")
    _, repro = rest.split("## Reproducibility\n")
    repro, rebuild = repro.split(REBUILD_HEADING + "\n")
    _, heading, appended = rebuild.partition("\n## ")
    path.write_text(f"{head}{measured_section(report)}\n## Reproducibility\n{repro}{REBUILD_SECTION}{heading}{appended}")


def reverify(out_dir: Path = TOY_MODEL_DIR) -> VerifyReport:
    """Measure a built folder again without training: rewrite verify.json (keeping the training
    times) and the card's measured section. The weights are only read."""
    out_dir = Path(out_dir)
    weights = out_dir / "model.safetensors"
    old = VerifyReport.from_json((out_dir / "verify.json").read_text()) if (out_dir / "verify.json").is_file() else None
    report = verify(out_dir, train_seconds=old.train_seconds if old else None,
                    train_cpu_seconds=old.train_cpu_seconds if old else None)
    recorded = (out_dir / "model.safetensors.sha256").read_text().split()[0]
    if recorded != report.sha256:
        raise ValueError(f"{weights} has sha256 {report.sha256}, not the recorded {recorded}: rebuild instead")
    (out_dir / "verify.json").write_text(report.to_json())
    refresh_card(out_dir / "README.md", report)
    print(report.table())
    return report


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
    parser.add_argument("--verify-only", action="store_true",
                        help="no training: measure the model in --out again, rewrite verify.json and the card's figures")
    args = parser.parse_args(argv)
    if args.verify_only:
        if args.check_repro:
            parser.error("--verify-only trains nothing, so there is nothing to --check-repro")
        try:
            report = reverify(args.out)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not report.passed:
            print("FAILED: the model misses a threshold above.", file=sys.stderr)
            return 1
        return 0
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
