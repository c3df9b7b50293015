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

# Held out: never shown in the exercise text or the stubs.
HELD_OUT_PROMPT = "The capital of Spain is"
HELD_OUT_WORD = "Spain"
HELD_OUT_CLEAN, HELD_OUT_CORRUPTED = "The capital of Germany is", "The capital of Spain is"
HELD_OUT_ANSWERS = (" Berlin", " Madrid")
HELD_OUT_ADJACENT, HELD_OUT_APART = "The capital city of Spain is", "Spain's capital is"  # content_heads
# Exercise 05 (the residual stream): an indirect-object sentence of the kind the toy model was trained
# on (its names are single tokens in both tokenizers). The answer is the indirect object, Anna.
HELD_OUT_IOI_PROMPT = "When Anna and Tom went to the park, Tom gave a ball to"
HELD_OUT_IOI_ANSWERS = (" Anna", " Tom")
