"""The inputs the graded checks run student code on.

The checks use the prompts the exercise text shows *and* prompts it never shows, so an answer
hard-coded for France cannot pass. All of them are single-token countries and capitals in both
GPT-2's tokenizer and the toy model's.
"""

CLEAN_PROMPT = "The capital of France is"
CORRUPTED_PROMPT = "The capital of Italy is"
CLEAN_ANSWERS = (" Paris", " Rome")  # (correct, incorrect) for the clean/corrupted pair

# Held out: never shown in the exercise text or the stubs.
HELD_OUT_PROMPT = "The capital of Spain is"
HELD_OUT_WORD = "Spain"
HELD_OUT_CLEAN, HELD_OUT_CORRUPTED = "The capital of Germany is", "The capital of Spain is"
HELD_OUT_ANSWERS = (" Berlin", " Madrid")
