"""Which model to grade on, on which device, and how to load it.

Two models are known:

- ``gpt2-small``: GPT-2 small from the Hugging Face hub (the course's real target);
- ``toy-gpt2``: the project's own small GPT-2 trained by ``mechgrade toy build`` and shipped in
  ``fixtures/models/toy-gpt2`` (offline, what CI and students without the hub use).

Both load through the same TransformerLens 4 call: ``TransformerBridge.boot_transformers``
followed by ``enable_compatibility_mode()`` (HookedTransformer numerics).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.project import PROJECT_ROOT

if TYPE_CHECKING:  # importing transformer_lens costs seconds; only the loader needs it
    from transformer_lens.model_bridge import TransformerBridge

REPO_ROOT = PROJECT_ROOT
TOY_MODEL_DIR = REPO_ROOT / "fixtures" / "models" / "toy-gpt2"
TOY_BUILD_COMMAND = "mechgrade toy build"
ENV_MODEL = "MECHGRADE_MODEL"
HUB_URL = "https://huggingface.co/api/models/gpt2"  # a small answer that says the hub serves GPT-2
# How long the default-model choice may wait on the network before it falls back.
HUB_PROBE_SECONDS = 3.0


class ModelChoiceError(ValueError):
    """The user asked for a model or device that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    id: str
    source: str  # what boot_transformers receives: a hub name or a local folder
    description: str
    local: bool  # True: ships with the repo, never touches the network

    @property
    def weights_file(self) -> Path | None:
        return Path(self.source) / "model.safetensors" if self.local else None


MODELS: dict[str, ModelSpec] = {
    "gpt2-small": ModelSpec("gpt2-small", "gpt2", "GPT-2 small (124M) from the Hugging Face hub", False),
    "toy-gpt2": ModelSpec(
        "toy-gpt2", str(TOY_MODEL_DIR), "the project's 2-layer practice GPT-2, trained offline", True
    ),
}
DEFAULT_MODEL = "gpt2-small"
FALLBACK_MODEL = "toy-gpt2"


@dataclass(frozen=True)
class ModelChoice:
    spec: ModelSpec
    reason: str  # "--model", "$MECHGRADE_MODEL", "default", "fallback: ..."

    @property
    def is_fallback(self) -> bool:
        return self.reason.startswith("fallback")

    def banner(self) -> str | None:
        """A loud notice for runs that silently did not grade on the course's real model: plain
        paragraphs, one per line; each report draws its own box around them."""
        if not self.is_fallback:
            return None
        why = self.reason.removeprefix("fallback: ").strip().rstrip(".")
        return (
            f"GRADED ON THE PRACTICE MODEL '{self.spec.id}', not GPT-2 small.\n"
            f"Why: {why}.\n"
            "Scores are valid for the practice model only. Use --model gpt2-small where the Hugging Face "
            "hub or a cached copy of GPT-2 is available."
        )


def get_spec(model_id: str) -> ModelSpec:
    """A known id, or a local Hugging Face-format folder (its name becomes the id)."""
    if model_id in MODELS:
        return MODELS[model_id]
    folder = Path(model_id).expanduser()
    if (folder / "config.json").is_file():
        return ModelSpec(folder.resolve().name, str(folder.resolve()), f"local folder {folder}", True)
    known = ", ".join(sorted(MODELS))
    raise ModelChoiceError(
        f"unknown model id {model_id!r}; known ids: {known} (or a local Hugging Face-format folder)"
    )


def choose_model(requested: str | None = None) -> ModelChoice:
    """--model, else $MECHGRADE_MODEL, else GPT-2 small when reachable, else the toy model."""
    if requested:
        return ModelChoice(get_spec(requested), "--model")
    from_env = os.environ.get(ENV_MODEL, "").strip()
    if from_env:
        return ModelChoice(get_spec(from_env), f"${ENV_MODEL}")
    available, why_not = hub_model_available(MODELS[DEFAULT_MODEL].source)
    if available:
        return ModelChoice(MODELS[DEFAULT_MODEL], "default")
    return ModelChoice(MODELS[FALLBACK_MODEL], f"fallback: {why_not}")


class ModelUnavailable(ModelChoiceError):
    """The model asked for is neither cached nor reachable: the run stops before any check."""


CACHE_GPT2_COMMAND = "python -c \"from transformers import AutoModelForCausalLM as M; M.from_pretrained('gpt2')\""


def ensure_available(choice: ModelChoice) -> None:
    """A hub model asked for by name must be in the cache or the hub must answer now, within
    seconds: otherwise loading it would spend a minute in the hub client's retries and fail every
    check. A cached model with no hub in reach is loaded offline (no retries either)."""
    spec = choice.spec
    if spec.local or choice.is_fallback:
        return
    available, why_not = hub_model_available(spec.source)
    if available and why_not == "cached" and not _offline():
        if not _hub_answers(HUB_URL, HUB_PROBE_SECONDS):
            _go_offline()
    if not available:
        raise ModelUnavailable(
            f"the grading environment cannot load {spec.id}: {why_not}; grade on the practice model with "
            f"--model {FALLBACK_MODEL}, or cache GPT-2 small once on a machine that reaches the hub "
            f"({CACHE_GPT2_COMMAND}) and copy its Hugging Face cache (~/.cache/huggingface) here"
        )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip() in {"1", "true", "TRUE", "yes"}


def _go_offline() -> None:
    """From now on neither huggingface_hub nor transformers tries the network (both read the
    setting when imported, so it is also set where they keep it)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass


def hub_model_available(repo_id: str) -> tuple[bool, str]:
    """Is `repo_id` in the local Hugging Face cache, or the hub reachable? Never hangs."""
    if _in_hf_cache(repo_id):
        return True, "cached"
    if _offline():
        return False, f"{repo_id!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
    if _hub_answers(HUB_URL, HUB_PROBE_SECONDS):
        return True, "hub reachable"
    return False, f"{repo_id!r} is not cached and the Hugging Face hub did not answer within {HUB_PROBE_SECONDS:.0f} s"


def _in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("model.safetensors", "pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo_id, filename), str):
            return True
    return False


def _hub_answers(url: str, timeout: float) -> bool:
    """An HTTP answer from the hub, not just an open socket: proxies and sandboxes accept
    connections to anything. Runs in a thread we can abandon, since DNS ignores timeouts."""
    import urllib.request

    def ask() -> bool:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as answer:
            return 200 <= answer.status < 400

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(ask).result(timeout=timeout)
    except (OSError, ValueError, FutureTimeout):
        return False
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def choose_device(requested: str | None = None) -> str:
    """--device, else CUDA when available, else CPU. MPS only on explicit request, with a warning."""
    import torch

    if requested:
        kind = requested.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ModelChoiceError(
                f"--device {requested} was asked for, but this torch ({torch.__version__}) sees no CUDA "
                "device; leave --device out to use the CPU, or install a CUDA build of torch"
            )
        if kind == "mps":
            if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
                raise ModelChoiceError(f"--device {requested} was asked for, but MPS is not available here")
            warnings.warn(MPS_WARNING, stacklevel=2)
        if kind not in {"cpu", "cuda", "mps"}:
            raise ModelChoiceError(f"unknown device {requested!r}; use cpu, cuda, cuda:N or mps")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        warnings.warn(MPS_WARNING + " Grading on the CPU; pass --device mps to insist.", stacklevel=2)
    return "cpu"


MPS_WARNING = (
    "Apple MPS has known silent numerical faults in attention with TransformerLens "
    "(TransformerLens issues 1178 and 1062): results may be wrong without any error."
)


class ModelLoadError(RuntimeError):
    """The grader could not load the model: nothing a student's code did."""


class ModelFilesError(ModelLoadError):
    """The toy model's files are missing or unreadable."""


def check_local_files(spec: ModelSpec) -> None:
    """Fail early, naming the file and the rebuild command, when the shipped model is unusable."""
    if not spec.local:
        return
    folder = Path(spec.source)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            raise ModelFilesError(f"{spec.id}: {path} is missing or empty; rebuild it with `{TOY_BUILD_COMMAND}`")
    recorded = folder / "model.safetensors.sha256"
    if recorded.is_file():
        want = recorded.read_text().split()[0]
        got = weights_digest(spec)
        if got != want:
            raise ModelFilesError(
                f"{spec.id}: {folder / 'model.safetensors'} is corrupted (sha256 {got[:12]}…, expected "
                f"{want[:12]}… from {recorded.name}); restore it with `git checkout -- {folder}` "
                f"or rebuild it with `{TOY_BUILD_COMMAND}`"
            )


def weights_digest(spec: ModelSpec) -> str:
    """sha256 of the weights file (local folder or Hugging Face cache); 'unknown' if not found."""
    path: Path | None = spec.weights_file
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec.source, "model.safetensors")
            path = Path(cached) if isinstance(cached, str) else None
        except ImportError:
            path = None
    if path is None or not path.is_file():
        return "unknown"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def boot(source: str, device: str) -> TransformerBridge:
    """The one TransformerLens 4 loading path: boot, compatibility mode, eval mode."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a "Loading weights" bar per load clutters the report
    model = TransformerBridge.boot_transformers(source, device=device)
    model.enable_compatibility_mode()
    model.eval()
    # The bridge registers internal torch hooks on its first forward pass. Make that pass now, so
    # that what the model looks like after loading is what it looks like after any run.
    import torch

    with torch.no_grad():
        model(model.to_tokens(""))
    return model


def load_model(spec: ModelSpec, device: str) -> TransformerBridge:
    """Load `spec` on `device`, with errors that name the broken file or the missing network."""
    check_local_files(spec)
    if spec.local:
        # A local folder never needs the hub; make sure nothing tries (and hangs) offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return boot(spec.source, device)
    except ImportError as exc:  # a broken installation, not a broken file
        raise ModelLoadError(
            f"{spec.id}: a library the loader needs does not import ({exc}); "
            "reinstall the project's dependencies (see the README's set-up command)"
        ) from exc
    except Exception as exc:  # transformers/safetensors raise many types for a bad file
        if spec.local:
            raise ModelFilesError(
                f"{spec.id}: could not load {spec.source} ({type(exc).__name__}: {exc}); "
                f"rebuild it with `{TOY_BUILD_COMMAND}`"
            ) from exc
        raise


def describe_environment(device: str) -> dict[str, Any]:
    """Versions and hardware, recorded as provenance beside expected values and in reports."""
    import importlib.metadata as md

    import torch

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "device": device,
        "gpu": gpu,
        "torch": torch.__version__,
        "transformer_lens": version("transformer-lens"),
        "transformers": version("transformers"),
    }
