"""Synthetic n-best lists made by corrupting held-out text: for trying rescoring where no recognizer is at hand.

Their errors are random edits and their acoustic scores invented, unlike a recognizer's (scripts/asr_nbest makes real
ones); they are what the tests and `scripts/make_corrupted_nbest.py` use.
"""

import random
from collections.abc import Sequence

from .nbest_io import Hypothesis, Utterance, normalize_words


def _corrupt(words: list[str], vocabulary: Sequence[str], rng: random.Random) -> None:
    """Apply one random edit in place, among those that apply: substitute, delete, insert, swap neighbours."""
    ops = ["insert"]
    if words:
        ops.append("delete")
        if len(vocabulary) > 1:
            ops.append("substitute")
    if any(a != b for a, b in zip(words, words[1:])):
        ops.append("swap")
    op = rng.choice(ops)
    if op == "insert":
        words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
    elif op == "delete":
        del words[rng.randrange(len(words))]
    elif op == "substitute":
        i = rng.randrange(len(words))
        words[i] = rng.choice([w for w in vocabulary if w != words[i]])
    else:
        i = rng.choice([i for i in range(len(words) - 1) if words[i] != words[i + 1]])
        words[i], words[i + 1] = words[i + 1], words[i]


def make_corrupted_nbest(
    reference_lines: Sequence[str],
    n: int,
    rng_seed: int,
    *,
    vocabulary: Sequence[str] | None = None,
    max_edits: int = 3,
    edit_cost: float = 1.0,
    noise_std: float = 1.0,
    include_reference: bool = True,
) -> list[Utterance]:
    """Synthetic n-best lists of up to `n` distinct hypotheses per reference line, deterministic for `rng_seed`.

    Stands in for recognizer output: each non-reference hypothesis is the reference after 1..max_edits random edits
    with words from `vocabulary` (default: the words of the references). am_score = -num_edits * edit_cost + N(0,
    noise_std^2), noisy enough that the first pass often prefers a wrong hypothesis, so a good LM has room to help.
    Hypotheses are shuffled (the reference has no fixed position); blank lines are skipped; ids are `utt000000`, ...
    Short sentences may yield fewer than `n` distinct hypotheses.
    """
    if n < 1 or max_edits < 1:
        raise ValueError(f"n and max_edits must be >= 1, got n={n}, max_edits={max_edits}")
    references = [normalize_words(line) for line in reference_lines]
    if vocabulary is None:
        vocabulary = sorted({w for ref in references for w in ref.split()})
    vocabulary = list(vocabulary)
    if not vocabulary:
        raise ValueError("the vocabulary for corruptions is empty")
    rng = random.Random(rng_seed)
    utterances = []
    for index, ref in enumerate(references):
        if not ref:
            continue
        texts = {ref: 0} if include_reference else {}  # text -> number of edits
        attempts = 0
        while len(texts) < n and attempts < 20 * n:
            attempts += 1
            words = ref.split()
            num_edits = rng.randint(1, max_edits)
            for _ in range(num_edits):
                _corrupt(words, vocabulary, rng)
            text = " ".join(words)
            if text != ref and text not in texts:
                texts[text] = num_edits
        hyps = [Hypothesis(t, -e * edit_cost + rng.gauss(0.0, noise_std)) for t, e in texts.items()]
        rng.shuffle(hyps)
        utterances.append(Utterance(f"utt{index:06d}", hyps, ref))
    return utterances
