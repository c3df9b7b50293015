"""Exercise 07: a sparse autoencoder, written by hand.

A model's activation vector mixes many things at once. A *sparse autoencoder* (SAE) rewrites it
as a sum of a few directions taken from a dictionary much larger than the vector:

    latents        f = ReLU((x - b_dec) @ W_enc + b_enc)      # [..., d_sae], mostly zeros
    reconstruction x_hat = f @ W_dec + b_dec                  # [..., d_in], close to x

Row ``i`` of ``W_dec`` is latent ``i``'s direction; trained with a penalty on ``|f|``, most latents
are zero on any one token, and each latent tends to mean one thing (" France", " is", a name).

You write the SAE, its loss, its training loop, and two ways to look at what it learned. The
activations come from ``blocks.0.hook_resid_post`` (the residual stream after layer 0), every
token but the BOS token. Run ``pytest exercises/07`` to grade this file; the HTML report shows
your plot beside the reference one.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge

HOOK_POINT = "blocks.0.hook_resid_post"


class SparseAutoencoder(nn.Module):
    """x [..., d_in] -> latents [..., d_sae] (sparse, non-negative) -> reconstruction [..., d_in]."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        """Four ``nn.Parameter``s, with exactly these names and shapes:

        - ``W_enc`` ``[d_in, d_sae]``, ``b_enc`` ``[d_sae]``,
        - ``W_dec`` ``[d_sae, d_in]``, ``b_dec`` ``[d_in]``.

        Initialise ``W_dec`` with random rows of unit norm (each latent's direction), ``W_enc`` as
        its transpose (a copy, not the same tensor), and both biases with zeros.

        Example:
            >>> sae = SparseAutoencoder(128, 512)
            >>> {k: tuple(v.shape) for k, v in sae.state_dict().items()}
            {'W_enc': (128, 512), 'b_enc': (512,), 'W_dec': (512, 128), 'b_dec': (128,)}

        Hint:
            Call ``super().__init__()`` first. ``W = torch.randn(d_sae, d_in)``, divide by
            ``W.norm(dim=-1, keepdim=True)``, then ``self.W_dec = nn.Parameter(W)`` and
            ``self.W_enc = nn.Parameter(W.T.clone())``.
        """
        raise NotImplementedError("exercise 07: write SparseAutoencoder.__init__")

    def encode(self, x: Tensor) -> Tensor:
        """The latents: ``ReLU((x - b_dec) @ W_enc + b_enc)``, ``[..., d_in] -> [..., d_sae]``.

        Example:
            >>> sae.encode(torch.zeros(3, 128)).shape
            torch.Size([3, 512])

        Hint:
            The order matters: subtract ``b_dec`` from x, multiply, add ``b_enc``, and only then
            ``torch.relu``.
        """
        raise NotImplementedError("exercise 07: write SparseAutoencoder.encode")

    def decode(self, f: Tensor) -> Tensor:
        """The reconstruction: ``f @ W_dec + b_dec``, ``[..., d_sae] -> [..., d_in]``.

        Hint:
            One line; no ReLU here.
        """
        raise NotImplementedError("exercise 07: write SparseAutoencoder.decode")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(reconstruction, latents)`` for ``x``: decode(encode(x)), and encode(x).

        Example:
            >>> reconstruction, latents = sae(x)     # calling the module runs forward

        Hint:
            Encode once and keep the latents: the loss needs both.
        """
        raise NotImplementedError("exercise 07: write SparseAutoencoder.forward")


def sae_loss(sae: SparseAutoencoder, x: Tensor, l1_coeff: float) -> dict[str, Tensor]:
    """The training loss of `sae` on a batch ``x`` ``[batch, d_in]``, as a dict of scalar tensors:

    - ``"reconstruction"``: the squared error ``(x_hat - x) ** 2`` summed over ``d_in``, then the
      mean over the batch;
    - ``"l1"``: ``|latents|`` summed over the latents (``d_sae``), then the mean over the batch;
    - ``"total"``: ``reconstruction + l1_coeff * l1`` (the one to call ``.backward()`` on).

    Keep them as tensors (not floats) so the gradient flows.

    Example:
        >>> sae_loss(sae, x, l1_coeff=2.0)
        {'reconstruction': tensor(3.1), 'l1': tensor(9.7), 'total': tensor(22.5)}   # illustrative

    Hint:
        ``reconstruction, latents = sae(x)``; ``.sum(-1).mean()`` sums over the last dimension
        (features) and averages over the batch. ``F.mse_loss`` averages over ``d_in`` too: not it.
    """
    raise NotImplementedError("exercise 07: write sae_loss")


def normalize_decoder(sae: SparseAutoencoder) -> None:
    """Scale every row of ``sae.W_dec`` (one latent's direction) to unit norm, in place.

    A row of zeros must stay zeros (finite), not become NaN. Returns None; the parameter itself
    changes (the optimiser keeps a reference to it, so do not replace it with a new Parameter).

    Why: the L1 penalty could otherwise be dodged by making latents tiny and decoder rows huge.

    Hint:
        Under ``torch.no_grad()``: ``norms = sae.W_dec.norm(dim=-1, keepdim=True)``, then
        ``sae.W_dec /= norms.clamp_min(1e-8)``. ``dim=-1`` gives one norm per row.
    """
    raise NotImplementedError("exercise 07: write normalize_decoder")


def train_sae(
    activations: Tensor,
    d_sae: int,
    steps: int = 500,
    lr: float = 2e-3,
    l1_coeff: float = 2.0,
    seed: int = 0,
    batch_size: int = 256,
) -> SparseAutoencoder:
    """Train a ``SparseAutoencoder(d_in, d_sae)`` on ``activations`` ``[n, d_in]`` and return it.

    - ``torch.manual_seed(seed)`` first, so the same seed gives the same SAE;
    - set ``b_dec`` to the mean of the activations before training (the decoder's origin);
    - ``steps`` steps of ``torch.optim.Adam(sae.parameters(), lr=lr)``, each on ``batch_size``
      rows drawn at random, minimising ``sae_loss(...)["total"]``;
    - ``normalize_decoder(sae)`` after every optimiser step.

    The checks train on about 7,000 activations of toy-gpt2 and judge the result on activations
    your code never sees: the fraction of variance it explains, how many latents are active per
    token, and how many never fire. It should take a few seconds on a CPU (at most 30 s).

    Hint:
        ``batch = activations[torch.randint(0, len(activations), (batch_size,))]``, then
        ``optimiser.zero_grad()``, ``loss.backward()``, ``optimiser.step()``, ``normalize_decoder(sae)``.
    """
    raise NotImplementedError("exercise 07: write train_sae")


def top_activating_tokens(
    sae: SparseAutoencoder, model: TransformerBridge, prompts: list[str], latent: int, k: int = 10
) -> list[tuple[str, float]]:
    """The `k` tokens of `prompts` on which latent `latent` is most active, highest first.

    Run each prompt (``model.to_tokens`` adds the BOS token), take ``HOOK_POINT``'s activation,
    encode it with ``sae``, and collect ``(token string, activation)`` for every position where
    the latent is above 0, except position 0 (the BOS token: not text, and the SAE never saw it).
    A token that occurs several times appears once per occurrence. Fewer than `k` items when
    the latent is active on fewer tokens. Activations are Python floats.

    Example:
        >>> top_activating_tokens(sae, model, ["The capital of France is Paris."], latent=59, k=2)
        [(' France', 4.1), (' capital', 0.7)]      # illustrative: compute, don't copy

    Hint:
        ``_, cache = model.run_with_cache(tokens, names_filter=HOOK_POINT)``;
        ``sae.encode(cache[HOOK_POINT][0])[:, latent]``; ``model.to_str_tokens(tokens[0])`` gives
        the strings. Sort with ``key=lambda item: item[1], reverse=True``.
    """
    raise NotImplementedError("exercise 07: write top_activating_tokens")


def plot_latent_activations(
    latent_acts: Tensor, str_tokens: list[str], latents: list[int], title: str | None = None
) -> Figure:
    """A heatmap of a few latents along one prompt; return the matplotlib Figure.

    `latent_acts` is ``[seq, d_sae]`` (``sae.encode`` of one prompt's activations). Draw only the
    chosen `latents`, one row each:

    - ``imshow`` of ``latent_acts[:, latents].T``: rows are the latents, columns the tokens;
    - x tick labels: `str_tokens`; y tick labels: ``f"latent {i}"`` for each ``i`` in `latents`;
    - axis labels ``"Token"`` (x) and ``"Latent"`` (y); a colour bar; `title` when given.

    Do not call ``plt.show()``.

    Hint:
        As exercise 03's heatmap: ``fig, ax = plt.subplots()``, ``image = ax.imshow(...)``,
        ``ax.set_xticks(range(len(str_tokens)), str_tokens)``, ``fig.colorbar(image, ax=ax)``.
        ``.detach().cpu()`` first.
    """
    raise NotImplementedError("exercise 07: write plot_latent_activations")
