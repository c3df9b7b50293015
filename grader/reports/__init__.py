"""What a grading run shows: the terminal table, the HTML report and Gradescope's ``results.json``.
Each reads the plain-data results (``grader.judging.results``, pictures already drawn); none
grades. (The class page is the classroom's: ``grader.classroom.page``.)

May import: ``grader.judging`` and this folder.
"""
