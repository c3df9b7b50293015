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
from grader.judging.prompts import APART_PROMPT, CLEAN_PROMPT
from grader.judging.prompts import IOI_NAMES as SHOWN_IOI_NAMES
from grader.judging.prompts import IOI_TEMPLATE as SHOWN_IOI_TEMPLATE
from grader.toy.corpus import CAPITALS, IOI_TEMPLATES, NAMES, OBJECTS, PLACES

# Templates a drawn input is written in: the ones the fixed inputs use.
PROMPT_TEMPLATE = "The capital of {country} is"  # the public pair's: a country the model knows completes it
# Exercise 04's patching pair (clean and corrupted as long): templates in which the country is neither
# where the public pair has it counted from the start (4) nor from the end (-2), so that the public
# patching map, copied, does not fit, even shifted to the pair's length; on a model this small the map
# is little more than the country's column in the first layer and the last position's after it.
PAIR_TEMPLATES = ("In {country}, the capital is", "{country}'s capital is")
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
# Exercise 03's set-valued hidden checks (heads_attending_to, content_heads) take their query position
# and thresholds from these pools, kept only where the right answer is a set that an answer doing
# no work, or one copied from the public case (France), gets wrong.
ATTEND_THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
CONTENT_THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)
PUBLIC_WORD, PUBLIC_QUERY = "France", -1  # the public checks' word and query position
# No weight this close to a threshold, so that which side a head is on holds for the values the
# check judges by (computed from these inputs right after the draw, its margin 1e-4) and for the
# public ones a copy would come from (computed on another machine: they differ by ~1e-6). Small, so
# that a model with many heads (GPT-2 small: 144) still leaves thresholds clear of every weight.
CLEAR = 0.005


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


def pair_templates(model: Any, clean: str, corrupted: str) -> list[str]:
    """The PAIR_TEMPLATES in which the model completes both countries' capitals."""
    return [t for t in PAIR_TEMPLATES
            if all(_top_token(model, t.format(country=c)) == " " + CAPITALS[c] for c in (clean, corrupted))]


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


Head = tuple[int, int]


def _weights_to(model: Any, prompt: str, word: str, query: int) -> dict[Head, float]:
    """Every head's attention weight from position `query` to `word` in `prompt`."""
    import torch

    with torch.no_grad():
        _, cache = model.run_with_cache(prompt)
    key = [t.strip() for t in model.to_str_tokens(prompt)].index(word)
    return {(layer, head): float(cache["pattern", layer][0, head, query, key])
            for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)}


def _above(weights: dict[Head, float], threshold: float) -> set[Head] | None:
    """The heads above `threshold`, or None when a weight is too close to it to say on every device."""
    if any(abs(w - threshold) < CLEAR for w in weights.values()):
        return None
    return {head for head, w in weights.items() if w > threshold}


def attend_options(model: Any, prompt: str, word: str) -> list[tuple[int, float]]:
    """(query, threshold) pairs for exercise 03's hidden heads_attending_to check on `prompt`: a query
    at or after `word`, never the last position (the public one), where some head is above the
    threshold and some below it (an empty answer is wrong, and so is every head), and where none
    of the heads above it is one that the public case finds at that threshold (a set copied from
    France's stored answer holds no head it should)."""
    length = len(model.to_str_tokens(prompt))
    start = [t.strip() for t in model.to_str_tokens(prompt)].index(word)
    public = _weights_to(model, CLEAN_PROMPT, PUBLIC_WORD, PUBLIC_QUERY)
    options = []
    for query in range(start - length, -1):
        weights = _weights_to(model, prompt, word, query)
        for threshold in ATTEND_THRESHOLDS:
            above, copied = _above(weights, threshold), _above(public, threshold)
            if above and copied is not None and len(above) < len(weights) and not above & copied:
                options.append((query, threshold))
    return options


def _content_split(model: Any, adjacent: str, apart: str, word: str, threshold: float) -> tuple[set[Head], set[Head]] | None:
    """content_heads' right answer (content, position), or None when a weight is too close to the threshold."""
    near = _above(_weights_to(model, adjacent, word, -1), threshold)
    far = _above(_weights_to(model, apart, word, -1), threshold)
    if near is None or far is None:
        return None
    return near & far, near - far


def content_options(model: Any, adjacent: str, apart: str, word: str) -> list[float]:
    """Thresholds for exercise 03's hidden content_heads check: some head belongs in one of the
    lists (an answer of two empty lists is wrong), and each list differs from the public case's
    at that threshold (lists copied from France's stored answer are both wrong)."""
    options = []
    for threshold in CONTENT_THRESHOLDS:
        held = _content_split(model, adjacent, apart, word, threshold)
        public = _content_split(model, CLEAN_PROMPT, APART_PROMPT, PUBLIC_WORD, threshold)
        if held and public and (held[0] or held[1]) and held[0] != public[0] and held[1] != public[1]:
            options.append(threshold)
    return options


def _suits_exercise_03(model: Any, country: str) -> bool:
    """Every single-prompt template has a query and threshold for heads_attending_to, and content_heads a threshold."""
    return (all(attend_options(model, t.format(country=country), country) for t in SINGLE_PROMPT_TEMPLATES)
            and bool(content_options(model, ADJACENT_TEMPLATE.format(country=country),
                                     APART_TEMPLATE.format(country=country), country)))


def draw(seed: str, model: Any) -> HeldOut:
    """Held-out inputs drawn from the pools with `seed`, kept only where `model` handles them (the
    capital is its top prediction, the indirect object beats the subject, the words stay one token),
    so the reference solutions pass every hidden check on them, and where exercise 03's set-valued
    checks have an answer that neither an empty set nor one copied from the public case matches."""
    rng = random.Random(f"mechgrade held-out inputs\0{seed}")
    countries = [c for c in sorted(CAPITALS) if c not in SHOWN_COUNTRIES]
    rng.shuffle(countries)
    known = []
    for country in countries:
        # The prompt's country (the first) must also suit exercise 03's set-valued checks in every template,
        # and the second make a patching pair with it in some pair template.
        if _knows(model, country) and (pair_templates(model, country, known[0]) if known
                                       else _suits_exercise_03(model, country)):
            known.append(country)
        if len(known) == 2:
            break
    if len(known) < 2:
        raise ValueError(f"the model knows fewer than two capitals of the pool, or none that suits exercise 03's "
                         f"set-valued checks or makes a patching pair ({len(countries)} tried)")
    word, other = known  # the corrupted country is the one the prompt asks about, as in DEFAULT
    # Exercise 04's pair template, from a stream of its own so the rest of the draw is as before.
    pair = random.Random(f"mechgrade held-out inputs, exercise 04\0{seed}").choice(pair_templates(model, other, word))
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
        clean=pair.format(country=other), corrupted=pair.format(country=word),
        answers=(" " + CAPITALS[other], " " + CAPITALS[word]),
        ioi_prompt=ioi, ioi_answers=(" " + a, " " + b),
        tokens=(rng.choice(SEQ_LENS), rng.choice(BATCHES), rng.randint(1000, 99_999)),
        repeated=(rng.choice(SEQ_LENS), rng.choice(BATCHES), rng.randint(1000, 99_999)),
        sae_text_seed=rng.randint(*SAE_SEED_RANGE),
        ioi_template="", ioi_names=(), ioi_seed=0, attend_query=-1, attend_threshold=0.0, content_threshold=0.0,
    )
    # Exercise 03's query position and thresholds, from a stream of their own so the rest of the draw is as before.
    own = random.Random(f"mechgrade held-out inputs, exercise 03\0{seed}")
    query, threshold = own.choice(attend_options(model, drawn.prompt, word))
    drawn = replace(drawn, attend_query=query, attend_threshold=threshold,
                    content_threshold=own.choice(content_options(model, drawn.adjacent, drawn.apart, word)))
    # Exercise 08's, drawn last so that a seed still draws the other exercises' inputs it drew before.
    unshown = [n for n in NAMES if n not in SHOWN_IOI_NAMES]
    for _ in range(TRIES):
        candidate = replace(drawn, ioi_template=_ioi_template(rng), ioi_names=tuple(rng.sample(unshown, IOI_NAMES_DRAWN)),
                            ioi_seed=rng.randint(1000, 99_999))
        if _ioi_batch_works(model, candidate):
            return candidate
    raise ValueError(f"the model completed none of {TRIES} drawn batches of exercise 08's held-out prompts")


def unsuited(inputs: HeldOut, model: Any, exercises: list[str]) -> list[str]:
    """Why `inputs` do not suit `model` for the hidden checks of `exercises`, as `draw` requires of
    what it draws (empty: they suit). The fixed inputs were chosen on the practice model; a bundle
    for another model must check them there before it ships their values."""
    reasons = []
    chosen = set(exercises)
    if chosen & {"01", "02", "03", "04", "05"}:
        for prompt, answer in ((inputs.clean, inputs.answers[0]), (inputs.corrupted, inputs.answers[1])):
            if not (_single(model, answer) and _top_token(model, prompt) == answer):
                reasons.append(f"its top prediction for {prompt!r} is not {answer!r}")
    if "03" in chosen:
        if (inputs.attend_query, inputs.attend_threshold) not in attend_options(model, inputs.prompt, inputs.word):
            reasons.append(f"exercise 03: at query {inputs.attend_query} and threshold {inputs.attend_threshold} of "
                           f"{inputs.prompt!r}, heads_attending_to's answer is empty, every head, or one a copied answer matches")
        if inputs.content_threshold not in content_options(model, inputs.adjacent, inputs.apart, inputs.word):
            reasons.append(f"exercise 03: at threshold {inputs.content_threshold}, content_heads' answer is empty "
                           "or one a copied answer matches")
    if "05" in chosen and not _ioi_works(model, inputs.ioi_answers[0].strip(), inputs.ioi_answers[1].strip(),
                                         inputs.ioi_prompt):
        reasons.append(f"exercise 05: it does not rank {inputs.ioi_answers[0]!r} over {inputs.ioi_answers[1]!r} "
                       f"after {inputs.ioi_prompt!r}")
    if "08" in chosen and not _ioi_batch_works(model, inputs):
        reasons.append(f"exercise 08: it does not rank the indirect object over the subject on every prompt of "
                       f"{inputs.ioi_template!r}")
    return reasons
