"""The reference SAE shipped for exercise 07 (fixtures/models/toy-gpt2-sae): its files, its card,
its section of the toy model's card, and its figures measured again on the shipped weights."""

from __future__ import annotations

import json
import os

import pytest
import torch

from grader.toy import sae as ref
from grader.toy.build import refresh_card
from grader.toy.verify import VerifyReport

CARD = ref.SAE_DIR / "README.md"
MODEL_CARD = ref.SAE_DIR.parent / "toy-gpt2" / "README.md"


@pytest.fixture(scope="module")
def model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from grader.models import MODELS, load_model

    return load_model(MODELS["toy-gpt2"], "cpu")


@pytest.fixture(scope="module")
def shipped_report() -> dict:
    return json.loads((ref.SAE_DIR / "report.json").read_text())


def test_the_shipped_sae_matches_its_digest_and_sizes() -> None:
    params = ref.load_shipped()
    assert not ref.parameter_problems(params, 128, 512)
    assert set(params) == set(ref.PARAMETER_NAMES)
    assert torch.allclose(params["W_dec"].norm(dim=-1), torch.ones(512), atol=1e-5)  # unit decoder rows


def test_a_changed_file_is_refused(tmp_path) -> None:
    folder = tmp_path / "sae"
    folder.mkdir()
    data = bytearray((ref.SAE_DIR / ref.WEIGHTS).read_bytes())
    data[-1] ^= 1
    (folder / ref.WEIGHTS).write_bytes(bytes(data))
    (folder / f"{ref.WEIGHTS}.sha256").write_text((ref.SAE_DIR / f"{ref.WEIGHTS}.sha256").read_text())
    with pytest.raises(ref.ShippedSaeError, match="sha256"):
        ref.load_shipped(folder)


def test_the_cards_state_the_shipped_figures(shipped_report: dict) -> None:
    quality = shipped_report["quality"]
    digest = ref.sha256_file(ref.SAE_DIR / ref.WEIGHTS)
    card = CARD.read_text()
    assert digest == shipped_report["sha256"] and digest in card
    assert f"**{quality['variance_explained']:.3f}**" in card and f"**{quality['mean_l0']:.1f}**" in card
    model_card = MODEL_CARD.read_text()
    assert model_card.count(ref.CARD_HEADING) == 1 and model_card.rstrip().endswith("refresh exercise 07's fixtures.")
    assert digest in model_card.split(ref.CARD_HEADING)[1]


def test_its_figures_hold_on_the_shipped_weights(model, shipped_report: dict) -> None:
    quality = ref.measure(ref.load_shipped(), ref.held_out_activations(model))
    stated = shipped_report["quality"]
    assert quality.variance_explained == pytest.approx(stated["variance_explained"], abs=1e-4)
    assert quality.mean_l0 == pytest.approx(stated["mean_l0"], abs=1e-3)
    assert quality.dead_share == pytest.approx(stated["dead_share"], abs=1e-6)


def test_the_model_card_section_is_replaced_not_repeated_and_survives_a_verify_only_refresh(tmp_path, shipped_report) -> None:
    card = tmp_path / "README.md"
    card.write_text(MODEL_CARD.read_text())
    report = ref.ShipReport(ref.Quality(**shipped_report["quality"]), 1.0, "f" * 64, 1, {}, 1)
    ref.append_to_model_card(card, report)
    text = card.read_text()
    assert text.count(ref.CARD_HEADING) == 1 and "f" * 64 in text
    refresh_card(card, VerifyReport.from_json((MODEL_CARD.parent / "verify.json").read_text()))
    assert card.read_text() == text  # the measured section is unchanged, and the appended one is kept
