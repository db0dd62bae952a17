import hashlib
import math
import random
import statistics

import pytest

from hf_softbin.corpus import (
    entropy_rate,
    generate_corpus,
    make_language,
    perplexity_floor,
    write_default_corpus,
)


def test_same_seed_same_text_other_seed_other_text():
    assert generate_corpus(30, seed=0) == generate_corpus(30, seed=0)
    assert generate_corpus(30, seed=0) != generate_corpus(30, seed=1)
    # Frozen: the default corpus must not change across platforms, Python versions or refactors.
    text = "\n".join(generate_corpus(200, seed=0))
    assert hashlib.sha256(text.encode()).hexdigest() == "0a7f7494c1536d242f517351cd226abd0896d5905c5757ad0483cd37d701923a"


def test_exact_entropy_rate_matches_a_sample_under_the_true_model():
    rng = random.Random(7)
    language = make_language(rng)
    lines = language.sample(3000, rng)
    nll = [-language.log_prob(line) for line in lines]
    tokens = [len(line.split()) + 1 for line in lines]  # words and the line end
    estimate = sum(nll) / sum(tokens)
    # standard error of a ratio of sums over independent sentences
    residuals = [a - estimate * b for a, b in zip(nll, tokens)]
    stderr = statistics.pstdev(residuals) * math.sqrt(len(lines)) / sum(tokens)
    assert stderr < 0.02
    assert language.entropy_rate() == pytest.approx(estimate, abs=4 * stderr)


def test_floor_is_well_below_unigram_and_public_helpers_agree():
    language = make_language(random.Random(0))
    assert entropy_rate(0) == language.entropy_rate()
    assert perplexity_floor(0) == pytest.approx(math.exp(language.entropy_rate()))
    assert 30 < perplexity_floor(0) < 150
    assert math.exp(language.unigram_entropy()) > 5 * perplexity_floor(0)


def test_unigram_entropy_matches_sample_frequencies():
    rng = random.Random(3)
    language = make_language(rng)
    counts = {}
    for line in language.sample(6000, rng):
        for token in [*line.split(), "<eos>"]:
            counts[token] = counts.get(token, 0) + 1
    total = sum(counts.values())
    plug_in = -sum(n / total * math.log(n / total) for n in counts.values())
    assert language.unigram_entropy() == pytest.approx(plug_in, abs=0.03)


def test_a_fitted_class_bigram_model_stays_above_the_true_model():
    """A class-bigram model cannot know the sentence length distribution; it must lose to the true chain."""
    rng = random.Random(0)
    language = make_language(rng)
    train, held_out = language.sample(10000, rng), language.sample(2000, rng)
    word_class, word_prob = {}, {}
    for c, ids in enumerate(language.class_words):
        for w, p in zip(ids, language.emission[c]):
            word_class[language.words[w]], word_prob[language.words[w]] = c, p
    end = len(language.class_words)  # the line end, also the state before a sentence
    counts = [[0.01] * (end + 1) for _ in range(end + 1)]
    for line in train:
        classes = [end, *(word_class[w] for w in line.split()), end]
        for prev, nxt in zip(classes, classes[1:]):
            counts[prev][nxt] += 1
    bigram = [[n / sum(row) for n in row] for row in counts]
    bigram_nll = true_nll = 0.0
    num_tokens = 0
    for line in held_out:
        words = line.split()
        classes = [end, *(word_class[w] for w in words), end]
        bigram_nll -= sum(math.log(bigram[p][n]) for p, n in zip(classes, classes[1:]))
        bigram_nll -= sum(math.log(word_prob[w]) for w in words)  # the true emissions: only the classes are fitted
        true_nll -= language.log_prob(line)
        num_tokens += len(words) + 1
    assert true_nll / num_tokens + 0.005 < bigram_nll / num_tokens < language.unigram_entropy()


def test_default_corpus_files_sizes_and_determinism(tmp_path):
    paths = write_default_corpus(tmp_path / "corpus")
    assert sorted(paths) == ["test", "train", "valid"]
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    lines = {split: path.read_text().splitlines() for split, path in paths.items()}
    tokens = {split: sum(len(line.split()) + 1 for line in split_lines) for split, split_lines in lines.items()}
    assert 50_000 < tokens["train"] < 70_000
    assert 5_000 < tokens["valid"] < 7_500 and 5_000 < tokens["test"] < 7_500
    types = {w for line in lines["train"] for w in line.split()}
    assert 1_500 < len(types) < 3_000
    assert all(w.isalpha() and w.islower() for w in types)
    assert 8 <= statistics.median(len(line.split()) for line in lines["train"]) <= 25
    assert lines["train"] + lines["valid"] + lines["test"] == generate_corpus(sum(map(len, lines.values())), seed=0)
    first = {split: path.read_bytes() for split, path in paths.items()}
    write_default_corpus(tmp_path / "corpus")
    assert {split: path.read_bytes() for split, path in paths.items()} == first
