"""No answers through what the course ships: a `train_sae` that returns the shipped reference SAE
(fixtures/models/toy-gpt2-sae, which students need for the top-token checks) instead of training
earns nothing, since the training check trains and judges on activations moved by a transform
drawn per grading run. One grading run: exercise 07's training check alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RETURNS_THE_SHIPPED_SAE = '''

def train_sae(activations, d_sae, steps, lr, l1_coeff, seed, batch_size=256):
    """Loads the course's own SAE instead of training one."""
    from safetensors.torch import load_file

    shipped = load_file("{weights}")
    sae = SparseAutoencoder(activations.shape[1], d_sae)
    sae.load_state_dict({{k: v for k, v in shipped.items() if k in sae.state_dict()}})
    return sae
'''


def test_a_train_sae_that_returns_the_shipped_sae_scores_0_on_the_training_check(tmp_path: Path) -> None:
    weights = REPO / "fixtures" / "models" / "toy-gpt2-sae" / "sae.safetensors"
    submission = tmp_path / "submission" / "07"
    submission.mkdir(parents=True)
    source = (REPO / "solutions" / "07" / "sae.py").read_text()
    (submission / "sae.py").write_text(source + RETURNS_THE_SHIPPED_SAE.format(weights=weights))  # the last def wins
    results = tmp_path / "results.json"
    command = [sys.executable, "-m", "pytest", str(REPO / "exercises" / "07"), "-p", "no:cacheprovider", "-q",
               "-k", "train_sae", "--model", "toy-gpt2", "--submission", str(submission.parent),
               "--gradescope-json", str(results), "--report-html", ""]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=900)
    tests = json.loads(results.read_text())["tests"]
    training = [t for t in tests if "train_sae" in t["name"] and t["max_score"] > 0]
    assert len(training) == 1, done.stdout[-2000:]
    assert training[0]["score"] == 0, training[0]["output"]
    assert "variance explained" in training[0]["output"]  # judged on its outcome, not refused for its type
