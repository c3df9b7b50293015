"""A GPT-2-style tokenizer (byte-level BPE, leading-space tokens) trained on the toy corpus.

The vocabulary is capped high enough that BPE merges every corpus word into one token, and the
word lists are added to the training text so that no country, capital or name is left split.
`check_single_tokens` then proves it: " France" must encode as the one token "ĠFrance".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2TokenizerFast

from grader.toy.corpus import SINGLE_TOKEN_WORDS, word_pool

BOS = "<|endoftext|>"  # GPT-2's only special token: BOS, EOS and UNK at once, id 0
MIN_FREQUENCY = 2  # a pair must occur twice to merge; every seeded word occurs at least twice


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> GPT2TokenizerFast:
    """Train byte-level BPE on `texts` plus the word lists, and wrap it as a GPT-2 tokenizer."""
    if vocab_size < 257:
        raise ValueError(f"vocab_size must leave room past the 256 bytes and BOS; got {vocab_size}")
    # Seed: each word twice with a leading space, so it merges to one token even if the corpus
    # sample happened to miss it. Sentence-initial forms come from the corpus itself.
    seed_line = " " + " ".join(word_pool())
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        [*texts, seed_line, seed_line],
        vocab_size=vocab_size,
        min_frequency=MIN_FREQUENCY,
        special_tokens=[BOS],
        show_progress=False,
    )
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=BOS, eos_token=BOS, unk_token=BOS)
    check_single_tokens(tok)
    return tok


def check_single_tokens(tok: GPT2TokenizerFast, words: Sequence[str] = SINGLE_TOKEN_WORDS) -> None:
    """Raise if any of `words`, with a leading space, is not exactly one token."""
    if tok.convert_tokens_to_ids(BOS) != 0:
        raise ValueError(f"{BOS} must be token 0 (GPT-2 convention); it is {tok.convert_tokens_to_ids(BOS)}")
    split = {w: tok.tokenize(" " + w) for w in words}
    bad = {w: pieces for w, pieces in split.items() if len(pieces) != 1}
    if bad:
        shown = ", ".join(f"{w!r}->{p}" for w, p in list(bad.items())[:10])
        raise ValueError(
            f"{len(bad)} word(s) are not single tokens (raise vocab_size or add them to the corpus): {shown}"
        )


def load_tokenizer(folder: Path) -> GPT2TokenizerFast:
    return GPT2TokenizerFast.from_pretrained(str(folder))
