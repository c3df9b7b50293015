"""mechgrade: self-grading mechanistic-interpretability exercises (GPT-2 and TransformerLens)."""

__version__ = "0.1.0"
