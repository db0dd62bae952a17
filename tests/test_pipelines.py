import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import pipeline

import hf_softbin  # noqa: F401  (registers "text-scoring")
from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM, TextScoringPipeline
from hf_softbin.models.softbin_lstm import pipeline_text_scoring
from hf_softbin.models.softbin_lstm.pipeline_text_scoring import token_logprobs
from hf_softbin.tokenization import SPECIAL_TOKENS, train_word_tokenizer

from conftest import BLOCK_HF_SOFTBIN, SENTENCES, WORDS, stream_of, train_a_little

MIXED = ["the cat", "a dog ran under the tree today again on the mat", "", "bird", "the cat sat on the xyzzy mat"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(tokenizer, seed=0, **overrides):
    """A tiny model with a few Adam steps behind it, so that its predictions depend on the context."""
    torch.manual_seed(seed)
    values = dict(vocab_size=len(tokenizer), embedding_size=16, hidden_size=16, num_hidden_layers=1, dropout=0.0)
    values.update(overrides)
    model = SoftBinLSTMForCausalLM(SoftBinLSTMConfig(**values))
    return train_a_little(model, stream_of(tokenizer, SENTENCES), steps=5, lr=0.02, seed=seed)


@pytest.fixture(scope="module")
def tokenizer():
    return train_word_tokenizer([" ".join(WORDS)] + SENTENCES)


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, model, tokenizer):
    directory = tmp_path_factory.mktemp("model")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def reference_scores(model, tokenizer, text):
    """ln p of each of `w1 ... wn <eos>` after `<eos>`, by one plain forward pass."""
    ids = [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        logprobs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    return [float(logprobs[t, ids[t + 1]]) for t in range(len(ids) - 1)]


def test_task_is_registered_and_scores_from_a_directory(saved, model, tokenizer):
    scorer = pipeline("text-scoring", model=str(saved))
    assert isinstance(scorer, TextScoringPipeline)
    result = scorer("the cat sat on the mat")
    expected = reference_scores(model, tokenizer, "the cat sat on the mat")
    assert result["num_tokens"] == 7  # six words and <eos>
    assert result["logprob"] == pytest.approx(sum(expected), abs=1e-4)
    assert result["perplexity"] == pytest.approx(math.exp(-sum(expected) / 7), rel=1e-5)
    batch = scorer(["the cat sat on the mat", "a dog"])
    assert isinstance(batch, list) and len(batch) == 2
    assert batch[0]["logprob"] == pytest.approx(result["logprob"], abs=1e-5)


def test_token_scores_and_the_eos_option(model, tokenizer):
    scorer = pipeline("text-scoring", model=model, tokenizer=tokenizer)
    text = "the cat sat on the xyzzy"
    expected = reference_scores(model, tokenizer, text)
    full = scorer(text, return_token_scores=True)
    tokens = [token for token, _ in full["token_scores"]]
    assert tokens == ["the", "cat", "sat", "on", "the", "<unk>", "<eos>"]
    assert [value for _, value in full["token_scores"]] == pytest.approx(expected, abs=1e-5)
    no_eos = scorer(text, score_eos=False, return_token_scores=True)
    assert no_eos["num_tokens"] == 6
    assert no_eos["logprob"] == pytest.approx(sum(expected[:-1]), abs=1e-4)
    assert [token for token, _ in no_eos["token_scores"]][-1] == "<unk>"
    empty = scorer("")
    assert empty["num_tokens"] == 1  # just <eos>
    assert empty["logprob"] == pytest.approx(reference_scores(model, tokenizer, "")[0], abs=1e-5)
    assert scorer("", score_eos=False) == {"logprob": 0.0, "num_tokens": 0, "perplexity": None}


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_padded_batches_score_like_one_by_one(model, tokenizer, padding_side):
    tokenizer.padding_side = padding_side
    try:
        scorer = pipeline("text-scoring", model=model, tokenizer=tokenizer)
        one_by_one = [scorer(text, return_token_scores=True) for text in MIXED]
        batched = scorer(MIXED, batch_size=len(MIXED), return_token_scores=True)
    finally:
        tokenizer.padding_side = "right"
    for single, padded in zip(one_by_one, batched):
        assert padded["num_tokens"] == single["num_tokens"]
        assert padded["logprob"] == pytest.approx(single["logprob"], abs=1e-4)
        assert [v for _, v in padded["token_scores"]] == pytest.approx([v for _, v in single["token_scores"]], abs=1e-5)
    # Lengths really differ and so do the scores: the comparison above is not between copies of one row.
    assert len({r["num_tokens"] for r in batched}) == len(MIXED)


def test_long_sentences_run_in_segments_with_carried_state(model, tokenizer):
    text = " ".join(WORDS * 4)  # 65 tokens with <eos>
    expected = reference_scores(model, tokenizer, text)
    scorer = pipeline("text-scoring", model=model, tokenizer=tokenizer)
    for segment in (1, 3, 7, 64, 65, 1000):
        result = scorer(text, max_segment_length=segment, return_token_scores=True)
        assert [v for _, v in result["token_scores"]] == pytest.approx(expected, abs=1e-5), segment
    batched = scorer([text, "the cat", text[:40]], batch_size=3, max_segment_length=4)
    assert batched[0]["logprob"] == pytest.approx(sum(expected), abs=1e-3)
    assert batched[1]["logprob"] == pytest.approx(sum(reference_scores(model, tokenizer, "the cat")), abs=1e-4)
    with pytest.raises(ValueError, match="max_segment_length"):
        scorer(text, max_segment_length=0)


def test_token_logprobs_handles_padding_anywhere(model):
    ids = torch.tensor([[1, 5, 6, 7, 1]])
    _, alone, _ = token_logprobs(model, ids)
    holes = torch.tensor([[2, 1, 5, 2, 2, 6, 7, 2, 1], [1, 4, 1, 2, 2, 2, 2, 2, 2]])
    mask = torch.tensor([[0, 1, 1, 0, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 0, 0, 0, 0]])
    compact, scores, lengths = token_logprobs(model, holes, mask, max_segment_length=2)
    assert lengths.tolist() == [5, 3]
    assert compact[0].tolist()[:5] == [1, 5, 6, 7, 1]
    assert torch.allclose(scores[0, :5], alone[0], atol=1e-5)
    assert scores[0, 0] == 0 and bool((scores[0, 5:] == 0).all())


def test_saved_checkpoint_declares_the_pipeline(saved, model, tokenizer, tmp_path):
    config = json.loads((saved / "config.json").read_text())
    assert config["custom_pipelines"]["text-scoring"]["impl"] == "pipeline_text_scoring.TextScoringPipeline"
    assert config["custom_pipelines"]["text-scoring"]["pt"] == ["AutoModelForCausalLM"]
    assert (saved / "pipeline_text_scoring.py").read_text() == open(pipeline_text_scoring.__file__).read()
    # A pipeline saves itself the transformers way, and the result loads again.
    scorer = pipeline("text-scoring", model=model, tokenizer=tokenizer)
    scorer.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["custom_pipelines"]["text-scoring"]
    reloaded = pipeline("text-scoring", model=str(tmp_path / "again"))
    assert reloaded("a dog ran")["logprob"] == pytest.approx(scorer("a dog ran")["logprob"], abs=1e-5)


REMOTE_PIPELINE = BLOCK_HF_SOFTBIN + textwrap.dedent(
    """
    import json
    from transformers import pipeline
    scorer = pipeline("text-scoring", model=sys.argv[1], trust_remote_code=True)
    assert type(scorer).__module__.startswith("transformers_modules"), type(scorer).__module__
    assert type(scorer.model).__module__.startswith("transformers_modules"), type(scorer.model).__module__
    texts = json.loads(sys.argv[2])
    with open(sys.argv[3], "w") as handle:
        json.dump({"single": [scorer(t) for t in texts], "batched": scorer(texts, batch_size=3)}, handle)
    """
)


def test_remote_code_pipeline_without_the_package(saved, model, tokenizer, tmp_path):
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    out = tmp_path / "scores.json"
    subprocess.run([sys.executable, "-c", REMOTE_PIPELINE, str(saved), json.dumps(MIXED), str(out)],
                   check=True, env=env, cwd=tmp_path)
    remote = json.loads(out.read_text())
    local = pipeline("text-scoring", model=model, tokenizer=tokenizer)(MIXED)
    for results in (remote["single"], remote["batched"]):
        assert [r["num_tokens"] for r in results] == [r["num_tokens"] for r in local]
        assert [r["logprob"] for r in results] == pytest.approx([r["logprob"] for r in local], abs=1e-4)


def test_the_text_generation_pipeline_continues_the_sentence_of_its_prompt(saved, model, tokenizer):
    """The prompt is read after the start token, as a sentence's first words, and the words generated after it
    are joined to it by a space."""
    prompt = "the bird"
    generated = pipeline("text-generation", model=str(saved))(prompt, max_new_tokens=4, do_sample=False)
    ids = torch.tensor([[tokenizer.eos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    continuation = model.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1]:].tolist()
    words = [token for token in tokenizer.convert_ids_to_tokens(continuation) if token not in SPECIAL_TOKENS]
    assert words  # the model goes on with the sentence
    assert generated == [{"generated_text": prompt + " " + " ".join(words)}]


def test_bad_inputs_are_named(model, tokenizer):
    scorer = pipeline("text-scoring", model=model, tokenizer=tokenizer)
    with pytest.raises(TypeError, match="string"):
        scorer(42)
    with pytest.raises(TypeError, match="unexpected option"):
        scorer("the cat", temperature=2.0)


def test_an_empty_list_of_inputs_gives_an_empty_list(saved):
    assert pipeline("text-scoring", model=str(saved))([]) == []


def test_long_inputs_show_progress_over_tokens_when_asked(saved, capsys):
    scorer = pipeline("text-scoring", model=str(saved))
    long_text = " ".join(["the cat sat on the mat"] * 200)  # 1,200 words: several segments
    quiet = scorer(long_text)
    assert "tok" not in capsys.readouterr().err
    shown = scorer(long_text, progress=True)
    assert "tok" in capsys.readouterr().err  # tqdm's bar counts tokens
    assert shown["logprob"] == pytest.approx(quiet["logprob"], abs=1e-4)
