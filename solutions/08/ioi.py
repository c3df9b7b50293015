"""Reference solution for exercise 08: a whole circuit, indirect object identification."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

COMPONENTS = ("q", "k", "v")


def _is_z(name: str) -> bool:
    return name.endswith("attn.hook_z")


def ioi_batch(model: TransformerBridge, template: str, names: list[tuple[str, str, str]]) -> dict[str, Tensor]:
    """Clean prompts, the ABC prompts (the second subject replaced by a third name) and the answer ids."""
    ids = lambda name: model.to_single_token(" " + name)  # noqa: E731 - every name is one token
    clean = model.to_tokens([template.format(io=io, s=s) for io, s, _ in names])
    io = torch.tensor([ids(io) for io, _, _ in names])
    s = torch.tensor([ids(s) for _, s, _ in names])
    corrupted = clean.clone()
    for row, (_, _, third) in enumerate(names):
        # S2 is the subject's last occurrence: S1 and the indirect object stay as they are.
        s2 = int((clean[row] == s[row]).nonzero()[-1])
        corrupted[row, s2] = ids(third)
    return {"clean": clean, "corrupted": corrupted, "io": io.to(clean.device), "s": s.to(clean.device)}


def logit_diff(logits: Tensor, io: Tensor, s: Tensor) -> Tensor:
    last = logits[:, -1]  # [batch, d_vocab]
    # One id per prompt: gather, not last[:, io] (that is every prompt's IO for every prompt).
    io_logit = last.gather(1, io[:, None].to(last.device))[:, 0]
    s_logit = last.gather(1, s[:, None].to(last.device))[:, 0]
    return (io_logit - s_logit).mean()


def ioi_metric(logits: Tensor, io: Tensor, s: Tensor, clean_diff: Tensor | float, corrupted_diff: Tensor | float) -> Tensor:
    # 1 where the run is as good as the clean one, 0 where it is as bad as the corrupted one.
    return (logit_diff(logits, io, s) - corrupted_diff) / (clean_diff - corrupted_diff)


def _baselines(model: TransformerBridge, batch: dict[str, Tensor]):
    """Both runs once: their logit differences and every head's z."""
    clean_logits, clean_cache = model.run_with_cache(batch["clean"], names_filter=_is_z)
    corrupted_logits, corrupted_cache = model.run_with_cache(batch["corrupted"], names_filter=_is_z)
    io, s = batch["io"], batch["s"]
    return logit_diff(clean_logits, io, s), logit_diff(corrupted_logits, io, s), clean_cache, corrupted_cache


@torch.no_grad()
def patch_heads(model: TransformerBridge, batch: dict[str, Tensor]) -> Tensor:
    clean_diff, corrupted_diff, _, corrupted_cache = _baselines(model, batch)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    result = torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        for head in range(n_heads):
            def corrupt(z: Tensor, hook, head: int = head) -> Tensor:
                z[:, :, head] = corrupted_cache[hook.name][:, :, head]  # every position, this head only
                return z

            logits = model.run_with_hooks(batch["clean"], fwd_hooks=[(name, corrupt)])
            result[layer, head] = ioi_metric(logits, batch["io"], batch["s"], clean_diff, corrupted_diff)
    return result


def _sender_run(model, batch, sender, clean_cache, corrupted_cache, extra_hooks=()):
    """The clean run with the sender's z from the corrupted run and every other head's z frozen at clean."""
    sender_layer, sender_head = sender

    def freeze(z: Tensor, hook) -> Tensor:
        z[:] = clean_cache[hook.name]  # a head downstream of the sender cannot pass its effect on
        if hook.layer() == sender_layer:
            z[:, :, sender_head] = corrupted_cache[hook.name][:, :, sender_head]
        return z

    return model.run_with_hooks(batch["clean"], fwd_hooks=[(_is_z, freeze), *extra_hooks])


@torch.no_grad()
def path_patch_to_logits(model: TransformerBridge, batch: dict[str, Tensor], sender: tuple[int, int]) -> float:
    clean_diff, corrupted_diff, clean_cache, corrupted_cache = _baselines(model, batch)
    logits = _sender_run(model, batch, sender, clean_cache, corrupted_cache)
    return float(ioi_metric(logits, batch["io"], batch["s"], clean_diff, corrupted_diff))


@torch.no_grad()
def path_patch(model: TransformerBridge, batch: dict[str, Tensor], sender: tuple[int, int],
               receivers: list[tuple[int, int]], component: str) -> float:
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, not {component!r}")
    clean_diff, corrupted_diff, clean_cache, corrupted_cache = _baselines(model, batch)
    layers = sorted({layer for layer, _ in receivers})
    names = {f"blocks.{layer}.attn.hook_{component}" for layer in layers}
    # Run 2: what the receivers' inputs become when only the sender changes.
    received: dict[str, Tensor] = {}

    def keep(activation: Tensor, hook) -> Tensor:
        received[hook.name] = activation.clone()
        return activation

    _sender_run(model, batch, sender, clean_cache, corrupted_cache, [(lambda n: n in names, keep)])

    # Run 3: a clean run with only the receivers' inputs replaced; everything downstream recomputes.
    def paste(activation: Tensor, hook) -> Tensor:
        for layer, head in receivers:
            if layer == hook.layer():
                activation[:, :, head] = received[hook.name][:, :, head]
        return activation

    logits = model.run_with_hooks(batch["clean"], fwd_hooks=[(lambda n: n in names, paste)])
    return float(ioi_metric(logits, batch["io"], batch["s"], clean_diff, corrupted_diff))


def attribution_patch(model: TransformerBridge, batch: dict[str, Tensor]) -> Tensor:
    io, s = batch["io"], batch["s"]
    with torch.no_grad():
        corrupted_logits, corrupted_cache = model.run_with_cache(batch["corrupted"], names_filter=_is_z)
        corrupted_diff = logit_diff(corrupted_logits, io, s)
    # One forward and one backward pass on the clean run: the gradient of the metric at clean.
    clean_z: dict[str, Tensor] = {}

    def keep(z: Tensor, hook) -> Tensor:
        clean_z[hook.name] = z
        return z

    with torch.enable_grad():
        logits = model.run_with_hooks(batch["clean"], fwd_hooks=[(_is_z, keep)])
        diff = logit_diff(logits, io, s)
        metric = (diff - corrupted_diff) / (diff.detach() - corrupted_diff)
        names = sorted(clean_z, key=lambda n: int(n.split(".")[1]))
        grads = torch.autograd.grad(metric, [clean_z[n] for n in names])
    # metric(corrupted head) ~ metric(clean) + (z_corrupted - z_clean) . gradient, per head.
    rows = [((corrupted_cache[n] - clean_z[n].detach()) * g).sum((0, 1, 3)) for n, g in zip(names, grads)]
    return 1 + torch.stack(rows).cpu()


def plot_attribution_vs_patching(patching: Tensor, attribution: Tensor) -> Figure:
    n_layers, n_heads = patching.shape
    x, y = patching.flatten().tolist(), attribution.flatten().tolist()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x, y)
    for index, (xi, yi) in enumerate(zip(x, y)):
        ax.annotate(f"L{index // n_heads}H{index % n_heads}", (xi, yi), fontsize=8)
    low, high = min(x + y), max(x + y)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)  # where the two agree
    ax.set_xlabel("Activation patching")
    ax.set_ylabel("Attribution patching")
    ax.set_title("Attribution patching against activation patching")
    return fig
