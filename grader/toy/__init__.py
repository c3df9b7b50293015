"""The project's own practice model, toy-gpt2: a 2-layer GPT-2 trained offline on synthetic text.

corpus.py (word lists and the seeded text generator) -> tokenizer.py (byte-level BPE) ->
train.py (config and deterministic training) -> verify.py (the circuits, measured through
TransformerLens) -> build.py (`mechgrade toy build`: all of it, into fixtures/models/toy-gpt2); sae.py (the
grader's own SAE math and the reference SAE shipped beside the model).

May import: ``grader.models`` (to load the model as students do), ``grader.judging.prompts`` and
this folder.
"""
