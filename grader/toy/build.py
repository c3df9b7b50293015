"""Build the toy GPT-2: corpus -> tokenizer -> training -> saved folder -> verification.

    python -m grader.toy.build                    # rebuild fixtures/models/toy-gpt2
    python -m grader.toy.build --check-repro      # ... and rebuild again in a temp dir, compare sha256
    python -m grader.toy.build --out /tmp/toy --steps 300   # a quick experiment elsewhere

Exits non-zero when a threshold in grader/toy/verify.py is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never reach for the hub

from grader.models import TOY_BUILD_COMMAND, TOY_MODEL_DIR  # noqa: E402
from grader.toy import corpus  # noqa: E402
from grader.toy.card import write_card  # noqa: E402
from grader.toy.train import TrainConfig, train  # noqa: E402
from grader.toy.tokenizer import train_tokenizer  # noqa: E402
from grader.toy.verify import VerifyReport, sha256_file, verify  # noqa: E402

# Files save_pretrained writes that the model does not need (generation defaults only).
UNNEEDED = ("generation_config.json",)


@dataclass(frozen=True)
class Reproducibility:
    other_sha256: str
    bitwise: bool
    max_abs_diff: float  # largest |w1 - w2| over all weights; 0.0 when bitwise


def save(out_dir: Path, cfg: TrainConfig) -> float:
    """Train and write the Hugging Face folder plus the sha256 file; returns training seconds."""
    tok = train_tokenizer(corpus.generate(cfg.tokenizer_docs, cfg.seed), vocab_size=cfg.vocab_size)
    print(f"tokenizer: {len(tok)} tokens; training {cfg.n_layer}L d{cfg.n_embd} for {cfg.steps} steps", flush=True)
    result = train(cfg, tok)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    for name in UNNEEDED:
        (out_dir / name).unlink(missing_ok=True)
    weights = out_dir / "model.safetensors"
    (out_dir / "model.safetensors.sha256").write_text(f"{sha256_file(weights)}  model.safetensors\n")
    print(f"trained in {result.seconds:.1f} s, final loss {result.final_loss:.3f}", flush=True)
    return result.seconds


def compare_weights(a: Path, b: Path) -> Reproducibility:
    from safetensors.torch import load_file

    sha_a, sha_b = sha256_file(a), sha256_file(b)
    wa, wb = load_file(str(a)), load_file(str(b))
    if wa.keys() != wb.keys():
        raise ValueError(f"the two builds store different tensors: {sorted(wa.keys() ^ wb.keys())}")
    diff = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
    return Reproducibility(other_sha256=sha_b, bitwise=sha_a == sha_b, max_abs_diff=diff)


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

    seconds = save(out_dir, cfg)
    report = verify(out_dir, train_seconds=round(seconds, 1))
    (out_dir / "verify.json").write_text(report.to_json())

    repro: Reproducibility | None = None
    if check_repro:
        print("rebuilding in a temp dir to check reproducibility ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="toy-gpt2-") as tmp:
            save(Path(tmp), dataclasses.replace(cfg, log_every=0))
            repro = compare_weights(out_dir / "model.safetensors", Path(tmp) / "model.safetensors")
        print(f"rebuild sha256 {'matches' if repro.bitwise else 'DIFFERS'}; max |diff| {repro.max_abs_diff:.3g}")

    write_card(out_dir / "README.md", report, cfg, repro, machine=_machine())
    print(report.table())
    return report


def _machine() -> str:
    cpus = os.cpu_count() or 0
    return f"{platform.processor() or platform.machine()}, {cpus} CPU cores visible, {platform.system()}"


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
