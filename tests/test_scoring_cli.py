import json
import math
import re

import jiwer
import pytest
import torch

from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
from hf_softbin.cli import main
from hf_softbin.scoring import rescoring
from hf_softbin.scoring.nbest_io import write_nbest_jsonl
from hf_softbin.scoring.lm import LN10, LanguageModel
from hf_softbin.scoring.synthetic_nbest import make_corrupted_nbest
from hf_softbin.tokenization import train_word_tokenizer

from conftest import stream_of, toy_sentences, train_a_little

pytestmark = pytest.mark.usefixtures("one_thread")


def train_tiny(tokenizer, sentences, steps=60, seed=0, **overrides):
    """A 1-bit LSTM trained for a few dozen Adam steps on the sentences as one `<eos>`-separated stream."""
    torch.manual_seed(seed)
    values = dict(vocab_size=len(tokenizer), embedding_size=16, hidden_size=16, num_hidden_layers=1, dropout=0.0)
    values.update(overrides)
    model = SoftBinLSTMForCausalLM(SoftBinLSTMConfig(**values))
    return train_a_little(model, stream_of(tokenizer, sentences), steps=steps, lr=0.03, seed=seed)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train = toy_sentences(400, seed=0)
    tokenizer = train_word_tokenizer(train)
    model = train_tiny(tokenizer, train)
    directory = tmp_path_factory.mktemp("trained")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def lm(trained):
    return LanguageModel.from_pretrained(trained, device="cpu")


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------------------------------------- the KenLM-style API


def test_kenlm_api_matches_the_pipeline_in_log10(lm, trained):
    from transformers import pipeline

    scorer = pipeline("text-scoring", model=str(trained))
    sentence = "the cat finds a zebra under"  # "zebra" is not in the vocabulary
    result = scorer(sentence, return_token_scores=True)
    assert lm.score(sentence) == pytest.approx(result["logprob"] / math.log(10), abs=1e-5)
    assert lm.perplexity(sentence) == pytest.approx(result["perplexity"], rel=1e-5)
    assert lm.perplexity(sentence) == pytest.approx(10 ** (-lm.score(sentence) / (len(sentence.split()) + 1)), rel=1e-6)
    full = list(lm.full_scores(sentence))
    assert [oov for _, _, oov in full] == [False, False, False, False, True, False, False]  # 6 words and </s>
    assert [p for p, _, _ in full] == pytest.approx([v / LN10 for _, v in result["token_scores"]], abs=1e-6)
    assert sum(p for p, _, _ in full) == pytest.approx(lm.score(sentence), abs=1e-5)
    assert lm.score(sentence, eos=False) == pytest.approx(sum(p for p, _, _ in full[:-1]), abs=1e-5)
    assert len(list(lm.full_scores(sentence, eos=False))) == 6
    assert lm.lm_logprob([sentence, ""]) == pytest.approx(
        [result["logprob"], scorer("")["logprob"]], abs=1e-4)


@pytest.mark.parametrize("overrides", [dict(), dict(projection_size=12, embedding_size=12, tie_word_embeddings=True)],
                         ids=["plain", "projection"])
def test_bos_false_scores_the_first_word_from_the_zero_state(overrides):
    sentences = toy_sentences(50, seed=3)
    tokenizer = train_word_tokenizer(sentences)
    model = train_tiny(tokenizer, sentences, steps=5, **overrides)
    lm = LanguageModel(model, tokenizer)
    sentence = sentences[0]
    assert lm.score(sentence, bos=False) != pytest.approx(lm.score(sentence, bos=True), abs=1e-3)
    # With the output gate shut, the LSTM output is zero after any input: every prediction, the one after <eos>
    # included, is then the zero-state prediction, which bos=False computes by a separate path.
    hidden = model.config.hidden_size
    with torch.no_grad():
        model.model.lstm[-1].bias_ih[3 * hidden:] = -1e4
    lm = LanguageModel(model, tokenizer)
    assert lm.score(sentence, bos=False) == pytest.approx(lm.score(sentence, bos=True), abs=1e-5)
    assert [p for p, _, _ in lm.full_scores(sentence, bos=False)] == pytest.approx(
        [p for p, _, _ in lm.full_scores(sentence, bos=True)], abs=1e-6)


def test_full_scores_are_kenlm_triples_with_the_context_read(lm):
    sentence = "the cat sees a zebra near"  # "zebra" is not in the vocabulary
    triples = list(lm.full_scores(sentence))
    assert [length for _, length, _ in triples] == [2, 3, 4, 5, 6, 7, 8]  # <s> and the words read, plus the word
    assert [oov for _, _, oov in triples] == [False, False, False, False, True, False, False]
    assert sum(p for p, _, _ in triples) == pytest.approx(lm.score(sentence), abs=1e-5)
    assert [length for _, length, _ in lm.full_scores(sentence, bos=False, eos=False)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("bos", [True, False])
def test_word_by_word_state_api_sums_to_the_sentence_score(lm, bos):
    sentence = "every clever child follows the house"
    state = lm.begin_sentence_state() if bos else lm.null_context_state()
    total = 0.0
    for word in sentence.split() + ["</s>"]:
        logprob, state = lm.score_word(state, word)
        total += logprob
    assert total == pytest.approx(lm.score(sentence, bos=bos), abs=1e-5)
    assert state.context == len(sentence.split()) + 1 + (1 if bos else 0)
    # A state can be reused: branching from it does not change it.
    start = lm.begin_sentence_state()
    first, _ = lm.score_word(start, "the")
    again, _ = lm.score_word(start, "the")
    assert first == again
    with pytest.raises(ValueError, match="one word"):
        lm.score_word(start, "the cat")


def test_sentence_batches_score_like_one_by_one(lm):
    texts = toy_sentences(30, seed=5) + ["", "the cat", "a zebra " * 20]
    lm.batch_size, lm.max_tokens = 4, 40
    try:
        batched = lm.lm_logprob(texts)
    finally:
        lm.batch_size, lm.max_tokens = 64, 8192
    assert batched == pytest.approx([lm.lm_logprob([text])[0] for text in texts], abs=1e-4)


# ------------------------------------------------------------------------------------------------- hf-softbin score


def summary_number(summary, label):
    match = re.search(re.escape(label) + r": (-?[0-9.]+)", summary)
    assert match, f"{label!r} not in the summary:\n{summary}"
    return float(match.group(1))


def test_score_command_prints_tsv_lines_and_a_corpus_summary(capsys, trained, lm, tmp_path):
    lines = ["the cat sees the old dog", "", "a child finds a small zebra", "   "]
    path = tmp_path / "text.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, out, err = run(capsys, "score", trained, path, "--device", "cpu")
    assert status == 0, err
    rows = [line.split("\t") for line in out.splitlines() if not line.startswith("#")]
    assert len(rows) == 4
    for row, text in zip(rows, lines):
        log10prob, tokens, oovs, perplexity = float(row[0]), int(row[1]), int(row[2]), float(row[3])
        assert log10prob == pytest.approx(lm.score(text), abs=1e-3)
        assert tokens == len(text.split()) + 1
        assert oovs == (1 if "zebra" in text else 0)
        assert perplexity == pytest.approx(lm.perplexity(text), rel=1e-3)
    assert [int(row[1]) for row in rows] == [7, 1, 7, 1]  # empty lines are scored as <eos> alone
    summary = "\n".join(line for line in out.splitlines() if line.startswith("#"))
    total = sum(lm.score(text) for text in lines)
    words = sum(len(text.split()) for text in lines)
    eos = sum(list(lm.full_scores(text))[-1][0] for text in lines)
    assert "lines: 4, words: 12, OOVs: 1, scored tokens (words + <eos>): 16" in summary
    assert summary_number(summary, "total log10 probability") == pytest.approx(total, abs=1e-3)
    assert summary_number(summary, "perplexity (with <eos>)") == pytest.approx(10 ** (-total / (words + 4)), rel=1e-4)
    assert summary_number(summary, "perplexity (without <eos>)") == pytest.approx(10 ** (-(total - eos) / words), rel=1e-4)

    status, out, _ = run(capsys, "score", trained, path, "--skip-empty")
    assert status == 0
    assert len([line for line in out.splitlines() if not line.startswith("#")]) == 2
    assert "lines: 2, words: 12, OOVs: 1" in out


def test_score_and_rescore_run_on_the_threads_asked_for(capsys, trained, nbest, tmp_path, monkeypatch):
    path = tmp_path / "text.txt"
    path.write_text("the cat sees the ball today\na bird likes a tree\n", encoding="utf-8")
    _, default, _ = run(capsys, "score", trained, path)
    asked = []
    real_set = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: asked.append(n) or real_set(n))
    status, one_thread, err = run(capsys, "score", trained, path, "--threads", "1")
    assert status == 0, err
    assert asked == [1] and one_thread == default
    directory, _ = nbest
    status, _, err = run(capsys, "rescore", trained, directory / "test.jsonl", "--threads", "1", "--out",
                         tmp_path / "best.jsonl")
    assert status == 0, err
    assert asked == [1, 1]
    with pytest.raises(SystemExit):
        main(["score", str(trained), str(path), "--threads", "0"])
    assert "--threads: must be a positive integer, got 0" in capsys.readouterr().err


def test_score_command_names_a_line_that_is_not_utf8(capsys, trained, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"the cat sees the ball\nthe dog \xff\xfe likes\n")
    status, out, err = run(capsys, "score", trained, path)
    assert status == 2 and out == ""
    assert f"{path}: line 2: not valid UTF-8" in err


def test_score_command_never_prints_nan(capsys, tmp_path):
    sentences = toy_sentences(20, seed=4)
    tokenizer = train_word_tokenizer(sentences)
    model = train_tiny(tokenizer, sentences, steps=1, binarize=False)
    with torch.no_grad():
        model.lm_head_bias[5] = float("nan")
    model.save_pretrained(tmp_path / "broken")
    tokenizer.save_pretrained(tmp_path / "broken")
    path = tmp_path / "text.txt"
    path.write_text("the cat sees the ball\na bird likes a tree\n", encoding="utf-8")
    status, out, err = run(capsys, "score", tmp_path / "broken", path)
    assert status == 2
    assert "nan" not in out.lower() and "inf" not in out.lower()
    assert "line 1" in err and "non-finite" in err


# ----------------------------------------------------------------------------------------------- hf-softbin rescore


@pytest.fixture(scope="module")
def nbest(tmp_path_factory):
    directory = tmp_path_factory.mktemp("nbest")
    dev = make_corrupted_nbest(toy_sentences(30, seed=11), 6, rng_seed=1)
    test = make_corrupted_nbest(toy_sentences(40, seed=12), 6, rng_seed=2)
    write_nbest_jsonl(dev, directory / "dev.jsonl")
    write_nbest_jsonl(test, directory / "test.jsonl")
    return directory, test


def reported_wers(err):
    values = {}
    for line in err.splitlines():
        for key in ("WER before", "WER after", "oracle WER"):
            if line.startswith(key):
                values[key] = float(line.rsplit(" ", 1)[1].rstrip("%")) / 100
    return values


def test_rescoring_with_a_trained_model_lowers_wer(capsys, trained, nbest):
    directory, test = nbest
    out_path = directory / "best.jsonl"
    status, out, err = run(capsys, "rescore", trained, directory / "test.jsonl", "--tune-on", directory / "dev.jsonl",
                           "--out", out_path)
    assert status == 0, err
    wers = reported_wers(err)
    assert wers["WER before"] == pytest.approx(rescoring.first_pass_wer(test), abs=1e-4)
    assert wers["oracle WER"] == pytest.approx(0.0)
    assert wers["WER after"] < wers["WER before"] - 0.03
    assert "tuned on 30 dev utterances" in err
    chosen = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [c["id"] for c in chosen] == [u.id for u in test]
    hyps = [c["text"] for c in chosen]
    assert jiwer.wer([u.ref for u in test], hyps) == pytest.approx(wers["WER after"], abs=1e-4)


def test_rescore_reads_kaldi_nbest_like_jsonl(capsys, trained, nbest, tmp_path):
    directory, test = nbest
    with open(tmp_path / "text", "w") as text, open(tmp_path / "costs", "w") as costs, open(tmp_path / "ref", "w") as ref:
        for utt in test:
            ref.write(f"{utt.id} {utt.ref}\n")
            for n, hyp in enumerate(utt.hyps, start=1):
                text.write(f"{utt.id}-{n} {hyp.text}\n")
                costs.write(f"{utt.id}-{n} {-hyp.am_score!r}\n")
    status, out_jsonl, err_jsonl = run(capsys, "rescore", trained, directory / "test.jsonl", "--lm-weight", 0.7,
                                       "--penalty", 0.5)
    assert status == 0, err_jsonl
    status, out_kaldi, err_kaldi = run(capsys, "rescore", trained, tmp_path / "text", "--format", "kaldi", "--scores",
                                       tmp_path / "costs", "--costs", "--refs", tmp_path / "ref", "--lm-weight", 0.7,
                                       "--penalty", 0.5)
    assert status == 0, err_kaldi
    from_jsonl = [(c["id"], c["text"]) for c in map(json.loads, out_jsonl.splitlines())]
    from_kaldi = [tuple((line.split(" ", 1) + [""])[:2]) for line in out_kaldi.splitlines()]
    assert from_kaldi == from_jsonl and len(from_kaldi) == len(test)
    assert reported_wers(err_kaldi) == reported_wers(err_jsonl)
    assert "lm weight 0.7, word insertion penalty 0.5" in err_kaldi


def test_rescore_reads_nemo_beam_output_like_jsonl(capsys, trained, nbest, tmp_path):
    directory, test = nbest
    width = max(len(utt.hyps) for utt in test)
    kept = [utt for utt in test if len(utt.hyps) == width]
    write_nbest_jsonl(kept, tmp_path / "kept.jsonl")
    with open(tmp_path / "beams.tsv", "w") as beams, open(tmp_path / "refs.txt", "w") as refs:
        for utt in kept:
            refs.write(utt.ref + "\n")
            for hyp in utt.hyps:
                beams.write(f"{hyp.text}\t{hyp.am_score!r}\n")
    status, out_jsonl, err_jsonl = run(capsys, "rescore", trained, tmp_path / "kept.jsonl", "--lm-weight", 0.7)
    assert status == 0, err_jsonl
    status, out_nemo, err_nemo = run(capsys, "rescore", trained, tmp_path / "beams.tsv", "--format", "nemo",
                                     "--beam-width", width, "--refs", tmp_path / "refs.txt", "--lm-weight", 0.7)
    assert status == 0, err_nemo
    chosen = lambda out: [json.loads(line)["text"] for line in out.splitlines()]  # noqa: E731
    assert chosen(out_nemo) == chosen(out_jsonl) and len(kept) > 5
    assert reported_wers(err_nemo) == reported_wers(err_jsonl)


def test_rescore_errors_name_the_problem(capsys, trained, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "u1", "hyps": [{"text": "a", "am_score": 0}]}\n{"id": "u2", "hyps": [{"text": "b"}]}\n')
    status, _, err = run(capsys, "rescore", trained, bad)
    assert status == 2 and "line 2" in err and '"am_score"' in err
    status, _, err = run(capsys, "rescore", trained, bad, "--format", "kaldi")
    assert status == 2 and "--format kaldi needs --scores" in err
    status, _, err = run(capsys, "rescore", trained, bad, "--beam-width", "2")
    assert status == 2 and "--beam-width does not apply to --format jsonl" in err
    with pytest.raises(SystemExit):
        main(["rescore", str(trained), str(bad), "--lm-weight", "1", "--tune-on", str(bad)])
    capsys.readouterr()
