"""Exercise 07's checks catch the mistakes they name and cannot be fooled by an SAE that lies about
itself (an answer that does nothing: see test_points_follow_work.py).

The machinery is tests/test_exercise_mistakes.py's (a submission is solutions/ with some functions
rewritten, graded in a subprocess); these runs grade exercise 07 alone. A rewrite names a function
(``sae_loss``) or a method (``SparseAutoencoder.encode``).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from python_source import parse as parse_python
from test_exercise_mistakes import (
    Graded,
    Mistake,
    _fn,
    _full_points,
    assert_caught_and_named,
    assert_untouched_keep_full_points,
    build_submission,
    grading_batches,
    replace_function,
)

CHECKS = "exercises/07"
SOURCE = Path("07") / "sae.py"
ENCODE = "test_encode_is_relu_of_the_centred_input"
FORWARD = "test_decode_and_forward_rebuild_the_input"
LOSS = "test_sae_loss_sums_over_features_and_averages_over_the_batch"
NORMALIZE = "test_normalize_decoder_gives_unit_rows_in_place"
TRAIN = "test_train_sae_learns_a_sparse_faithful_dictionary"
TOP = "test_top_activating_tokens_ranks_the_tokens_a_latent_reads"  # cases country, text
TOP_HIDDEN = "test_top_activating_tokens_on_held_out_text"  # its hidden twin: text the exercise never shows
PLOT = "test_plot_latent_activations_draws_latents_by_tokens"
INIT = "test_sparse_autoencoder_starts_with_unit_decoder_rows_and_a_tied_encoder"
# The checks of each function; a method's slip also reaches the checks that run it (train_sae
# runs everything, top_activating_tokens runs encode).
FUNCTION_TESTS = {
    "SparseAutoencoder.__init__": (INIT,),
    "SparseAutoencoder.encode": (ENCODE, FORWARD, TOP, TOP_HIDDEN, TRAIN),
    "SparseAutoencoder.decode": (FORWARD, TRAIN),
    "sae_loss": (LOSS, TRAIN),
    "normalize_decoder": (NORMALIZE, TRAIN),
    "train_sae": (TRAIN,),
    "top_activating_tokens": (TOP, TOP_HIDDEN),
    "plot_latent_activations": (PLOT,),
}


def _method(source: str) -> str:
    """A method's source, indented to sit in its class."""
    return textwrap.indent(_fn(source), "    ")


MISTAKES = [
    # ---------------------------------------------------------------- batch A
    Mistake("07-relu-before-the-bias", "A", "07", "SparseAutoencoder.encode", _method('''
        def encode(self, x):
            return torch.relu((x - self.b_dec) @ self.W_enc) + self.b_enc
        '''), f"{ENCODE}[model]", "the ReLU comes before the encoder bias",
        also={f"{ENCODE}[small]": "the ReLU comes before the encoder bias", FORWARD: None}),
    Mistake("07-l1-on-the-wrong-axis", "A", "07", "sae_loss", _fn('''
        def sae_loss(sae, x, l1_coeff):
            reconstruction, latents = sae(x)
            squared_error = ((reconstruction - x) ** 2).sum(-1).mean()
            l1 = latents.abs().sum(0).mean()  # summed over the batch, mean over the latents
            return {"reconstruction": squared_error, "l1": l1, "total": squared_error + l1_coeff * l1}
        '''), LOSS, "the L1 is on the wrong axis"),
    Mistake("07-plot-transposed", "A", "07", "plot_latent_activations", _fn('''
        def plot_latent_activations(latent_acts, str_tokens, latents, title=None):
            fig, ax = plt.subplots()
            image = ax.imshow(latent_acts.detach().cpu()[:, latents].numpy())
            ax.set_yticks(range(len(str_tokens)), str_tokens)
            ax.set_xticks(range(len(latents)), [f"latent {latent}" for latent in latents])
            ax.set_xlabel("Token")
            ax.set_ylabel("Latent")
            ax.set_title(title)
            fig.colorbar(image, ax=ax)
            return fig
        '''), PLOT, "the image is transposed"),
    # ---------------------------------------------------------------- batch B
    Mistake("07-b-dec-not-subtracted", "B", "07", "SparseAutoencoder.encode", _method('''
        def encode(self, x):
            return torch.relu(x @ self.W_enc + self.b_enc)
        '''), f"{ENCODE}[model]", "b_dec is not subtracted",
        also={f"{ENCODE}[small]": "b_dec is not subtracted", FORWARD: None, TOP: None, TOP_HIDDEN: None}),
    Mistake("07-decoder-normalised-along-columns", "B", "07", "normalize_decoder", _fn('''
        @torch.no_grad()
        def normalize_decoder(sae):
            sae.W_dec /= sae.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-8)
        '''), f"{NORMALIZE}[scaled rows]", "the columns were normalised",
        also={f"{NORMALIZE}[a zero row]": "the columns were normalised"}),
    # Its own encode, so the broken encode of this batch does not leak into it.
    Mistake("07-top-tokens-keep-bos", "A", "07", "top_activating_tokens", _fn('''
        @torch.no_grad()
        def top_activating_tokens(sae, model, prompts, latent, k=10):
            found = []
            for prompt in prompts:
                tokens = model.to_tokens(prompt)
                _, cache = model.run_with_cache(tokens, names_filter=HOOK_POINT)
                x = cache[HOOK_POINT][0]
                values = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)[:, latent]
                found += [(t, v) for t, v in zip(model.to_str_tokens(tokens[0]), values.tolist()) if v > 0]
            return sorted(found, key=lambda item: item[1], reverse=True)[:k]
        '''), f"{TOP}[text]", "position 0 is the BOS token",
        also={TOP_HIDDEN: "position 0 is the BOS token"},
        keeps=(f"{TOP}[country]",)),  # the country latent is silent on BOS
    # ---------------------------------------------------------------- batch C
    Mistake("07-loss-averaged-over-d-in", "C", "07", "sae_loss", _fn('''
        def sae_loss(sae, x, l1_coeff):
            reconstruction, latents = sae(x)
            squared_error = torch.nn.functional.mse_loss(reconstruction, x)
            l1 = latents.abs().sum(-1).mean()
            return {"reconstruction": squared_error, "l1": l1, "total": squared_error + l1_coeff * l1}
        '''), LOSS, "averaged over d_in too (F.mse_loss)"),
    Mistake("07-zero-row-becomes-nan", "C", "07", "normalize_decoder", _fn('''
        @torch.no_grad()
        def normalize_decoder(sae):
            sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True)
        '''), f"{NORMALIZE}[a zero row]", "a zero row became NaN", keeps=(f"{NORMALIZE}[scaled rows]",)),
    Mistake("07-top-tokens-ascending", "C", "07", "top_activating_tokens", _fn('''
        @torch.no_grad()
        def top_activating_tokens(sae, model, prompts, latent, k=10):
            found = []
            for prompt in prompts:
                tokens = model.to_tokens(prompt)
                _, cache = model.run_with_cache(tokens, names_filter=HOOK_POINT)
                values = sae.encode(cache[HOOK_POINT][0])[:, latent]
                strings = model.to_str_tokens(tokens[0])
                found += [(t, v) for t, v in zip(strings[1:], values[1:].tolist()) if v > 0]
            return sorted(found, key=lambda item: item[1])[:k]
        '''), f"{TOP}[country]", "highest first", also={f"{TOP}[text]": "highest first", TOP_HIDDEN: "highest first"}),
    # Its own math throughout, so the broken sae_loss of this batch does not leak into it.
    Mistake("07-train-without-l1", "C", "07", "train_sae", _fn('''
        def train_sae(activations, d_sae, steps=500, lr=2e-3, l1_coeff=2.0, seed=0, batch_size=256):
            torch.manual_seed(seed)
            sae = SparseAutoencoder(activations.shape[1], d_sae)
            with torch.no_grad():
                sae.b_dec.copy_(activations.mean(0))
            optimiser = torch.optim.Adam(sae.parameters(), lr=lr)
            for _ in range(steps):
                x = activations[torch.randint(0, len(activations), (batch_size,))]
                latents = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
                loss = ((latents @ sae.W_dec + sae.b_dec - x) ** 2).sum(-1).mean()  # the L1 penalty is left out
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            return sae
        '''), TRAIN, "the L1 penalty is not doing its job"),
]

# An SAE that lies about itself: its forward gives back a perfect reconstruction from one-hot
# latents, and its state_dict claims the identity dictionary (x = ReLU(x) - ReLU(-x): every bit
# of the variance explained, made without any training). The training check judges the
# parameters it fetches with its own math: they explain everything, but with d_in latents per
# token, which is no sparse code.
LIES = _fn('''
    class Liar(SparseAutoencoder):
        def encode(self, x):
            latents = torch.zeros(*x.shape[:-1], self.W_enc.shape[1])
            latents[..., 0] = 1.0  # one latent per token: as sparse as can be
            return latents

        def forward(self, x):
            return x.clone(), self.encode(x)  # a perfect reconstruction

        def state_dict(self, *args, **kwargs):
            d_in, d_sae = self.W_enc.shape
            eye = torch.eye(d_in)
            W_dec = torch.zeros(d_sae, d_in)
            W_dec[:d_in], W_dec[d_in:2 * d_in] = eye, -eye
            return {"W_enc": W_dec.T.clone(), "b_enc": torch.zeros(d_sae), "W_dec": W_dec, "b_dec": torch.zeros(d_in)}

    def train_sae(activations, d_sae, steps=500, lr=2e-3, l1_coeff=2.0, seed=0, batch_size=256):
        return Liar(activations.shape[1], d_sae)
    ''')


def replace_in(source: str, name: str, new: str) -> str:
    """`source` with function `name`, or method `Class.method`, replaced by `new`."""
    if "." not in name:
        return replace_function(source, name, new)
    owner, method = name.split(".")
    tree = parse_python(source)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == owner:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == method:
                    start = min([item.lineno, *(d.lineno for d in item.decorator_list)]) - 1
                    lines = source.splitlines(keepends=True)
                    return "".join(lines[:start]) + new + "".join(lines[item.end_lineno:])
    raise LookupError(f"no method {name} in the source")


def _submission(folder: Path, rewrites: dict[str, str], whole: str | None = None, extra: str = "") -> Path:
    """solutions/ with exercise 07's functions rewritten (or its module replaced by `whole`, or
    `extra` appended: a later definition wins)."""
    build_submission(folder, {})
    target = folder / SOURCE
    source = whole if whole is not None else target.read_text()
    for name, new in rewrites.items():
        source = replace_in(source, name, new)
    target.write_text(source + ("\n\n" + extra if extra else ""))
    parse_python(target.read_text())
    return folder


BATCHES = sorted({m.batch for m in MISTAKES})
SUBMISSIONS: dict[str, Callable[[Path], Path]] = {
    **{batch: (lambda folder, batch=batch: _submission(
        folder, {m.function: m.source for m in MISTAKES if m.batch == batch})) for batch in BATCHES},
    "liar": lambda folder: _submission(folder, {}, extra=LIES),
}


@pytest.fixture(scope="module")
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Graded]]:
    """graded(submission) -> its grading run on exercise 07; the needed runs go two at a time."""
    needed = []
    for item in request.session.items:
        params = getattr(item, "callspec", None)
        params = params.params if params and item.path == request.path else {}
        name = params["mistake"].batch if "mistake" in params else params.get("batch")
        if item.path == request.path and item.name.startswith("test_an_sae_that_lies"):
            name = "liar"
        if name and name not in needed:
            needed.append(name)

    with grading_batches(tmp_path_factory, None, needed, CHECKS, build=lambda name, folder: SUBMISSIONS[name](folder)) as get:
        yield get


def test_each_batch_rewrites_a_function_at_most_once() -> None:
    for batch in BATCHES:
        touched = [m.function for m in MISTAKES if m.batch == batch]
        assert len(touched) == len(set(touched)), f"batch {batch} rewrites a function twice: {touched}"
    assert {m.function for m in MISTAKES} <= set(FUNCTION_TESTS)


@pytest.mark.parametrize("mistake", [pytest.param(m, id=m.id) for m in MISTAKES])
def test_the_check_catches_the_mistake_and_names_it(mistake: Mistake, graded) -> None:
    assert_caught_and_named(graded(mistake.batch), mistake)


@pytest.mark.parametrize("batch", BATCHES)
def test_checks_no_mistake_reaches_keep_full_points(batch: str, graded) -> None:
    untouched = assert_untouched_keep_full_points(graded(batch), [m for m in MISTAKES if m.batch == batch], FUNCTION_TESTS)
    assert untouched, "every check was touched: the batch proves nothing about the rest"


def test_an_sae_that_lies_about_itself_cannot_pass_training(graded) -> None:
    run = graded("liar")
    entry = run.entry(TRAIN)
    assert entry["score"] == 0, entry["output"]
    assert "on held-out activations: 1.000 of the variance explained, 128.0 latents active per token" in entry["output"], \
        entry["output"]
    others = {name: e for name, e in run.tests.items() if name != TRAIN}
    assert all(_full_points(e) for e in others.values()), {n: e["output"] for n, e in others.items() if not _full_points(e)}
