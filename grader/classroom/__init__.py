"""``mechgrade grade-all`` and ``merge-results``: a class's submissions found and staged, graded
by long-lived job processes, and gathered into a gradebook and a class page.

May import: ``grader.reports``, ``grader.student.notebook_cells`` (the one notebook reader: plain
JSON, no torch), and for the job process ``grader.sandbox`` and ``grader.grading``; the queue
process (``grade_all``) imports no torch and never runs student code.
"""
