"""The shipped toy model (fixtures/models/toy-gpt2) and the pieces that build it.

The model tests measure the SHIPPED files through TransformerLens, as students load them; nothing
here retrains. Rebuild with `mechgrade toy build` if they fail after a change to grader/toy.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers loads: the toy model is local

import json

import pytest

from grader.models import MODELS, TOY_MODEL_DIR, check_local_files
from grader.toy import corpus
from grader.toy.tokenizer import check_single_tokens, load_tokenizer
from grader.toy.verify import (
    CAPITAL_MIN,
    COUNTRY_ATTN_MIN,
    INDUCTION_MIN,
    IOI_MIN,
    MAX_BYTES,
    VerifyReport,
    load,
    sha256_file,
    verify,
)

WEIGHTS = TOY_MODEL_DIR / "model.safetensors"


# --- corpus and tokenizer (fast, no model) ---------------------------------------------------


def test_word_lists_are_big_enough_and_hold_the_classics() -> None:
    assert len(corpus.CAPITALS) >= 40
    for country, capital in {"France": "Paris", "Italy": "Rome", "Germany": "Berlin", "Spain": "Madrid", "Japan": "Tokyo"}.items():
        assert corpus.CAPITALS[country] == capital
    assert {"Mary", "John"} <= set(corpus.NAMES)
    assert len(set(corpus.NAMES)) == len(corpus.NAMES)
    # A word that is both a name and a place would make the IOI and capital checks ambiguous.
    places = set(corpus.CAPITALS) | set(corpus.CAPITALS.values())
    assert not places & set(corpus.NAMES)
    assert len(set(corpus.CAPITALS.values())) == len(corpus.CAPITALS)


def test_corpus_is_deterministic_for_a_seed() -> None:
    assert corpus.generate(300, seed=3) == corpus.generate(300, seed=3)
    assert corpus.generate(300, seed=3) != corpus.generate(300, seed=4)


def test_corpus_has_every_document_kind() -> None:
    docs = corpus.generate(400, seed=0)
    assert any(d.startswith("The capital of ") for d in docs)
    assert any(d.startswith("When ") and " gave a " in d for d in docs)
    halves = [d.split() for d in docs]
    assert any(len(w) % 2 == 0 and len(w) >= 20 and w[: len(w) // 2] == w[len(w) // 2 :] for w in halves)


def test_corpus_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="n_docs"):
        corpus.generate(0)
    with pytest.raises(ValueError, match="mix"):
        corpus.generate(5, mix={"poetry": 1.0})


@pytest.fixture(scope="module")
def tokenizer():  # the shipped tokenizer
    return load_tokenizer(TOY_MODEL_DIR)


@pytest.mark.parametrize("word", corpus.SINGLE_TOKEN_WORDS)
def test_every_country_capital_and_name_is_one_leading_space_token(tokenizer, word: str) -> None:
    assert tokenizer.tokenize(" " + word) == ["Ġ" + word]


def test_tokenizer_is_gpt2_like(tokenizer) -> None:
    assert tokenizer.tokenize(" France") == ["ĠFrance"]
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == 0
    assert tokenizer.bos_token == tokenizer.eos_token == "<|endoftext|>"
    # Byte-level: any text round-trips, even characters the corpus never had.
    text = "Zürich 東京 ✓"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    check_single_tokens(tokenizer)  # raises on a split word


def test_check_single_tokens_names_the_split_word(tokenizer) -> None:
    with pytest.raises(ValueError, match="Xylophonia"):
        check_single_tokens(tokenizer, ["France", "Xylophonia"])


# --- the shipped files -----------------------------------------------------------------------


def test_shipped_files_are_complete_and_small() -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "model.safetensors.sha256", "verify.json", "README.md"):
        assert (TOY_MODEL_DIR / name).is_file(), name
    assert WEIGHTS.stat().st_size < MAX_BYTES
    assert (TOY_MODEL_DIR / "model.safetensors.sha256").read_text().split()[0] == sha256_file(WEIGHTS)
    check_local_files(MODELS["toy-gpt2"])  # the loader's own integrity check
    config = json.loads((TOY_MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_positions"] >= 64


def test_model_card_states_the_shipped_figures() -> None:
    card = (TOY_MODEL_DIR / "README.md").read_text()
    shipped = VerifyReport.from_json((TOY_MODEL_DIR / "verify.json").read_text())
    assert sha256_file(WEIGHTS) in card
    assert f"{WEIGHTS.stat().st_size:,}" in card
    assert f"{shipped.n_params:,}" in card
    assert "Reproducibility" in card


@pytest.fixture(scope="module")
def model():
    """The shipped folder booted through TransformerBridge, as students get it; once per module."""
    return load(TOY_MODEL_DIR)


@pytest.fixture(scope="module")
def report(model) -> VerifyReport:
    """Every measurement, once."""
    return verify(TOY_MODEL_DIR, model=model)


def test_capital_prompt_predicts_the_capital(report: VerifyReport) -> None:
    assert report.capital_accuracy >= CAPITAL_MIN, report.capital_misses


def test_a_head_attends_from_is_to_the_country(report: VerifyReport) -> None:
    assert report.country_attn >= COUNTRY_ATTN_MIN, report.country_attn_head


def test_an_induction_head_exists(report: VerifyReport) -> None:
    assert report.induction_score >= INDUCTION_MIN, report.induction_head


def test_ioi_prefers_the_indirect_object(report: VerifyReport) -> None:
    assert report.ioi_accuracy >= IOI_MIN
    assert report.ioi_mean_logit_diff > 0


def test_verify_json_matches_a_fresh_measurement(report: VerifyReport) -> None:
    shipped = VerifyReport.from_json((TOY_MODEL_DIR / "verify.json").read_text())
    assert shipped.sha256 == report.sha256
    assert shipped.passed
    assert (shipped.country_attn_head, shipped.induction_head) == (report.country_attn_head, report.induction_head)
    for name in ("capital_accuracy", "country_attn", "induction_score", "ioi_accuracy", "ioi_mean_logit_diff"):
        assert getattr(shipped, name) == pytest.approx(getattr(report, name), abs=1e-4), name


def test_figures_are_visible_through_the_student_api(model) -> None:
    """The exact calls an exercise makes: to_tokens prepends BOS, patterns are [batch, head, q, k]."""
    tokens = model.to_tokens("The capital of France is")
    assert model.to_str_tokens(tokens)[:2] == ["<|endoftext|>", "The"]
    logits, cache = model.run_with_cache(tokens)
    assert model.to_string(logits[0, -1].argmax()) == " Paris"
    assert cache["pattern", 0].shape == (1, model.cfg.n_heads, tokens.shape[1], tokens.shape[1])


def test_report_table_lists_every_check(report: VerifyReport) -> None:
    table = report.table()
    assert table.count("PASS") + table.count("FAIL") == len(report.checks)
    assert report.passed
