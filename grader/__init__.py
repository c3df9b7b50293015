"""mechgrade: self-grading mechanistic-interpretability exercises (GPT-2 and TransformerLens)."""

from pathlib import Path

__version__ = "0.1.0"

# Where a grading run writes its HTML report unless told otherwise (plugin and CLI both use it).
DEFAULT_REPORT = Path("reports") / "report.html"
