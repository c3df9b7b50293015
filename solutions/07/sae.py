"""Reference solution for exercise 07: a sparse autoencoder, written by hand."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge

HOOK_POINT = "blocks.0.hook_resid_post"


class SparseAutoencoder(nn.Module):
    """x [..., d_in] -> latents [..., d_sae] (sparse, non-negative) -> reconstruction [..., d_in]."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        super().__init__()
        W_dec = torch.randn(d_sae, d_in)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)  # each latent's direction has unit norm
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())  # tied at the start, trained apart
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x: Tensor) -> Tensor:
        # b_dec is subtracted first so that the encoder sees activations centred where the
        # decoder puts its origin; the ReLU comes last, after the encoder's bias.
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: Tensor) -> Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        latents = self.encode(x)
        return self.decode(latents), latents


def sae_loss(sae: SparseAutoencoder, x: Tensor, l1_coeff: float) -> dict[str, Tensor]:
    reconstruction, latents = sae(x)
    squared_error = ((reconstruction - x) ** 2).sum(-1).mean()  # summed over d_in, mean over the batch
    l1 = latents.abs().sum(-1).mean()  # summed over latents, mean over the batch
    return {"reconstruction": squared_error, "l1": l1, "total": squared_error + l1_coeff * l1}


@torch.no_grad()
def normalize_decoder(sae: SparseAutoencoder) -> None:
    norms = sae.W_dec.norm(dim=-1, keepdim=True)  # one norm per latent: rows, [d_sae, 1]
    sae.W_dec /= norms.clamp_min(1e-8)  # a zero row stays zero instead of becoming NaN


def train_sae(
    activations: Tensor,
    d_sae: int,
    steps: int = 500,
    lr: float = 2e-3,
    l1_coeff: float = 2.0,
    seed: int = 0,
    batch_size: int = 256,
) -> SparseAutoencoder:
    torch.manual_seed(seed)
    activations = activations.detach().float()
    sae = SparseAutoencoder(activations.shape[1], d_sae).to(activations.device)
    with torch.no_grad():
        sae.b_dec.copy_(activations.mean(0))  # start the decoder's origin at the data's mean
    optimiser = torch.optim.Adam(sae.parameters(), lr=lr)
    generator = torch.Generator(device=activations.device).manual_seed(seed)
    for _ in range(steps):
        batch = activations[torch.randint(0, len(activations), (batch_size,), generator=generator,
                                          device=activations.device)]
        loss = sae_loss(sae, batch, l1_coeff)["total"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        # Otherwise the L1 penalty is dodged by shrinking latents and growing decoder rows.
        normalize_decoder(sae)
    return sae


@torch.no_grad()
def top_activating_tokens(
    sae: SparseAutoencoder, model: TransformerBridge, prompts: list[str], latent: int, k: int = 10
) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []
    for prompt in prompts:
        tokens = model.to_tokens(prompt)  # [1, seq], BOS first
        _, cache = model.run_with_cache(tokens, names_filter=HOOK_POINT)
        values = sae.encode(cache[HOOK_POINT][0])[:, latent]  # [seq]
        str_tokens = model.to_str_tokens(tokens[0])
        # Position 0 is the BOS token: not text, and the SAE was not trained on it.
        found += [(token, value) for token, value in zip(str_tokens[1:], values[1:].tolist()) if value > 0]
    found.sort(key=lambda item: item[1], reverse=True)
    return found[:k]


def plot_latent_activations(
    latent_acts: Tensor, str_tokens: list[str], latents: list[int], title: str | None = None
) -> Figure:
    values = latent_acts.detach().cpu()[:, latents].T.numpy()  # [len(latents), seq]: one row per latent
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(str_tokens)), 1 + 0.4 * len(latents)))
    image = ax.imshow(values, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(str_tokens)), str_tokens, rotation=45)
    ax.set_yticks(range(len(latents)), [f"latent {latent}" for latent in latents])
    ax.set_xlabel("Token")
    ax.set_ylabel("Latent")
    if title is not None:
        ax.set_title(title)
    fig.colorbar(image, ax=ax)
    return fig
