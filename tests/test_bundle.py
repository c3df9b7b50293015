"""The Gradescope autograder bundle: what it holds, and that its run_autograder grades a submission."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.bundle import build_bundle

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle") / "autograder.zip", model="toy-gpt2")


def test_the_bundle_holds_the_scripts_and_the_project(bundle: Path) -> None:
    names = set(zipfile.ZipFile(bundle).namelist())
    for needed in ("setup.sh", "run_autograder", "pyproject.toml", "grader/plugin.py",
                   "grader/templates/report.html.j2", "exercises/03/test_03_attention.py",
                   "solutions/04/patching.py", "fixtures/toy-gpt2/03.json",
                   "fixtures/models/toy-gpt2/model.safetensors"):
        assert needed in names
    assert not [n for n in names if "__pycache__" in n]


def test_the_scripts_are_executable_once_unpacked(bundle: Path) -> None:
    archive = zipfile.ZipFile(bundle)
    for name in ("setup.sh", "run_autograder"):
        mode = archive.getinfo(name).external_attr >> 16
        assert mode & stat.S_IXUSR, name


def test_setup_prefetches_gpt2_only_when_grading_on_it(tmp_path: Path) -> None:
    gpt2 = zipfile.ZipFile(build_bundle(tmp_path / "a.zip", model="gpt2-small")).read("setup.sh").decode()
    toy = zipfile.ZipFile(build_bundle(tmp_path / "b.zip", model="toy-gpt2")).read("setup.sh").decode()
    assert "snapshot_download('gpt2')" in gpt2
    assert "snapshot_download" not in toy


def test_run_autograder_grades_a_submission_into_results_json(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "autograder"
    zipfile.ZipFile(bundle).extractall(root / "source")
    shutil.copytree(REPO / "solutions", root / "submission")  # a submission that deserves full marks
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTEST_ADDOPTS": f"--basetemp={tmp_path / 'basetemp'}"}
    completed = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > 0
    assert (root / "results" / "report.html").exists()
