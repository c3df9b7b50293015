"""mechgrade: self-grading mechanistic-interpretability exercises (GPT-2 and TransformerLens)."""

from pathlib import Path

__version__ = "0.1.0"

# Where a grading run writes its HTML report unless told otherwise (plugin and CLI both use it).
DEFAULT_REPORT = Path("reports") / "report.html"


def check(exercise: str | int, show_report: bool = True) -> None:
    """In a notebook: grade exercise `exercise` on the functions the notebook defines (see grader.notebooks.check)."""
    from grader.notebooks.check import check as check_in_kernel

    return check_in_kernel(exercise, show_report)
