"""`mechgrade bundle --exercise NN` (one assignment's autograder) and `--hidden-seed S` (hidden inputs
drawn per term, their expected values made from the solutions when the bundle is built).

Built on exercise 03 only, the cheapest to grade: two seeded bundles (a refresh of exercise 03's
checks each) and an isolated grading run through the bundle's own run_autograder. Answers copied
from a release, graded by a seeded bundle of every exercise: tests/test_copied_answers.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from grader.course.bundle import COURSE_FILE, HELD_OUT_FILE, BundleError, build_bundle
from grader.course.release import MANIFEST, build_release
from grader.judging.held_out import HeldOut, seed_digest
from grader.judging.prompts import IOI_NAMES, IOI_TEMPLATE

REPO = Path(__file__).resolve().parent.parent
MODEL = "toy-gpt2"
SEEDS = ("spring term", "autumn term")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository whose HEAD is this project's working tree (tracked files only)."""
    repo = tmp_path_factory.mktemp("project")
    for name in git(REPO, "ls-files", "-z").split("\0"):
        if name and (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "the project")
    return repo


@pytest.fixture(scope="module")
def seeded(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("seeded")
    return {seed: build_bundle(out / f"{n}.zip", MODEL, project, check_drift=False, exercises=["03"], hidden_seed=seed)
            for n, seed in enumerate(SEEDS)}


def _read(bundle: Path, name: str) -> str:
    return zipfile.ZipFile(bundle).read(name).decode()


def test_an_assignment_bundle_holds_its_exercises_only(project: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path / "a.zip", MODEL, project, check_drift=False, exercises=["3"])
    names = set(zipfile.ZipFile(bundle).namelist())
    assert {n.split("/")[1] for n in names if n.startswith("exercises/") and n.count("/") > 1} == {"03"}
    assert {n for n in names if n.startswith(f"fixtures/{MODEL}/")} == {f"fixtures/{MODEL}/03.json",
                                                                         f"fixtures/{MODEL}/03.hidden.json"}
    assert "@pytest.mark.hidden" in _read(bundle, "exercises/03/test_03_attention.py")  # the bundle keeps them


def test_release_and_bundle_of_one_assignment_agree_on_names_points_and_public_checks(project: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path / "a.zip", MODEL, project, check_drift=False, exercises=["03"])
    release = build_release(tmp_path / "course", exercises=["03"], root=project, check_drift=False)
    course = json.loads(_read(bundle, COURSE_FILE))
    manifest = json.loads((release / MANIFEST).read_text())
    assert course["exercises"] == manifest["exercises"] == ["03"]
    assert course["checks"] == manifest["checks"]
    assert course["checks"]["03"]["hidden_checks"] > 0 and course["checks"]["03"]["public"]


def test_an_unknown_exercise_is_refused_before_anything_is_written(project: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError) as raised:
        build_bundle(tmp_path / "a.zip", MODEL, project, check_drift=False, exercises=["03", "99"])
    assert "99" in str(raised.value) and "\n" not in str(raised.value)
    assert not list(tmp_path.iterdir())


def test_the_fixed_held_out_inputs_suit_the_practice_model_for_every_exercise() -> None:
    from grader.course.hidden_inputs import unsuited
    from grader.judging.held_out import DEFAULT
    from grader.models import get_spec, load_model

    model = load_model(get_spec(MODEL), "cpu")
    assert unsuited(DEFAULT, model, [f"{n:02d}" for n in range(1, 9)]) == []
    # A model that completes no capital, ranks no indirect object first and attends nowhere above 0.99:
    # what the check says for inputs that do not suit it.
    unsure = replace(DEFAULT, answers=(" Paris", " Rome"), attend_threshold=0.99, content_threshold=0.99,
                     ioi_answers=DEFAULT.ioi_answers[::-1],
                     ioi_template="When {io} and {s} went to the school, {io} handed a ring to")
    said = " | ".join(unsuited(unsure, model, ["03", "05", "08"]))
    for part in ("is not ' Paris'", "exercise 03: at query -5 and threshold 0.99", "exercise 03: at threshold 0.99",
                 "exercise 05:", "exercise 08:"):
        assert part in said, said


def test_a_bundle_on_fixed_inputs_that_do_not_suit_its_model_is_refused_and_names_the_seed(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a model the fixed inputs were not chosen on (GPT-2 small: no fixtures here to build for)."""
    import grader.course.bundle
    import grader.judging.held_out

    monkeypatch.setattr(grader.judging.held_out, "DEFAULT",
                        replace(grader.judging.held_out.DEFAULT, attend_threshold=0.99))
    monkeypatch.setattr(grader.course.bundle, "_check_drift", lambda *args: None)  # the fixtures agree: not this test's
    with pytest.raises(BundleError) as raised:
        build_bundle(tmp_path / "a.zip", MODEL, project, check_drift=True, exercises=["03"])
    said = str(raised.value)
    assert "do not suit toy-gpt2" in said and "--hidden-seed" in said and "\n" not in said
    assert not list(tmp_path.iterdir())


def test_two_seeds_draw_different_hidden_inputs_and_the_bundle_keeps_only_the_digest(seeded: dict[str, Path]) -> None:
    drawn = [json.loads(_read(seeded[s], HELD_OUT_FILE)) for s in SEEDS]
    assert drawn[0] != drawn[1]
    assert drawn[0]["prompt"] != drawn[1]["prompt"] or drawn[0]["tokens"] != drawn[1]["tokens"]
    for seed in SEEDS:
        course = json.loads(_read(seeded[seed], COURSE_FILE))
        assert course["hidden_seed_sha256"] == seed_digest(seed)
        everything = b"".join(zipfile.ZipFile(seeded[seed]).read(n) for n in zipfile.ZipFile(seeded[seed]).namelist())
        assert seed.encode() not in everything
        assert f"--held-out {HELD_OUT_FILE}" in _read(seeded[seed], "run_autograder")
        values = json.loads(_read(seeded[seed], f"fixtures/{MODEL}/03.hidden.json"))
        assert values["checks"] and values["provenance"]["held_out_sha256"]


def test_a_seeded_bundle_of_exercise_08_draws_a_template_and_names_the_text_never_shows_and_makes_their_values(
        project: Path, tmp_path: Path) -> None:
    """Exercise 08's hidden checks take a template and names from the seed's draw: sentences of the
    practice model's training kind, not the text's template or names, every prompt of the batch
    answered right by the model; the bundle ships their expected values, made from the solutions."""
    import torch

    from grader.models import get_spec, load_model

    bundle = build_bundle(tmp_path / "08.zip", MODEL, project, check_drift=False, exercises=["08"], hidden_seed=SEEDS[0])
    drawn = HeldOut.from_json(_read(bundle, HELD_OUT_FILE))
    template = drawn.ioi_template
    assert template != IOI_TEMPLATE and template.count("{io}") == 1 and template.count("{s}") == 2
    assert drawn.ioi_names and not set(drawn.ioi_names) & set(IOI_NAMES)
    model = load_model(get_spec(MODEL), "cpu")
    triples = drawn.ioi_triples()
    with torch.no_grad():
        last = model(model.to_tokens([template.format(io=io, s=s) for io, s, _ in triples]))[:, -1]
    ranked_first = [last[row, model.to_single_token(" " + io)] > last[row, model.to_single_token(" " + s)]
                    for row, (io, s, _) in enumerate(triples)]
    assert all(ranked_first)
    values = json.loads(_read(bundle, f"fixtures/{MODEL}/08.hidden.json"))
    assert values["provenance"]["held_out_sha256"] == drawn.digest()
    fixed = json.loads((REPO / "fixtures" / MODEL / "08.hidden.json").read_text())  # the default inputs' values
    assert set(values["checks"]) == set(fixed["checks"])
    assert values["checks"]["patch_heads[held-out]"] != fixed["checks"]["patch_heads[held-out]"]


def _run_autograder(bundle: Path, submission: Path, tmp_path: Path) -> dict:
    root = tmp_path / "autograder"
    zipfile.ZipFile(bundle).extractall(root / "source")
    shutil.copytree(submission, root / "submission")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTEST_ADDOPTS": f"--basetemp={tmp_path / 'basetemp'}"}
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert (root / "results" / "results.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def test_a_seeded_bundle_grades_the_solutions_at_the_full_total_hidden_checks_included(
        seeded: dict[str, Path], tmp_path: Path) -> None:
    results = _run_autograder(seeded[SEEDS[0]], REPO / "solutions", tmp_path)
    hidden = [t for t in results["tests"] if t["visibility"] == "after_published"]
    assert len(hidden) == json.loads(_read(seeded[SEEDS[0]], COURSE_FILE))["checks"]["03"]["hidden_checks"]
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > sum(t["max_score"] for t in hidden) > 0
