"""Train the toy GPT-2: config, deterministic data packing, and a plain AdamW loop.

The model is Hugging Face's own GPT2LMHeadModel, so the saved folder is exactly what
TransformerBridge.boot_transformers expects. Determinism: every random draw comes from a seeded
generator, the data is packed up front in a fixed order, torch runs with deterministic algorithms
and a fixed thread count, so the same seed on the same machine gives the same weights.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from grader.toy import corpus

# Length range of the token-level random runs (each appears twice); the induction check uses 20.
RANDOM_RUN_MIN, RANDOM_RUN_MAX = 8, 30
MIN_CTX = 64  # exercises and the induction check (BOS + 2 x 20 tokens) assume this many positions
IGNORE = -100  # label that Hugging Face's loss skips


@dataclass(frozen=True)
class TrainConfig:
    # model
    n_layer: int = 2  # two layers: enough for induction (prev-token + induction head) and IOI
    n_head: int = 4  # d_head = 32
    n_embd: int = 128  # d_model
    n_inner: int = 256  # MLP width, 2 * d_model (GPT-2 uses 4x); halves MLP cost, learns as well
    n_ctx: int = 64  # context length; fits BOS + a 2 x 20 repeated run, and every sentence
    init_std: float = 0.02  # std of the normal weight init (GPT-2's initializer_range)
    # data
    seed: int = 0  # seeds corpus, token-level repeats, init and batch order
    vocab_size: int = 4096  # BPE cap; training stops earlier, once every corpus word is one token
    tokenizer_docs: int = 20_000  # documents the tokenizer is trained on
    random_repeat_frac: float = 0.25  # share of segments that are repeated runs of random token ids
    mask_random: bool = True  # no loss on the unpredictable first copy of a random run
    # corpus mix: relative weight of each document kind (see corpus.MIX)
    capital_weight: float = 0.35
    ioi_weight: float = 0.35
    repeat_weight: float = 0.10  # repeated runs of words
    filler_weight: float = 0.20
    # optimisation
    steps: int = 3000  # optimizer steps; in trials (seeds 0-3) all four checks passed by step 2500
    batch_size: int = 32  # rows of n_ctx tokens per step
    lr: float = 3e-3  # peak learning rate (small model, short run: high and decayed)
    warmup: int = 100  # linear warmup steps (at most steps // 10), then cosine decay to lr / 10
    weight_decay: float = 0.01  # on matrices only, not on biases, layer norms or positions
    grad_clip: float = 1.0  # global grad-norm clip, keeps the high lr stable
    threads: int = 2  # fixed thread count: float sums depend on how work is split
    log_every: int = 250  # print the loss every this many steps (0: silent)

    def __post_init__(self) -> None:
        positive = ("n_layer", "n_head", "n_embd", "n_inner", "steps", "batch_size", "threads", "tokenizer_docs")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1; got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_ctx < MIN_CTX:
            raise ValueError(f"n_ctx must be at least {MIN_CTX} (the exercises' prompts need it); got {self.n_ctx}")
        if not 0.0 <= self.random_repeat_frac <= 1.0:
            raise ValueError(f"random_repeat_frac must be in [0, 1]; got {self.random_repeat_frac}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be non-negative; got {self.warmup}")
        corpus.check_mix(self.mix)
        if self.lr <= 0:
            raise ValueError(f"lr must be positive; got {self.lr}")

    @property
    def mix(self) -> dict[str, float]:
        return {"capital": self.capital_weight, "ioi": self.ioi_weight, "repeat": self.repeat_weight, "filler": self.filler_weight}


@dataclass(frozen=True)
class TrainResult:
    model: GPT2LMHeadModel
    seconds: float  # wall-clock time of the optimisation loop (data packing excluded)
    cpu_seconds: float  # CPU time of this process over the same loop (all threads); steadier under load
    final_loss: float  # mean training loss over the last 100 steps


def model_config(cfg: TrainConfig, vocab_size: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.n_ctx,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=cfg.n_inner,
        initializer_range=cfg.init_std,
        # No dropout: the data is endless and synthetic, and dropout would be one more RNG to pin.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )


def _segments(cfg: TrainConfig, tok: GPT2TokenizerFast) -> Iterator[tuple[list[int], list[int]]]:
    """An endless stream of (ids, labels) segments, each starting with BOS: corpus documents and
    random-token repeats.

    Documents are separated by BOS, GPT-2's <|endoftext|> convention, so every sentence starts
    exactly like a TransformerLens prompt (to_tokens prepends BOS).
    """
    rng = random.Random(cfg.seed + 1)  # its own stream, independent of the corpus generator
    docs = corpus.documents(cfg.seed, cfg.mix)
    bos = tok.bos_token_id
    while True:
        # Tokenize in chunks: the fast tokenizer is much quicker on lists.
        chunk = [next(docs) for _ in range(1024)]
        for ids in tok(chunk)["input_ids"]:
            if rng.random() < cfg.random_repeat_frac:
                # Random ids over the whole vocabulary (not just words), so induction also works on
                # the uniformly random tokens the classic induction exercise feeds the model.
                n = rng.randint(RANDOM_RUN_MIN, min(RANDOM_RUN_MAX, (cfg.n_ctx - 1) // 2))
                run = [rng.randrange(1, len(tok)) for _ in range(n)]
                seg = [bos, *run, *run]
                labels = list(seg)
                if cfg.mask_random:
                    # The first copy and the second copy's first token cannot be predicted: their
                    # loss is pure noise that would drown out the text (and slow induction down).
                    labels[1 : n + 2] = [IGNORE] * (n + 1)
                yield seg, labels
            seg = [bos, *ids]
            yield seg, seg


def pack_rows(cfg: TrainConfig, tok: GPT2TokenizerFast, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels), each [n_rows, n_ctx]: whole segments back to back, cut at n_ctx."""
    segments = _segments(cfg, tok)
    inputs = torch.empty(n_rows, cfg.n_ctx, dtype=torch.long)
    labels = torch.empty(n_rows, cfg.n_ctx, dtype=torch.long)
    for r in range(n_rows):
        row: list[int] = []
        row_labels: list[int] = []
        while len(row) < cfg.n_ctx:
            ids, lab = next(segments)
            row.extend(ids)
            row_labels.extend(lab)
        inputs[r] = torch.tensor(row[: cfg.n_ctx])
        labels[r] = torch.tensor(row_labels[: cfg.n_ctx])
    return inputs, labels


def lr_at(cfg: TrainConfig, step: int) -> float:
    warmup = min(cfg.warmup, cfg.steps // 10)  # short experimental runs still get a schedule
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def set_determinism(cfg: TrainConfig) -> None:
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)


def train(cfg: TrainConfig, tok: GPT2TokenizerFast) -> TrainResult:
    """Train a fresh model on the packed corpus; deterministic for a given cfg and machine."""
    # Global torch settings are put back afterwards, so a caller's process is left as it was.
    was_deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    set_determinism(cfg)
    try:
        return _train(cfg, tok)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, tok: GPT2TokenizerFast) -> TrainResult:
    inputs, labels = pack_rows(cfg, tok, cfg.steps * cfg.batch_size)
    torch.manual_seed(cfg.seed)  # init does not depend on how many draws packing made
    model = GPT2LMHeadModel(model_config(cfg, len(tok)))
    model.train()

    decay = [p for n, p in model.named_parameters() if p.ndim == 2 and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim == 2 and "wpe" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        foreach=False,  # the plain per-tensor loop: simplest numerics, same result every run
    )

    losses: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(cfg.steps):
        rows = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        loss = model(input_ids=inputs[rows], labels=labels[rows]).loss  # HF shifts labels by one itself
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if cfg.log_every and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            recent = losses[-cfg.log_every :]
            elapsed = time.perf_counter() - start
            print(f"  step {step + 1:>5}/{cfg.steps}  loss {sum(recent) / len(recent):.3f}  {elapsed:6.1f} s", flush=True)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    tail = losses[-100:]
    return TrainResult(model=model, seconds=seconds, cpu_seconds=cpu_seconds, final_loss=sum(tail) / len(tail))
