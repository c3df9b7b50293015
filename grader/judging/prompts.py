"""The inputs the graded checks run student code on.

The checks use the prompts the exercise text shows *and* prompts it never shows, so an answer
hard-coded for France cannot pass. All of them are single-token countries and capitals in both
GPT-2's tokenizer and the toy model's.
"""

CLEAN_PROMPT = "The capital of France is"
CORRUPTED_PROMPT = "The capital of Italy is"
CLEAN_ANSWERS = (" Paris", " Rome")  # (correct, incorrect) for the clean/corrupted pair
# Exercise 03's content_heads: in CLEAN_PROMPT " France" is the token right before the last one, so a
# head that always looks one token back attends to it; here it is four tokens back.
APART_PROMPT = "In France, the capital is"
# Exercise 08's public checks: the template its text shows, with names drawn from these (the text
# lists them). Every name is one token in both tokenizers and a name of the practice model's
# training sentences (grader/toy/corpus.py); the hidden checks use other names and templates.
IOI_TEMPLATE = "When {io} and {s} went to the store, {s} gave a drink to"
IOI_NAMES = ("Mary", "John", "Alice", "Bob", "Ben", "Clara", "Adam", "Olivia", "Chris", "Nina", "Oscar", "Rose", "Max",
             "Eva", "Leo", "Ruth")
# The held-out inputs of the hidden checks live in grader/judging/held_out.py (instructor-only).
