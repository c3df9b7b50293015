"""Drawing the hidden checks' inputs from pools, for `mechgrade bundle --hidden-seed S`.

Each pool suits the checks that use it: countries and capitals the graded model knows (its top
prediction is the capital, the words stay one token in every template), indirect-object sentences
it completes (exercise 05's prompt; exercise 08's template and names, every prompt of its batch),
token-batch lengths and seeds, SAE text seeds. Inputs the model does not handle are
skipped, so the reference solutions pass every hidden check on what is drawn.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from grader.judging.held_out import HeldOut
from grader.judging.prompts import IOI_NAMES as SHOWN_IOI_NAMES
from grader.judging.prompts import IOI_TEMPLATE as SHOWN_IOI_TEMPLATE
from grader.toy.corpus import CAPITALS, IOI_TEMPLATES, NAMES, OBJECTS, PLACES

# Templates a drawn input is written in: the ones the fixed inputs use.
PROMPT_TEMPLATE = "The capital of {country} is"  # the patching pair's: clean and corrupted must be as long
# The single held-out prompt's: none is the public prompt's template, and their lengths differ from
# it, so an answer copied from a public check (a pattern, norms per position) cannot fit.
SINGLE_PROMPT_TEMPLATES = ("In {country}, the capital is", "{country}'s capital is",
                           "Everyone knows that the capital of {country} is", "The capital city of {country} is")
ADJACENT_TEMPLATE, APART_TEMPLATE = "The capital city of {country} is", "{country}'s capital is"
IOI_TEMPLATE = "When {a} and {b} went to the {place}, {b} gave a {obj} to"
# What the exercise texts and the public checks already show: never drawn.
SHOWN_COUNTRIES = {"France", "Italy", "Japan", "Germany", "Egypt", "Peru"}
SHOWN_NAMES = {"Mary", "John"}
# Exercise 06's token batches and repeated_tokens case: (seq_len, batch) pools; the public ones
# are 20 long (the text's example), so a held-out length differs from it.
SEQ_LENS, BATCHES = (11, 12, 13, 14, 15, 16, 17), (3, 4, 5)
IOI_NAMES_DRAWN = 12  # exercise 08: how many names its held-out batch draws its triples from
SAE_DOCS = 30  # documents of exercise 07's held-out top-token text
SAE_SEED_RANGE = (1000, 99_999)  # away from the SAE's training (0-ish) and judging (102) seeds
TRIES = 200


def _single(model: Any, text: str) -> bool:
    return len(model.to_tokens(text, prepend_bos=False)[0]) == 1


def _has_word(model: Any, prompt: str, word: str) -> bool:
    return word in [t.strip() for t in model.to_str_tokens(prompt)]


def _top_token(model: Any, prompt: str) -> str:
    import torch

    with torch.no_grad():
        logits = model(model.to_tokens(prompt))
    return model.to_string(int(logits[0, -1].argmax()))


def _knows(model: Any, country: str) -> bool:
    """The model completes the country's capital, and every prompt built on it keeps it one token."""
    capital = " " + CAPITALS[country]
    prompts = [t.format(country=country) for t in (PROMPT_TEMPLATE, ADJACENT_TEMPLATE, APART_TEMPLATE,
                                                      *SINGLE_PROMPT_TEMPLATES)]
    return (_single(model, " " + country) and _single(model, capital)
            and all(_has_word(model, p, country) for p in prompts)
            and _top_token(model, prompts[0]) == capital)


def _ioi_works(model: Any, a: str, b: str, prompt: str) -> bool:
    import torch

    if not (_single(model, " " + a) and _single(model, " " + b)):
        return False
    with torch.no_grad():
        logits = model(model.to_tokens(prompt))[0, -1]
    return bool(logits[model.to_single_token(" " + a)] > logits[model.to_single_token(" " + b)])


def _ioi_template(rng: random.Random) -> str:
    """Exercise 08's kind of template ({io} once, {s} twice, ending before the answer), made from a
    sentence the practice model was trained on, either name first, never the text's own."""
    while True:
        sentence = rng.choice(IOI_TEMPLATES).removesuffix(" {io}.")
        first, second = ("{io}", "{s}") if rng.random() < 0.5 else ("{s}", "{io}")
        template = sentence.format(a=first, b=second, s="{s}", place=rng.choice(PLACES), obj=rng.choice(OBJECTS))
        if template != SHOWN_IOI_TEMPLATE:
            return template


def _ioi_batch_works(model: Any, inputs: HeldOut) -> bool:
    """Every prompt of exercise 08's held-out batch has one-token names and the indirect object
    beats the subject, so its metric has a clean run to be 1 at."""
    import torch

    triples = inputs.ioi_triples()
    if not all(_single(model, " " + name) for name in inputs.ioi_names):
        return False
    tokens = model.to_tokens([inputs.ioi_template.format(io=io, s=s) for io, s, _ in triples])
    with torch.no_grad():
        last = model(tokens)[:, -1]
    io = torch.tensor([model.to_single_token(" " + io) for io, _, _ in triples], device=last.device)
    s = torch.tensor([model.to_single_token(" " + s) for _, s, _ in triples], device=last.device)
    return bool((last.gather(1, io[:, None]) > last.gather(1, s[:, None])).all())


def draw(seed: str, model: Any) -> HeldOut:
    """Held-out inputs drawn from the pools with `seed`, kept only where `model` handles them (the
    capital is its top prediction, the indirect object beats the subject, the words stay one token),
    so the reference solutions pass every hidden check on them."""
    rng = random.Random(f"mechgrade held-out inputs\0{seed}")
    countries = [c for c in sorted(CAPITALS) if c not in SHOWN_COUNTRIES]
    rng.shuffle(countries)
    known = []
    for country in countries:
        if _knows(model, country):
            known.append(country)
        if len(known) == 2:
            break
    if len(known) < 2:
        raise ValueError(f"the model knows fewer than two capitals of the pool ({len(countries)} tried)")
    word, other = known  # the corrupted country is the one the prompt asks about, as in DEFAULT
    names = [n for n in NAMES if n not in SHOWN_NAMES]
    for _ in range(TRIES):
        a, b = rng.sample(names, 2)
        ioi = IOI_TEMPLATE.format(a=a, b=b, place=rng.choice(PLACES), obj=rng.choice(OBJECTS))
        if _ioi_works(model, a, b, ioi):
            break
    else:
        raise ValueError(f"the model completed none of {TRIES} drawn indirect-object sentences")
    drawn = HeldOut(
        prompt=rng.choice(SINGLE_PROMPT_TEMPLATES).format(country=word), word=word,
        adjacent=ADJACENT_TEMPLATE.format(country=word), apart=APART_TEMPLATE.format(country=word),
        clean=PROMPT_TEMPLATE.format(country=other), corrupted=PROMPT_TEMPLATE.format(country=word),
        answers=(" " + CAPITALS[other], " " + CAPITALS[word]),
        ioi_prompt=ioi, ioi_answers=(" " + a, " " + b),
        tokens=(rng.choice(SEQ_LENS), rng.choice(BATCHES), rng.randint(1000, 99_999)),
        repeated=(rng.choice(SEQ_LENS), rng.choice(BATCHES), rng.randint(1000, 99_999)),
        sae_text_seed=rng.randint(*SAE_SEED_RANGE),
        ioi_template="", ioi_names=(), ioi_seed=0,
    )
    # Exercise 08's, drawn last so that a seed still draws the other exercises' inputs it drew before.
    unshown = [n for n in NAMES if n not in SHOWN_IOI_NAMES]
    for _ in range(TRIES):
        candidate = replace(drawn, ioi_template=_ioi_template(rng), ioi_names=tuple(rng.sample(unshown, IOI_NAMES_DRAWN)),
                            ioi_seed=rng.randint(1000, 99_999))
        if _ioi_batch_works(model, candidate):
            return candidate
    raise ValueError(f"the model completed none of {TRIES} drawn batches of exercise 08's held-out prompts")
