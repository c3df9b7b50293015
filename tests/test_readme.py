"""The README's quickstart runs as written (on the practice model, since GPT-2 cannot be fetched)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_quickstart_runs_and_finds_the_heads_attending_to_france(capsys, monkeypatch) -> None:
    matplotlib.use("Agg")  # plt.show() must not block
    monkeypatch.chdir(README.parent)
    match = re.search(r"## Quickstart with TransformerLens 4.*?```python\n(.*?)```", README.read_text(), re.S)
    assert match, "the README has no quickstart code block"
    code = match.group(1).replace('boot_transformers("gpt2"', 'boot_transformers("fixtures/models/toy-gpt2"')
    exec(compile(code, "README quickstart", "exec"), {})
    printed = capsys.readouterr().out
    assert "' Paris'" in printed
    assert re.search(r"L\dH\d: \d+% of the last position's attention on ' France'", printed)


def test_every_file_the_quick_tier_leaves_out_exists() -> None:
    """A renamed end-to-end test file must not slip into the quick tier unnoticed (tests/conftest.py)."""
    from conftest import END_TO_END

    missing = sorted(name for name in END_TO_END if not (Path(__file__).parent / name).is_file())
    assert not missing, f"END_TO_END names files that are not in tests/: {missing}"
