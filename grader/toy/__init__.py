"""The project's own practice model, toy-gpt2: a 2-layer GPT-2 trained offline on synthetic text.

corpus.py (word lists and the seeded text generator) -> tokenizer.py (byte-level BPE) ->
train.py (config and deterministic training) -> verify.py (the circuits, measured through
TransformerLens) -> build.py (`mechgrade toy build`: all of it, into fixtures/models/toy-gpt2).
"""
