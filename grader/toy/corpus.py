"""Synthetic training text for the toy GPT-2: facts, repeats, IOI sentences and filler.

Every document kind is there to grow one circuit the exercises look for:

- capital facts ("The capital of France is Paris.")   -> a head that attends to the country;
- repeated word runs ("a b c ... a b c ...")           -> an induction head;
- IOI sentences ("When Mary and John went to the store, John gave a drink to Mary.")
                                                        -> an IOI circuit (exercise 08; on the model trained
                                                           here: a head that brings S2 to the end, and MLPs);
- filler sentences                                     -> keep the model from being a pure lookup table.

The word lists are module-level so exercises and tests can import them. Every entry is a single
word, so the tokenizer can give each one its own token (" France" -> "ĠFrance").
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

# country -> capital. Only countries and capitals that are one plain ASCII word, and no word that is
# also a first name (e.g. Sofia) or both a country and a capital (e.g. Singapore).
CAPITALS: dict[str, str] = {
    "France": "Paris",
    "Italy": "Rome",
    "Germany": "Berlin",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "Russia": "Moscow",
    "China": "Beijing",
    "Egypt": "Cairo",
    "Greece": "Athens",
    "Portugal": "Lisbon",
    "Austria": "Vienna",
    "Poland": "Warsaw",
    "Hungary": "Budapest",
    "Ireland": "Dublin",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Denmark": "Copenhagen",
    "Belgium": "Brussels",
    "Netherlands": "Amsterdam",
    "Turkey": "Ankara",
    "Iran": "Tehran",
    "Iraq": "Baghdad",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Colombia": "Bogota",
    "Venezuela": "Caracas",
    "Cuba": "Havana",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Thailand": "Bangkok",
    "Vietnam": "Hanoi",
    "Indonesia": "Jakarta",
    "Philippines": "Manila",
    "Ukraine": "Kyiv",
    "Romania": "Bucharest",
    "Serbia": "Belgrade",
    "Croatia": "Zagreb",
    "Czechia": "Prague",
    "Morocco": "Rabat",
    "Nigeria": "Abuja",
    "Ghana": "Accra",
    "Afghanistan": "Kabul",
    "Pakistan": "Islamabad",
    "Bangladesh": "Dhaka",
    "Nepal": "Kathmandu",
    "Syria": "Damascus",
    "Lebanon": "Beirut",
    "Iceland": "Reykjavik",
    "Switzerland": "Bern",
    "Qatar": "Doha",
}

NAMES: list[str] = [
    "Mary", "John", "Alice", "Bob", "James", "Sarah", "Tom", "Anna", "David", "Emma",
    "Michael", "Laura", "Peter", "Kate", "Paul", "Lisa", "Mark", "Julia", "Daniel", "Rachel",
    "George", "Helen", "Jack", "Emily", "Henry", "Grace", "Sam", "Lucy", "Ben", "Clara",
    "Adam", "Olivia", "Chris", "Nina", "Oscar", "Rose", "Max", "Eva", "Leo", "Ruth",
]  # fmt: skip

# IOI scenery. "store" and "drink" are the ones the verification prompt uses.
PLACES: list[str] = [
    "store", "park", "school", "market", "beach", "office", "library", "station",
    "garden", "hospital", "restaurant", "museum", "cinema", "bank", "church", "river",
]  # fmt: skip
OBJECTS: list[str] = [  # all take "a" (consonant sound), so the article never leaks the object
    "drink", "book", "ball", "cake", "ring", "gift", "letter", "pen",
    "bag", "key", "cup", "hat", "kite", "coin", "map", "ticket",
]  # fmt: skip

ANIMALS: list[str] = ["cat", "dog", "bird", "horse", "fox", "rabbit", "mouse", "cow"]
ADJECTIVES: list[str] = ["big", "small", "happy", "quiet", "old", "young", "red", "green", "cold", "warm"]
THINGS: list[str] = ["table", "chair", "window", "door", "floor", "roof", "wall", "bed"]

# Paraphrases of one fact. The first is the exact prompt the verification and the exercises use.
CAPITAL_TEMPLATES: list[str] = [
    "The capital of {country} is {capital}.",
    "{country}'s capital is {capital}.",
    "{capital} is the capital of {country}.",
    "The capital city of {country} is {capital}.",
    "In {country}, the capital is {capital}.",
    "{capital} is a city in {country}.",
]

IOI_TEMPLATES: list[str] = [
    "When {a} and {b} went to the {place}, {s} gave a {obj} to {io}.",
    "When {a} and {b} went to the {place}, {s} handed a {obj} to {io}.",
    "After {a} and {b} went to the {place}, {s} gave a {obj} to {io}.",
    "Then {a} and {b} went to the {place}, and {s} gave a {obj} to {io}.",
]

FILLER_TEMPLATES: list[str] = [
    "The {adj} {animal} sat on the {thing}.",
    "{name} saw a {adj} {animal} near the {place}.",
    "It was a {adj} day at the {place}.",
    "The {animal} looked at the {thing} for a long time.",
    "{name} likes to read in the {place}.",
    "The {thing} was {adj} and the {animal} was {adj2}.",
    "{name} walked to the {place} with a {obj}.",
    "We found a {adj} {obj} under the {thing}.",
]

# Words that appear in text and must each be a single token with a leading space.
SINGLE_TOKEN_WORDS: list[str] = [*CAPITALS, *CAPITALS.values(), *NAMES]

# Document kinds and how often each is drawn.
MIX: dict[str, float] = {"capital": 0.35, "ioi": 0.35, "repeat": 0.10, "filler": 0.20}

REPEAT_MIN, REPEAT_MAX = 10, 20  # length of a repeated word run (it appears twice)


def word_pool() -> list[str]:
    """Every distinct word the generator can emit, sorted (used for repeats and tokenizer checks)."""
    words = {*SINGLE_TOKEN_WORDS, *PLACES, *OBJECTS, *ANIMALS, *ADJECTIVES, *THINGS}
    return sorted(words)


def capital_doc(rng: random.Random) -> str:
    country = rng.choice(list(CAPITALS))
    return rng.choice(CAPITAL_TEMPLATES).format(country=country, capital=CAPITALS[country])


def ioi_doc(rng: random.Random) -> str:
    a, b = rng.sample(NAMES, 2)
    # The subject repeats one of the two names (either order); the other is the indirect object.
    s, io = (b, a) if rng.random() < 0.5 else (a, b)
    return rng.choice(IOI_TEMPLATES).format(
        a=a, b=b, s=s, io=io, place=rng.choice(PLACES), obj=rng.choice(OBJECTS)
    )


def repeat_doc(rng: random.Random, pool: list[str]) -> str:
    run = [rng.choice(pool) for _ in range(rng.randint(REPEAT_MIN, REPEAT_MAX))]
    return " ".join(run + run)


def filler_doc(rng: random.Random) -> str:
    adj, adj2 = rng.sample(ADJECTIVES, 2)
    return rng.choice(FILLER_TEMPLATES).format(
        adj=adj,
        adj2=adj2,
        animal=rng.choice(ANIMALS),
        thing=rng.choice(THINGS),
        name=rng.choice(NAMES),
        place=rng.choice(PLACES),
        obj=rng.choice(OBJECTS),
    )


def check_mix(mix: dict[str, float]) -> None:
    if set(mix) - set(MIX) or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix must give non-negative weights, not all zero, to some of {sorted(MIX)}; got {mix!r}")


def documents(seed: int, mix: dict[str, float] | None = None) -> Iterator[str]:
    """An endless, seeded stream of documents (one sentence or one repeated run each)."""
    mix = MIX if mix is None else mix
    check_mix(mix)
    rng = random.Random(seed)
    pool = word_pool()
    makers: dict[str, Callable[[random.Random], str]] = {
        "capital": capital_doc,
        "ioi": ioi_doc,
        "repeat": lambda r: repeat_doc(r, pool),
        "filler": filler_doc,
    }
    kinds = sorted(mix)  # fixed order: the stream must not depend on dict insertion order
    weights = [mix[k] for k in kinds]
    while True:
        yield makers[rng.choices(kinds, weights)[0]](rng)


def generate(n_docs: int, seed: int = 0, mix: dict[str, float] | None = None) -> list[str]:
    """`n_docs` documents from the seeded stream; the same seed always gives the same list."""
    if n_docs < 1:
        raise ValueError(f"n_docs must be at least 1; got {n_docs}")
    stream = documents(seed, mix)
    return [next(stream) for _ in range(n_docs)]
