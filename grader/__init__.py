"""mechgrade: self-grading mechanistic-interpretability exercises (GPT-2 and TransformerLens).

What a student's notebook uses: ``course_model()`` (the course's model, loaded once per kernel)
and ``check("03")`` (grade the functions the notebook defines). The package's folders and what
each may import are described in their own ``__init__.py``.
"""

from grader import moved
from grader.student.runtime import course_model

moved.install()  # the check-file API's import paths from before the folders (grader/moved.py)

__all__ = ["check", "course_model"]
__version__ = "0.1.0"


def check(exercise: str | int, show_report: bool = True) -> None:
    """In a notebook: grade exercise `exercise` on the functions the notebook defines (see grader.notebooks.check)."""
    # late: pytest and the grading session load only when a notebook grades
    from grader.notebooks.check import check as check_in_kernel

    return check_in_kernel(exercise, show_report)
