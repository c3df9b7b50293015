"""The students' notebooks: built from the exercise folders (``build``), and graded from a cell
with ``check("03")`` (``check``).

May import: ``grader.grading``, ``grader.reports``, ``grader.student`` and ``grader.models``.
"""
