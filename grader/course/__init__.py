"""What an instructor ships: the Gradescope autograder bundle.

May import: ``grader.judging`` (fixtures), ``grader.models`` and this folder.
"""
