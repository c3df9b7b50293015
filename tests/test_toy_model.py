"""The shipped toy model (fixtures/models/toy-gpt2) and the pieces that build it.

The model tests measure the SHIPPED files through TransformerLens, as students load them; nothing
here retrains. Rebuild with `mechgrade toy build` if they fail after a change to grader/toy.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers loads: the toy model is local

import dataclasses
import json

import pytest

from grader.models import MODELS, TOY_MODEL_DIR, check_local_files
from grader.toy import corpus
from grader.toy.build import MEASURED_HEADING, main, measured_section, refresh_card, write_card
from grader.toy.tokenizer import check_single_tokens, load_tokenizer
from grader.toy.train import TrainConfig
from grader.toy.verify import (
    CAPITAL_MIN,
    COMPOSITION_INDUCTION_MAX,
    COMPOSITION_LOSS_MIN,
    COUNTRY_ATTN_MIN,
    HEAD_SCORES,
    INDUCTION_MIN,
    IOI_MIN,
    MAX_BYTES,
    ROLE_MIN,
    VerifyReport,
    load,
    roles_of,
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
    # Every measured figure, the per-head roles among them, is rendered from verify.json.
    assert measured_section(shipped) in card
    assert "| L0H0 | 0.972 |" in card and "previous-token |" in card
    assert "country head" not in card  # L0H0's 0.98 on the adjacent country is its previous-token habit


def test_verify_only_rewrites_the_card_as_a_build_writes_it(tmp_path) -> None:
    """`--verify-only` splices the measured section into the card; the result is what a build would
    write from the same report, and a card written from an old verify.json (no head scores) still renders."""
    shipped = VerifyReport.from_json((TOY_MODEL_DIR / "verify.json").read_text())
    (tmp_path / "config.json").write_text((TOY_MODEL_DIR / "config.json").read_text())
    built, spliced = tmp_path / "built.md", tmp_path / "spliced.md"
    write_card(built, shipped, TrainConfig(), None, machine="test machine")
    old = dataclasses.replace(shipped, head_scores=None, head_roles=None, role_threshold=None, repeat_loss=None)
    write_card(spliced, old, TrainConfig(), None, machine="test machine")
    assert "What each head does" not in spliced.read_text()
    refresh_card(spliced, shipped)
    assert spliced.read_text() == built.read_text()


def test_verify_only_measures_a_copy_without_touching_its_weights(tmp_path) -> None:
    """`python -m grader.toy.build --verify-only --out DIR`: no training; verify.json and the card's
    measured section are rewritten, the weights, the training time and the rest of the card kept."""
    import shutil

    folder = tmp_path / "toy"
    shutil.copytree(TOY_MODEL_DIR, folder)
    weights = (folder / "model.safetensors").read_bytes()
    card = (folder / "README.md").read_text()
    raw = json.loads((folder / "verify.json").read_text())
    for key in ("head_scores", "head_roles", "role_threshold", "repeat_loss"):  # as verify.json was before them
        raw.pop(key)
    (folder / "verify.json").write_text(json.dumps(raw))
    assert main(["--verify-only", "--out", str(folder)]) == 0
    assert (folder / "model.safetensors").read_bytes() == weights
    fresh = VerifyReport.from_json((folder / "verify.json").read_text())
    assert fresh.head_roles is not None and fresh.train_seconds == raw["train_seconds"]
    new_card = (folder / "README.md").read_text()
    assert measured_section(fresh) in new_card
    assert new_card.split(MEASURED_HEADING)[0] == card.split(MEASURED_HEADING)[0]
    assert new_card.split("## Reproducibility")[1] == card.split("## Reproducibility")[1]


def test_an_old_verify_json_without_head_scores_still_reads() -> None:
    raw = json.loads((TOY_MODEL_DIR / "verify.json").read_text())
    for key in ("head_scores", "head_roles", "role_threshold", "repeat_loss", "train_seconds", "train_cpu_seconds"):
        raw.pop(key)
    old = VerifyReport.from_json(json.dumps(raw))
    assert old.head_scores is None and old.content_head is None
    assert "country attention, not adjacent" not in old.checks and old.passed


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
    assert shipped.head_scores is not None and report.head_scores is not None
    assert shipped.head_scores.keys() == report.head_scores.keys()
    for head, scores in report.head_scores.items():
        assert list(shipped.head_scores[head]) == list(HEAD_SCORES)
        for name, value in scores.items():
            assert shipped.head_scores[head][name] == pytest.approx(value, abs=1e-4), (head, name)
    assert shipped.head_roles == report.head_roles
    assert shipped.role_threshold == ROLE_MIN
    assert shipped.repeat_loss == pytest.approx(report.repeat_loss, abs=1e-3)


# The roles exercise 03 relies on (issue 12), as measured on the shipped weights (verify.json):
#   L0H0 previous-token 0.972; 0.982 on the country where it is the previous token, 0.267 where not
#   L0H1 country by content 0.924 where the country is not adjacent (0.868 where it is)
#   L1H0..L1H3 induction 0.962 / 0.973 / 0.976 / 0.977 (and on BOS when there is nothing to copy)


def test_l0h0_is_the_previous_token_head_not_a_country_head(report: VerifyReport) -> None:
    l0h0 = report.head_scores["L0H0"]
    assert report.head_roles["L0H0"] == ["previous-token"]
    assert l0h0["previous_token"] > 0.9
    assert report.country_attn_head == (0, 0) and l0h0["country_adjacent"] > 0.9  # the trap: high, by position
    assert l0h0["country_apart"] < ROLE_MIN  # ... and low where the country is not the previous token


def test_l0h1_finds_the_country_by_content(report: VerifyReport) -> None:
    l0h1 = report.head_scores["L0H1"]
    assert report.head_roles["L0H1"] == ["country by content", "end to S2"]  # its IOI job: below
    assert report.content_head == ((0, 1), pytest.approx(l0h1["country_apart"]))
    assert l0h1["country_apart"] > 0.8 and l0h1["country_adjacent"] > 0.8  # both: it finds the country wherever it is
    assert l0h1["previous_token"] < 0.3


def test_every_layer_1_head_is_an_induction_head(report: VerifyReport) -> None:
    for head in range(4):
        assert "induction" in report.head_roles[f"L1H{head}"], report.head_scores[f"L1H{head}"]
        assert report.head_scores[f"L1H{head}"]["induction"] > 0.9
    first, second = report.repeat_loss
    assert first > 10 and second < 0.5  # copying works: the second copy is almost free


def test_the_induction_heads_read_what_the_previous_token_head_wrote(report: VerifyReport) -> None:
    """Exercise 06's circuit: zeroing L0H0's output (hook_z) breaks every layer-1 induction head."""
    shipped = VerifyReport.from_json((TOY_MODEL_DIR / "verify.json").read_text()).composition
    measured = report.composition
    assert shipped is not None and measured is not None
    assert measured["previous_token_head"] == shipped["previous_token_head"] == [0, 0]
    assert measured["induction_scores"] == pytest.approx(shipped["induction_scores"], abs=1e-4)
    assert measured["repeat_loss"] == pytest.approx(shipped["repeat_loss"], abs=1e-3)
    assert max(measured["induction_scores"].values()) < COMPOSITION_INDUCTION_MAX  # 0.96-0.98 with the head
    assert measured["repeat_loss"][1] > COMPOSITION_LOSS_MIN  # 0.05 with the head
    assert measured["repeat_loss"][1] > 100 * report.repeat_loss[1]


def test_the_ioi_circuit_is_the_one_exercise_08_describes(report: VerifyReport) -> None:
    """Exercise 08's measured story: no duplicate-token head and no head moving IO to the end; L0H1
    moves S2 to the end and carries almost all of the ABC effect, directly (MLPs included), not
    through layer 1's heads; the MLPs write most of the logit difference."""
    shipped = VerifyReport.from_json((TOY_MODEL_DIR / "verify.json").read_text()).ioi_circuit
    measured = report.ioi_circuit
    assert shipped is not None and measured is not None
    for name, figures in measured["heads"].items():
        assert figures == pytest.approx(shipped["heads"][name], abs=1e-3), name
    assert measured["components"] == pytest.approx(shipped["components"], abs=1e-2)
    assert measured["paths"] == pytest.approx(shipped["paths"], abs=1e-3)
    assert measured["s2_mover"] == shipped["s2_mover"] == [0, 1]
    scores = report.head_scores
    assert max(h["duplicate_token"] for h in scores.values()) < 0.1
    assert max(h["end_to_io"] for h in scores.values()) < 0.1
    assert scores["L0H1"]["end_to_s2"] > 0.9
    assert all(measured["heads"][f"L1H{head}"]["end_to_went"] > 0.9 for head in range(4))  # after the two names
    assert measured["heads"]["L0H1"]["abc_patching"] < 0.1
    assert all(h["abc_patching"] > 0.9 for name, h in measured["heads"].items() if name != "L0H1")
    assert measured["paths"]["direct"] < 0.1
    assert all(abs(measured["paths"][f"through later {c}"] - 1) < 0.05 for c in "qkv")
    parts = measured["components"]
    assert parts["MLP 1"] > parts["MLP 0"] > max(parts["attention 0"], parts["attention 1"])
    assert max(abs(h["logit_attribution"]) for h in measured["heads"].values()) < 0.05 * measured["clean_logit_diff"]


def test_roles_follow_the_threshold() -> None:
    scores = dict.fromkeys(HEAD_SCORES, 0.0) | {"previous_token": ROLE_MIN, "country_adjacent": 0.99, "first_token": 0.6}
    assert roles_of(scores) == ["previous-token", "first-token"]  # country_adjacent names no role
    assert roles_of(scores, threshold=0.7) == []


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
