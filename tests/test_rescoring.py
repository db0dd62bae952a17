import json
import math
import os
import random
import re
from collections import Counter

import jiwer
import pytest

from hf_softbin import atomic
from hf_softbin.scoring.nbest_io import (
    Hypothesis,
    Utterance,
    format_choices,
    read_kaldi_nbest,
    read_nbest,
    read_nbest_jsonl,
    read_nemo_nbest,
    write_lines,
    write_nbest_jsonl,
)
from hf_softbin.scoring.rescoring import (
    choose,
    first_pass_choice,
    first_pass_wer,
    oracle_wer,
    rescore,
    rescore_from_scores,
    score_hypotheses,
    tune_weights,
)
from hf_softbin.scoring.synthetic_nbest import make_corrupted_nbest

from conftest import toy_sentences

# ------------------------------------------------------------------------------------------------ a toy language and LM

class BigramLM:
    """Add-one bigram LM with <s> and <eos>; counts its calls and the texts it scored."""

    def __init__(self, sentences):
        self.vocab = {w for s in sentences for w in s.split()} | {"<eos>", "<unk>"}
        self.bigrams = Counter()
        self.contexts = Counter()
        for s in sentences:
            tokens = ["<s>"] + s.split() + ["<eos>"]
            for prev, word in zip(tokens, tokens[1:]):
                self.bigrams[prev, word] += 1
                self.contexts[prev] += 1
        self.calls = 0
        self.scored = Counter()

    def logprob(self, text):
        tokens = ["<s>"] + [w if w in self.vocab else "<unk>" for w in text.split()] + ["<eos>"]
        return sum(
            math.log((self.bigrams[prev, word] + 1) / (self.contexts[prev] + len(self.vocab)))
            for prev, word in zip(tokens, tokens[1:])
        )

    def __call__(self, texts):
        self.calls += 1
        self.scored.update(texts)
        return [self.logprob(t) for t in texts]


@pytest.fixture(scope="module")
def train_text():
    return toy_sentences(400, seed=1)


@pytest.fixture(scope="module")
def dev_nbest():
    return make_corrupted_nbest(toy_sentences(60, seed=2), n=8, rng_seed=3)


@pytest.fixture(scope="module")
def test_nbest():
    return make_corrupted_nbest(toy_sentences(60, seed=4), n=8, rng_seed=5)


# ------------------------------------------------------------------------------------------------------- JSON Lines


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


GOOD_LINE = json.dumps({"id": "u0", "hyps": [{"text": "a b", "am_score": -1.0}], "ref": "a b"})


def test_read_nbest_jsonl(tmp_path):
    path = _write(
        tmp_path / "nbest.jsonl",
        GOOD_LINE + "\n\n"
        + json.dumps({"id": 7, "hyps": [{"text": "x", "am_score": 2, "lm_score": -3.5}, {"text": "", "am_score": -1}]})
        + "\n",
    )
    utts = read_nbest_jsonl(path)
    assert [u.id for u in utts] == ["u0", "7"]
    assert utts[0].ref == "a b" and utts[1].ref is None
    assert utts[1].hyps == [Hypothesis("x", 2.0, -3.5), Hypothesis("", -1.0)]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"id": "u1", "hyps": [', "malformed JSON (Expecting value: column 23)"),
        ('{"id": "u1, "hyps": []}', "malformed JSON (Expecting ',' delimiter: column 14)"),
        ('{"id": "u1", "hyps": ["x', "malformed JSON (Unterminated string starting at: column 23)"),
        ('["u1"]', "expected a JSON object"),
        ('{"id": "u1"}', 'missing "hyps"'),
        ('{"hyps": [{"text": "a", "am_score": 1}]}', 'missing "id"'),
        ('{"id": "u1", "hyps": [{"am_score": 1}]}', 'hypothesis 1: missing "text"'),
        ('{"id": "u1", "hyps": [{"text": "a", "am_score": 1}, {"text": "b"}]}', 'hypothesis 2: missing "am_score"'),
        ('{"id": "u1", "hyps": [{"text": "a"}]}', 'missing "am_score"'),
        ('{"id": "u1", "hyps": [{"text": "a", "am_score": "high"}]}', "expected a number"),
        ('{"id": "u1", "hyps": [{"text": "a", "am_score": NaN}]}', "finite"),
        ('{"id": "u1", "hyps": [{"text": "a", "am_score": -Infinity}]}', "finite"),
        ('{"id": "u1", "hyps": [{"text": "a", "am_score": 1, "lm_score": "x"}]}', '"lm_score": expected a number'),
        ('{"id": "u1", "hyps": [{"text": "a", "am_score": 1, "lm_score": Infinity}]}', "finite"),
        ('{"id": "u1", "hyps": []}', "non-empty list"),
        ('{"id": "u0", "hyps": [{"text": "a", "am_score": 1}]}', "duplicate utterance id"),
        ('{"id": "u1", "hyps": [{"text": "a", "am_score": 1}], "ref": 3}', '"ref" must be a string'),
    ],
)
def test_read_nbest_jsonl_errors_name_the_line(tmp_path, bad_line, message):
    path = _write(tmp_path / "nbest.jsonl", GOOD_LINE + "\n" + bad_line + "\n")
    with pytest.raises(ValueError, match="line 2") as err:
        read_nbest_jsonl(path)
    assert message in str(err.value)


def test_read_nbest_jsonl_non_utf8(tmp_path):
    path = tmp_path / "nbest.jsonl"
    path.write_bytes(GOOD_LINE.encode() + b"\n" + GOOD_LINE.replace("u0", "u1").encode() + b"\n"
                     + b'{"id": "u2", "hyps": [{"text": "caf\xe9", "am_score": 1}]}\n')
    with pytest.raises(ValueError, match="line 3: not valid UTF-8"):
        read_nbest_jsonl(path)


def test_nbest_jsonl_round_trip(tmp_path, test_nbest):
    path = tmp_path / "nbest.jsonl"
    write_nbest_jsonl(test_nbest, path)
    assert read_nbest_jsonl(path) == test_nbest


# ------------------------------------------------------------------------------------------------------------- Kaldi


def _kaldi_files(tmp_path, text, scores, refs=None):
    paths = [_write(tmp_path / "text", text), _write(tmp_path / "scores", scores)]
    paths.append(_write(tmp_path / "ref", refs) if refs is not None else None)
    return paths


def test_read_kaldi_nbest(tmp_path):
    text = "spk-1-utt-2-2 b c\nspk-1-utt-2-1 a b c\nu9-1\nu9-10 x\n"
    scores = "u9-10 4\nspk-1-utt-2-1 -1.5\nspk-1-utt-2-2 -2.5\nu9-1 3e0\n"
    refs = "u9 x\nspk-1-utt-2 a b c\n"
    utts = read_kaldi_nbest(*_kaldi_files(tmp_path, text, scores, refs))
    assert [u.id for u in utts] == ["spk-1-utt-2", "u9"]
    assert utts[0].hyps == [Hypothesis("a b c", -1.5), Hypothesis("b c", -2.5)]  # ordered by N
    assert utts[1].hyps == [Hypothesis("", 3.0), Hypothesis("x", 4.0)]  # empty hypothesis allowed; 1 < 10
    assert [u.ref for u in utts] == ["a b c", "x"]

    costs = read_kaldi_nbest(tmp_path / "text", tmp_path / "scores", scores_are_costs=True)
    assert [h.am_score for h in costs[0].hyps] == [1.5, 2.5]
    assert costs[0].ref is None


@pytest.mark.parametrize(
    "text, scores, refs, where, message",
    [
        ("u1-1 a\nu1 b\n", "u1-1 0\n", None, "text: line 2", "UTT-ID-N"),
        ("u1-1 a\nu1-1 b\n", "u1-1 0\n", None, "text: line 2", "duplicate key"),
        ("u1-1 a\nu1-2 b\n", "u1-1 0\nu1-2 high\n", None, "scores: line 2", "expected a number"),
        ("u1-1 a\nu1-2 b\n", "u1-1 0\nu1-2 nan\n", None, "scores: line 2", "finite"),
        ("u1-1 a\nu1-2 b\n", "u1-1 0\nu1-2 -inf\n", None, "scores: line 2", "finite"),
        ("u1-1 a\nu1-2 b\n", "u1-1 0\nu1-2 1 2\n", None, "scores: line 2", "expected 'UTT-ID-N score'"),
        ("u1-1 a\nu1-2 b\n", "u1-1 0\n", None, "text: line 2", "has no score"),
        ("u1-1 a\n", "u1-1 0\nu2-1 0\n", None, "scores: line 2", "has no hypothesis"),
        ("u1-1 a\nu2-1 b\n", "u1-1 0\nu2-1 0\n", "u1 a\n", "text: line 2", "has no reference"),
        ("u1-1 a\n", "u1-1 0\n", "u1 a\nu3 c\n", "ref: line 2", "has no hypotheses"),
        ("u1-1 a\n", "u1-1 0\n", "u1 a\nu1 b\n", "ref: line 2", "duplicate reference"),
    ],
)
def test_read_kaldi_nbest_errors_name_the_line(tmp_path, text, scores, refs, where, message):
    with pytest.raises(ValueError, match=where) as err:
        read_kaldi_nbest(*_kaldi_files(tmp_path, text, scores, refs))
    assert message in str(err.value)


@pytest.mark.parametrize("bad_file", ["text", "scores", "ref"])
def test_read_kaldi_nbest_non_utf8(tmp_path, bad_file):
    paths = _kaldi_files(tmp_path, "u1-1 a\nu1-2 b\n", "u1-1 0\nu1-2 0\n", "u1 a\n")
    bad = tmp_path / bad_file
    bad.write_bytes(bad.read_bytes() + b"u1-3 \xff\xfe\n")
    with pytest.raises(ValueError, match=f"{bad_file}: line [23]: not valid UTF-8"):
        read_kaldi_nbest(*paths)


def test_read_nemo_nbest(tmp_path):
    (tmp_path / "beams.tsv").write_text("a b c\t-1.5\nab c\t-2.25\nx  y\t-0.5\nx\t-7\n")
    (tmp_path / "refs.txt").write_text("a b c\nx y\n")
    utts = read_nemo_nbest(tmp_path / "beams.tsv", 2, tmp_path / "refs.txt")
    assert [u.id for u in utts] == ["utt-0", "utt-1"]
    assert utts[0].hyps == [Hypothesis("a b c", -1.5), Hypothesis("ab c", -2.25)]
    assert utts[1].hyps == [Hypothesis("x y", -0.5), Hypothesis("x", -7.0)] and utts[1].ref == "x y"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"audio_filepath": "/data/u7.wav", "text": "a b c"}) + "\n"
                        + json.dumps({"audio_filepath": "/data/u8.wav", "text": "x y"}) + "\n")
    named = read_nbest(str(tmp_path / "beams.tsv"), "nemo", beam_width=2, refs=str(manifest))
    assert [(u.id, u.ref) for u in named] == [("u7", "a b c"), ("u8", "x y")]
    assert first_pass_choice(named) == [0, 0]


@pytest.mark.parametrize(
    "beams, width, refs, message",
    [
        ("a\t-1\nb\t-2\nc\t-3\n", 2, None, "3 lines is not a whole number of utterances of 2"),
        ("a -1\nb\t-2\n", 2, None, "line 1: expected 'hypothesis<TAB>score'"),
        ("a\tlow\nb\t-2\n", 2, None, "line 1: expected a number"),
        ("a\tnan\nb\t-2\n", 2, None, "line 1: score: expected a finite number"),
        ("a\t-1\nb\t-2\n", 2, "r1\nr2\n", "2 references for 1 utterances"),
        ("a\t-1\nb\t-2\n", 2, '{"audio_filepath": "x.wav"}\n', 'needs a "text" string'),
    ],
)
def test_read_nemo_nbest_errors_name_the_problem(tmp_path, beams, width, refs, message):
    (tmp_path / "beams.tsv").write_text(beams)
    if refs is not None:
        (tmp_path / "refs").write_text(refs)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_nemo_nbest(tmp_path / "beams.tsv", width, tmp_path / "refs" if refs is not None else None)


def test_read_nbest_rejects_options_of_other_formats(tmp_path):
    (tmp_path / "beams.tsv").write_text("a\t-1\n")
    with pytest.raises(ValueError, match="the nemo n-best format needs beam_width"):
        read_nbest(str(tmp_path / "beams.tsv"), "nemo")
    with pytest.raises(ValueError, match="scores: not an option of the jsonl n-best format"):
        read_nbest(str(tmp_path / "beams.tsv"), "jsonl", scores="s")
    with pytest.raises(ValueError, match="unknown n-best format"):
        read_nbest(str(tmp_path / "beams.tsv"), "htk")


def test_first_pass_score_and_filler_penalty_from_jsonl(tmp_path):
    record = {"id": "u", "ref": "a b", "hyps": [
        {"text": "a b", "am_score": -10.0, "lm_score": -1.0, "first_pass_score": -30.0, "filler_penalty": -4.0,
         "lm_text": "a  b", "num_words": 2},
        {"text": "a c", "am_score": -9.0, "lm_score": -1.0, "first_pass_score": -20.0}]}
    (tmp_path / "n.jsonl").write_text(json.dumps(record) + "\n")
    utts = read_nbest_jsonl(tmp_path / "n.jsonl")
    assert first_pass_choice(utts) == [1]  # the decoder's own score, not am + lm
    assert choose(utts, [[0.0, 0.0]], 0.0) == [1]  # -10 - 4 (fillers) < -9
    assert utts[0].hyps[0].scored_text == "a  b" and utts[0].hyps[1].scored_text == "a c"
    write_nbest_jsonl(utts, tmp_path / "again.jsonl")
    assert read_nbest_jsonl(tmp_path / "again.jsonl") == utts


# --------------------------------------------------------------------------------------------------------------- WER


def test_the_wer_of_a_choice_is_corpus_level():
    # 1 substitution + 2 deletions over 5 reference words; a per-utterance average would give (1/3 + 1) / 2.
    utterances = [Utterance("u1", [Hypothesis("a x c", 0.0)], "a b c"), Utterance("u2", [Hypothesis("", 0.0)], "d e")]
    assert first_pass_wer(utterances) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="no words"):
        first_pass_wer([Utterance("u", [Hypothesis("a", 0.0)], "")])


def test_oracle_and_first_pass_wer():
    utts = [
        Utterance("u1", [Hypothesis("a x c", -1.0), Hypothesis("a b c", -2.0)], "a b c"),
        Utterance("u2", [Hypothesis("d", -3.0, lm_score=-1.0), Hypothesis("d e f", -1.0, lm_score=-5.0)], "d e"),
    ]
    assert first_pass_choice(utts) == [0, 0]  # u2: -3 + -1 beats -1 + -5
    assert first_pass_wer(utts) == pytest.approx(2 / 5)
    assert oracle_wer(utts) == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="1 of 2 utterances have no reference"):
        oracle_wer([utts[0], Utterance("u3", [Hypothesis("a", 0.0)])])


# ----------------------------------------------------------------------------------------------------------- scoring


def test_score_formula():
    """Each term of the combined score can flip the choice."""
    utts = [Utterance("u", [Hypothesis("a b", -1.0, lm_score=-4.0), Hypothesis("a b c d", -2.0, lm_score=-1.0)])]
    nnlm = [[-1.0, -3.0]]
    assert choose(utts, nnlm, 0.0) == [0]  # acoustic only
    assert choose(utts, nnlm, 0.0, first_pass_weight=1.0) == [1]  # -5 vs -3
    assert choose(utts, nnlm, 1.0, first_pass_weight=1.0) == [0]  # -6 vs -6: tie goes to the first
    assert choose(utts, nnlm, 1.0, first_pass_weight=1.0, word_insertion_penalty=0.1) == [1]  # -5.8 vs -5.6
    result = rescore_from_scores(utts, nnlm, 1.0, first_pass_weight=1.0, word_insertion_penalty=0.1)
    assert result.scores == [pytest.approx(-5.6)]
    assert result.summary.wer_before is None and result.summary.oracle_wer is None


def test_lm_weight_zero_is_the_first_pass(test_nbest):
    rng = random.Random(0)
    random_lm = [[rng.uniform(-50, 0) for _ in u.hyps] for u in test_nbest]
    assert choose(test_nbest, random_lm, 0.0) == first_pass_choice(test_nbest)
    with_first_pass_lm = [
        Utterance(u.id, [Hypothesis(h.text, h.am_score, rng.uniform(-20, 0)) for h in u.hyps], u.ref)
        for u in test_nbest
    ]
    assert choose(with_first_pass_lm, random_lm, 0.0, first_pass_weight=1.0) == first_pass_choice(with_first_pass_lm)
    result = rescore_from_scores(test_nbest, random_lm, 0.0)
    assert result.summary.wer_after == result.summary.wer_before


def test_rescoring_with_a_fitted_lm_lowers_wer(train_text, dev_nbest, test_nbest):
    lm = BigramLM(train_text)
    dev_scores = score_hypotheses(dev_nbest, lm)
    lm_weight, penalty, dev_wer = tune_weights(dev_nbest, dev_scores)
    assert lm_weight > 0
    assert dev_wer < first_pass_wer(dev_nbest)

    result = rescore(test_nbest, lm, lm_weight, word_insertion_penalty=penalty)
    summary = result.summary
    assert summary.num_utterances == len(test_nbest) == 60
    assert summary.oracle_wer == 0.0  # the reference is in every list
    assert summary.wer_before > 0.05  # the noisy first pass is often wrong
    assert summary.oracle_wer <= summary.wer_after < summary.wer_before / 2
    refs = [u.ref for u in test_nbest]
    assert summary.wer_after == pytest.approx(jiwer.wer(refs, [h.text for h in result.chosen_hypotheses()]))


def test_lm_scores_each_unique_hypothesis_once(train_text, dev_nbest):
    lm = BigramLM(train_text)
    utts = dev_nbest + dev_nbest[:5]  # repeated texts across utterances are scored once
    scores = score_hypotheses(utts, lm, batch_size=16)
    unique = {h.text for u in utts for h in u.hyps}
    assert set(lm.scored) == unique and set(lm.scored.values()) == {1}
    assert lm.calls == math.ceil(len(unique) / 16)
    tune_weights(utts, scores)
    for weight in (0.5, 1.0):
        rescore_from_scores(utts, scores, weight)
    assert lm.calls == math.ceil(len(unique) / 16)  # the grid search does not call the LM again
    assert scores[0] == [lm.logprob(h.text) for h in utts[0].hyps]


def test_lm_output_is_checked():
    utts = [Utterance("u", [Hypothesis("a", 0.0), Hypothesis("b", 0.0)])]
    with pytest.raises(ValueError, match="returned 1 scores for 2 texts"):
        score_hypotheses(utts, lambda texts: [0.0])
    with pytest.raises(ValueError, match="finite"):
        score_hypotheses(utts, lambda texts: [0.0, float("-inf")])


def test_tune_weights_ties_are_deterministic():
    # One hypothesis per utterance: every grid point gives the same WER.
    utts = [Utterance("u", [Hypothesis("a b", 0.0)], "a b")]
    assert tune_weights(utts, [[-1.0]], lm_weights=[0.5, 0.2, 1.0], penalties=[1.0, -0.5, 0.0, 0.5]) == (0.2, 0.0, 0.0)
    assert tune_weights(utts, [[-1.0]], lm_weights=[1.0], penalties=[1.0, 0.5, -0.5]) == (1.0, -0.5, 0.0)


# ----------------------------------------------------------------------------------------------------------- writing


def _one_result():
    utts = [
        Utterance("u1", [Hypothesis("a  b", -1.0), Hypothesis("a", -5.0)]),
        Utterance("u2", [Hypothesis("", 0.0), Hypothesis("x", -9.0)]),
    ]
    return rescore_from_scores(utts, [[0.0, 0.0], [0.0, 0.0]], 1.0)


def test_choices_are_written_as_json_lines_or_kaldi_text(tmp_path, capsys):
    result = _one_result()
    lines = format_choices(result.utterances, result.chosen, result.scores)
    write_lines(lines, tmp_path / "out.jsonl")
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()] == [
        {"id": "u1", "text": "a b", "score": -1.0, "index": 0},
        {"id": "u2", "text": "", "score": 0.0, "index": 0},
    ]
    write_lines(format_choices(result.utterances, result.chosen, result.scores, "kaldi"), tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "u1 a b\nu2\n"
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl", "out.txt"]  # no temporary files left
    write_lines(lines, None)
    assert capsys.readouterr().out == (tmp_path / "out.jsonl").read_text(encoding="utf-8")  # stdout gets the same


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = _write(tmp_path / "out.txt", "old\n")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", fail)
    result = _one_result()
    with pytest.raises(OSError, match="disk full"):
        write_lines(format_choices(result.utterances, result.chosen, result.scores, "kaldi"), target)
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]


# ------------------------------------------------------------------------------------------------- synthetic n-best


def test_make_corrupted_nbest():
    refs = toy_sentences(30, seed=9) + ["", "one"]
    utts = make_corrupted_nbest(refs, n=6, rng_seed=11)
    assert utts == make_corrupted_nbest(refs, n=6, rng_seed=11)
    assert utts != make_corrupted_nbest(refs, n=6, rng_seed=12)
    assert len(utts) == 31  # the blank line is skipped
    for utt in utts:
        texts = [h.text for h in utt.hyps]
        assert len(set(texts)) == len(texts) <= 6 and utt.ref in texts
    assert all(len(u.hyps) == 6 for u in utts[:30])
    assert sum(u.hyps[0].text == u.ref for u in utts) < 15  # the reference's position is shuffled
    assert first_pass_wer(utts) > oracle_wer(utts) + 0.05

    without = make_corrupted_nbest(refs, n=6, rng_seed=11, include_reference=False)
    assert all(u.ref not in [h.text for h in u.hyps] for u in without)
    assert oracle_wer(without) > 0
