"""A Gradescope autograder bundle: the project, plus the two scripts Gradescope runs.

Gradescope unpacks the zip into /autograder/source, runs ``setup.sh`` once when the image is
built, then ``run_autograder`` for every submission, which must leave
/autograder/results/results.json. Ours grades /autograder/submission through ``mechgrade grade``,
whose child process and incremental results.json survive a submission that crashes or hangs.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INCLUDED = ["pyproject.toml", "README.md", "grader", "exercises", "solutions", "fixtures"]
SKIPPED_PARTS = {"__pycache__", ".pytest_cache"}

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
python3 -m venv /autograder/venv
. /autograder/venv/bin/activate
pip install -q --upgrade pip
pip install -q torch --index-url https://download.pytorch.org/whl/cpu   # the CPU build: small, enough
pip install -q -e /autograder/source
{prefetch}
"""

PREFETCH_GPT2 = (
    "# Download GPT-2 small now, so grading never waits on the network.\n"
    "python -c \"from huggingface_hub import snapshot_download; snapshot_download('gpt2')\""
)

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT lets the package's tests run it elsewhere.
set -u
root="${{AUTOGRADER_ROOT:-/autograder}}"
python="${{PYTHON:-$root/venv/bin/python}}"
mkdir -p "$root/results"
cd "$root/source"
"$python" -m grader grade --model {model} --submission "$root/submission" \\
    --gradescope-json "$root/results/results.json" --report-html "$root/results/report.html"
# The grade is in results.json, written even when the submission crashed or hung; a non-zero exit
# here would make Gradescope discard it and report an autograder failure instead.
exit 0
"""


def build_bundle(out: Path, model: str = "gpt2-small", root: Path = REPO_ROOT) -> Path:
    """Write the autograder zip for grading on `model`; return its path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prefetch = PREFETCH_GPT2 if model == "gpt2-small" else "# The practice model ships in fixtures/models."
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        _add_script(bundle, "setup.sh", SETUP_SH.format(prefetch=prefetch))
        _add_script(bundle, "run_autograder", RUN_AUTOGRADER.format(model=model))
        for name in INCLUDED:
            for path in sorted(_files(root / name)):
                bundle.write(path, path.relative_to(root).as_posix())
    return out


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() and not SKIPPED_PARTS & set(p.parts)]


def _add_script(bundle: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFREG | 0o755) << 16  # executable once unpacked
    bundle.writestr(info, text)
