"""The held-out inputs of the hidden checks: inputs the exercise text never shows.

A hidden check (``@pytest.mark.hidden`` in a check file) takes its inputs from the ``held_out``
fixture, never from a module constant, so that a release (``mechgrade release``) can leave the
check and its inputs out while the check's helpers stay. This module is instructor-only: releases
leave it out.

Where the inputs come from:

- ``DEFAULT``: fixed inputs, graded against ``fixtures/<model>/NN.hidden.json`` (what the package's
  own tests and a plain ``mechgrade bundle`` use);
- ``grader.course.hidden_inputs.draw(seed, model)``: inputs drawn from pools that suit each check (countries and capitals the
  model knows, indirect-object sentences it completes, token-batch seeds and lengths, SAE text
  seeds). ``mechgrade bundle --hidden-seed S`` draws them, computes their expected values from
  the reference solutions, and ships both in the bundle only (``held_out.json``), never the seed:
  a student who reads every file of a release cannot know them, and a new seed makes a new term's
  autograder.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path

FILE_NAME = "held_out.json"  # in a bundle's root, beside grader/

# The fixed held-out inputs (the exercise text never shows them).
HELD_OUT_PROMPT = "The capital of Spain is"
HELD_OUT_WORD = "Spain"
# Exercise 04's patching pair: not the public pair's template, and the country elsewhere in it (from
# the start and from the end), so a patching map copied from the public check cannot fit, even shifted.
HELD_OUT_CLEAN, HELD_OUT_CORRUPTED = "In Germany, the capital is", "In Spain, the capital is"
HELD_OUT_ANSWERS = (" Berlin", " Madrid")
HELD_OUT_ADJACENT, HELD_OUT_APART = "The capital city of Spain is", "Spain's capital is"  # content_heads
# Exercise 05: an indirect-object sentence of the kind the toy model was trained on (its names are
# single tokens in both tokenizers). The answer is the indirect object, Anna.
HELD_OUT_IOI_PROMPT = "When Anna and Tom went to the park, Tom gave a ball to"
HELD_OUT_IOI_ANSWERS = (" Anna", " Tom")
# Exercise 08: another template than the text's (the subject first, another place, verb and
# object) and names the text and the public checks never use; every one is a name of the practice
# model's training sentences (grader/toy/corpus.py), one token in both tokenizers.
HELD_OUT_IOI_TEMPLATE = "When {s} and {io} went to the school, {s} handed a ring to"
HELD_OUT_IOI_NAMES = ("James", "Sarah", "Tom", "Anna", "David", "Emma", "Michael", "Laura", "Peter", "Kate", "Paul",
                      "Lisa", "Mark", "Julia", "Daniel", "Rachel", "George", "Helen", "Jack", "Emily", "Henry", "Grace",
                      "Sam", "Lucy")
IOI_BATCH = 16  # prompts in exercise 08's held-out batch, as many as in its public one

@dataclass(frozen=True)
class HeldOut:
    prompt: str  # a country prompt (exercises 01-03)
    word: str  # the country in it (exercise 03)
    adjacent: str  # the country right before the last token (exercise 03's content_heads)
    apart: str  # the country far from the last token
    clean: str  # a patching pair (exercises 04, 05): clean and corrupted countries, in a template of
    corrupted: str  # grader.course.hidden_inputs.PAIR_TEMPLATES (the country not where the public pair has it)
    answers: tuple[str, str]  # (clean's capital, corrupted's capital), leading spaces
    ioi_prompt: str  # exercise 05's second held-out case
    ioi_answers: tuple[str, str]  # (indirect object, subject)
    tokens: tuple[int, int, int]  # exercise 06: the grader's token batch (seq_len, batch, seed)
    repeated: tuple[int, int, int]  # exercise 06: repeated_tokens' case (seq_len, batch, seed)
    sae_text_seed: int  # exercise 07: the seed of the held-out top-token text
    ioi_template: str  # exercise 08: a template with {io} once and {s} twice
    ioi_names: tuple[str, ...]  # exercise 08: the names its batch draws (io, s, third) from
    ioi_seed: int  # exercise 08: the seed of that draw
    # Exercise 03's set-valued checks: chosen so that some head is above the threshold and some below,
    # and none above it that the public case (France, last position) finds (grader/course/hidden_inputs.py).
    attend_query: int  # heads_attending_to's query position in `prompt`, never the last one
    attend_threshold: float  # and its threshold
    content_threshold: float  # content_heads' threshold on `adjacent` and `apart`

    def ioi_triples(self, count: int = IOI_BATCH) -> list[tuple[str, str, str]]:
        """Exercise 08's held-out batch: `count` (io, s, third) triples of distinct names."""
        rng = random.Random(self.ioi_seed)
        return [tuple(rng.sample(self.ioi_names, 3)) for _ in range(count)]  # type: ignore[misc]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    def digest(self) -> str:
        """Recorded in a hidden fixture file: the inputs its values belong to."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> HeldOut:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ValueError(f"held-out inputs must be a JSON object with the keys {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def read(cls, path: Path) -> HeldOut:
        try:
            return cls.from_json(path.read_text())
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"cannot read the held-out inputs {path}: {exc}") from exc


DEFAULT = HeldOut(
    # Not the public prompt's template: a tensor copied from a public check has the wrong length here.
    prompt="In Spain, the capital is", word=HELD_OUT_WORD, adjacent=HELD_OUT_ADJACENT, apart=HELD_OUT_APART,
    clean=HELD_OUT_CLEAN, corrupted=HELD_OUT_CORRUPTED, answers=HELD_OUT_ANSWERS,
    ioi_prompt=HELD_OUT_IOI_PROMPT, ioi_answers=HELD_OUT_IOI_ANSWERS,
    tokens=(13, 3, 4321), repeated=(13, 3, 7), sae_text_seed=103,
    ioi_template=HELD_OUT_IOI_TEMPLATE, ioi_names=HELD_OUT_IOI_NAMES, ioi_seed=9,
    # From Spain itself (position -5): in the last two positions no head of the practice model is
    # above 0.2, and there an empty list was the right answer.
    attend_query=-5, attend_threshold=0.3, content_threshold=0.3,
)


def seed_digest(seed: str) -> str:
    """What a bundle records of its seed: enough to tell two bundles' seeds apart, not to find it."""
    return hashlib.sha256(f"mechgrade hidden seed\0{seed}".encode()).hexdigest()
