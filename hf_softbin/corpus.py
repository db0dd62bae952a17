"""The embedded default corpus: synthetic text from a seeded language whose entropy rate is known exactly.

The language is a class-based Markov chain over invented, pronounceable words. Each word belongs to one class
(like a part of speech); a sentence first draws its length L from a fixed distribution, then its classes from a
start distribution and a sparse class-to-class transition matrix, and each word from its class with Zipf-like
probabilities. Because a word reveals its class and the length is independent of the classes, the probability
of the next token given all the past is known in closed form, so the entropy rate (the best per-token
cross-entropy any model can reach, counting each line end as a token) is computed exactly, not estimated.

All draws come from one seeded `random.Random` (no numpy sampling, no `hash()`), whose output is stable across
platforms and Python versions, so a seed always gives the same text.
"""

import math
import os
import random
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic

NUM_CLOSED_CLASSES = 14  # small classes of frequent short words, like function words
NUM_OPEN_CLASSES = 30  # large classes of longer words, like nouns and verbs
MIN_LENGTH, MAX_LENGTH = 3, 60  # sentence length range, in words
DEFAULT_SPLIT_LINES = {"train": 3600, "valid": 360, "test": 360}  # about 60k / 6k / 6k tokens

_ONSETS = ["", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "dr", "gr", "kl", "pl", "st", "tr", "sk", "sh", "ch", "th"]  # fmt: skip
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "ea"]
_CODAS = ["", "", "", "", "n", "r", "s", "l", "m", "k", "t"]


@dataclass(frozen=True)
class ClassMarkovLanguage:
    """A sampled language: words, their classes, and every probability of the generating process.

    `class_words[c]` lists the word ids of class c with their emission probabilities `emission[c]`; `start[c]` is
    the probability that a sentence starts with class c, `transition[c][d]` that class d follows class c, and
    `length_probs[i]` that a sentence has `MIN_LENGTH + i` words.
    """

    words: list[str]
    class_words: list[list[int]]
    emission: list[list[float]]
    start: list[float]
    transition: list[list[float]]
    length_probs: list[float]

    def sample(self, num_lines: int, rng: random.Random) -> list[str]:
        """Draw `num_lines` sentences, each a line of space-separated words."""
        length_cum = list(accumulate(self.length_probs))
        start_cum = list(accumulate(self.start))
        transition_cum = [list(accumulate(row)) for row in self.transition]
        emission_cum = [list(accumulate(row)) for row in self.emission]
        lines = []
        for _ in range(num_lines):
            length = MIN_LENGTH + _draw(length_cum, rng)
            cls = _draw(start_cum, rng)
            words = []
            for position in range(length):
                if position > 0:
                    cls = _draw(transition_cum[cls], rng)
                words.append(self.words[self.class_words[cls][_draw(emission_cum[cls], rng)]])
            lines.append(" ".join(words))
        return lines

    def log_prob(self, line: str) -> float:
        """Natural log-probability of a line, its end included (raises KeyError for a word of another language)."""
        word_index = self._word_index
        words = line.split()
        logp = math.log(self.length_probs[len(words) - MIN_LENGTH])
        previous = None
        for word in words:
            cls, rank = word_index[word]
            logp += math.log(self.start[cls] if previous is None else self.transition[previous][cls])
            logp += math.log(self.emission[cls][rank])
            previous = cls
        return logp

    def entropy_rate(self) -> float:
        """Exact entropy rate in nats per token, a token being a word or a line end.

        Sentences are independent, so the rate is the expected entropy of a sentence over its expected number of
        tokens (L words + 1 end). The sentence entropy is H(L) plus, for each position p that the sentence
        reaches (probability P(L >= p)), the entropy of the word there given the previous word's class.
        """
        emission_entropy = np.array([_entropy(row) for row in self.emission])
        # entropy of the next word given the current class: which class follows, then which word of it
        next_word_entropy = np.array([_entropy(row) for row in self.transition]) + self._transition @ emission_entropy
        reach = self._reach()
        class_probs = self._class_probs()
        sentence_entropy = _entropy(self.length_probs) + _entropy(self.start) + class_probs[0] @ emission_entropy
        sentence_entropy += reach[1:] @ (class_probs[:-1] @ next_word_entropy)
        return float(sentence_entropy / (reach.sum() + 1.0))

    def unigram_entropy(self) -> float:
        """Exact entropy in nats of the token frequencies (words and line end): what a unigram model reaches."""
        reach = self._reach()
        class_counts = reach @ self._class_probs()  # expected occurrences of each class in one sentence
        token_counts = [1.0]  # the line end
        for count, probs in zip(class_counts, self.emission):
            token_counts.extend(count * p for p in probs)
        return _entropy(np.array(token_counts) / (reach.sum() + 1.0))

    def _reach(self) -> np.ndarray:
        """P(L >= p) for positions p = 1..MAX_LENGTH; their sum is the mean length."""
        length_probs = np.zeros(MAX_LENGTH + 1)
        length_probs[MIN_LENGTH:] = self.length_probs
        return 1.0 - np.cumsum(length_probs)[:-1]

    def _class_probs(self) -> np.ndarray:
        """Row p - 1: the class distribution of the word at position p, for p = 1..MAX_LENGTH."""
        rows = [np.array(self.start)]
        for _ in range(MAX_LENGTH - 1):
            rows.append(rows[-1] @ self._transition)
        return np.stack(rows)

    @cached_property
    def _transition(self) -> np.ndarray:
        return np.array(self.transition)

    @cached_property
    def _word_index(self) -> dict[str, tuple[int, int]]:
        return {self.words[w]: (c, rank) for c, ids in enumerate(self.class_words) for rank, w in enumerate(ids)}


def make_language(rng: random.Random) -> ClassMarkovLanguage:
    """Draw a language: about 2,400 words in 44 classes."""
    num_classes = NUM_CLOSED_CLASSES + NUM_OPEN_CLASSES
    sizes = [rng.randint(3, 12) for _ in range(NUM_CLOSED_CLASSES)]
    sizes += [rng.randint(30, 120) for _ in range(NUM_OPEN_CLASSES)]
    words, seen, class_words, emission = [], set(), [], []
    for c, size in enumerate(sizes):
        ids = []
        while len(ids) < size:
            num_syllables = 1 if c < NUM_CLOSED_CLASSES else rng.choice((2, 2, 3))
            word = "".join(_syllable(rng) for _ in range(num_syllables))
            if word not in seen:
                seen.add(word)
                ids.append(len(words))
                words.append(word)
        class_words.append(ids)
        exponent = 0.8 if c < NUM_CLOSED_CLASSES else 1.1
        emission.append(_normalize([1.0 / (rank + 1) ** exponent for rank in range(size)]))

    # A random cycle through all classes keeps every class reachable; 1-4 more successors vary the grammar.
    cycle = list(range(num_classes))
    rng.shuffle(cycle)
    transition = []
    for c in range(num_classes):
        successors = {cycle[(cycle.index(c) + 1) % num_classes]}
        num_successors = rng.randint(2, 5)
        while len(successors) < num_successors:
            successors.add(rng.randrange(num_classes))
        row = [0.0] * num_classes
        for d in sorted(successors):
            row[d] = 0.05 + rng.random()
        transition.append(_normalize(row))
    start = [0.0] * num_classes
    for c in rng.sample(range(num_classes), 5):
        start[c] = 0.05 + rng.random()

    # Lengths follow a gamma-like shape L^3 exp(-L/4): mode 12, mean about 16, mostly 8-25.
    length_probs = _normalize([n**3 * math.exp(-n / 4.0) for n in range(MIN_LENGTH, MAX_LENGTH + 1)])
    return ClassMarkovLanguage(words, class_words, emission, _normalize(start), transition, length_probs)


def generate_corpus(num_lines: int, seed: int = 0) -> list[str]:
    """`num_lines` sentences of the language of `seed` (no `<eos>` in the text: the tokenizer adds it)."""
    if num_lines < 0:
        raise ValueError(f"num_lines must be >= 0, got {num_lines}")
    rng = random.Random(seed)
    return make_language(rng).sample(num_lines, rng)


def entropy_rate(seed: int = 0) -> float:
    """Exact entropy rate of the language of `seed`, in nats per token (line ends count as tokens)."""
    return make_language(random.Random(seed)).entropy_rate()


def perplexity_floor(seed: int = 0) -> float:
    """The lowest stream perplexity any model can expect on text of the language of `seed`."""
    return math.exp(entropy_rate(seed))


def write_default_corpus(directory: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
    """Write train.txt, valid.txt and test.txt (about 60k / 6k / 6k tokens) and return their paths.

    The three splits are consecutive lines of one sample, so they come from the same language. Each file is
    written to a temporary name and renamed, so a reader never sees a partial file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = generate_corpus(sum(DEFAULT_SPLIT_LINES.values()), seed)
    paths, start = {}, 0
    for split, count in DEFAULT_SPLIT_LINES.items():
        paths[split] = directory / f"{split}.txt"
        write_text_atomic(paths[split], "".join(line + "\n" for line in lines[start : start + count]))
        start += count
    return paths


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _draw(cumulative: list[float], rng: random.Random) -> int:
    return min(bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def _normalize(weights: list[float]) -> list[float]:
    total = sum(weights)
    return [w / total for w in weights]


def _entropy(probs) -> float:
    probs = np.asarray(probs, dtype=float)
    probs = probs[probs > 0]
    return float(-(probs * np.log(probs)).sum())
