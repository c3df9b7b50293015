"""The student's side: everything that runs where student code runs (a worker process with
``--isolate``, else the grading process itself).

Import and run the graded code (modules and notebook cells), the course-model runtime that
notebook cells call (``course_model``), the executor that answers the grader's requests, the wire
format it speaks, the model guard and figures as PNG.

May import: the standard library, torch and friends, ``grader.models``, and this folder. Never
``grader.judging`` (expected values, fixtures, points) or anything above it: a worker holds
nothing a student could read the answers from (tests/test_layout.py enforces this).
"""
