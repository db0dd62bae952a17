"""Keep-packed models decode like unpacked ones on every road that feeds several rows at once: beam search, batched
prompts, several returned sequences, and scoring files whose lines are all empty; binary and PQ checkpoints, with the
package installed and through remote code."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForCausalLM, pipeline

from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
from hf_softbin.cli import main as cli_main
from hf_softbin.tokenization import train_word_tokenizer

from conftest import BLOCK_HF_SOFTBIN, SENTENCES, train_a_little

pytestmark = pytest.mark.usefixtures("one_thread")

LAYOUTS = {
    "binary": {},
    "pq": {"quantization": {"embedding": "pq", "lstm": "binary", "output": "pq"}, "pq_subvectors": 4,
           "pq_codebook_size": 16},
}
PROMPT = torch.tensor([[1, 5, 6, 7]])
BATCH = torch.tensor([[2, 2, 1, 5], [1, 9, 4, 3]])  # left-padded with <pad> (id 2)
BATCH_MASK = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
# (what is generated, generate() options); sampling runs from a fixed seed
ROADS = {
    "beam search": (PROMPT, {"num_beams": 4}),
    "beam search, 3 sequences": (PROMPT, {"num_beams": 4, "num_return_sequences": 3}),
    "batched prompts": (BATCH, {"attention_mask": BATCH_MASK}),
    "batched beam search": (BATCH, {"attention_mask": BATCH_MASK, "num_beams": 3}),
    "sampling, 3 sequences": (PROMPT, {"do_sample": True, "top_k": 10, "num_return_sequences": 3}),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A packed binary and a packed PQ checkpoint with a tokenizer, trained a little so that beams differ."""
    tokenizer = train_word_tokenizer(SENTENCES)
    directories = {}
    for layout, overrides in LAYOUTS.items():
        torch.manual_seed(0)
        config = SoftBinLSTMConfig(vocab_size=40, embedding_size=16, hidden_size=16, num_hidden_layers=2,
                                   dropout=0.0, **overrides)
        model = train_a_little(SoftBinLSTMForCausalLM(config), steps=5)
        directories[layout] = tmp_path_factory.mktemp(layout)
        model.save_pretrained(directories[layout])
        tokenizer.save_pretrained(directories[layout])
    return directories


def generate(model, road: str) -> torch.Tensor:
    inputs, options = ROADS[road]
    torch.manual_seed(3)
    return model.generate(inputs, max_new_tokens=6, pad_token_id=2, **options)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_keep_packed_generation_of_several_rows_equals_the_unpacked_model(saved, layout):
    unpacked = AutoModelForCausalLM.from_pretrained(saved[layout])
    packed = AutoModelForCausalLM.from_pretrained(saved[layout], keep_packed=True)
    assert packed.model.lstm_kept_packed()
    for road in ROADS:
        assert torch.equal(generate(packed, road), generate(unpacked, road)), road


REMOTE_GENERATE = BLOCK_HF_SOFTBIN + textwrap.dedent(
    """
    import json
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True, keep_packed=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    roads = {"beam search": dict(num_beams=4, num_return_sequences=2),
             "batched prompts": dict(attention_mask=torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]), num_beams=2)}
    prompts = {"beam search": torch.tensor([[1, 5, 6, 7]]),
               "batched prompts": torch.tensor([[2, 2, 1, 5], [1, 9, 4, 3]])}
    out = {road: model.generate(prompts[road], max_new_tokens=6, pad_token_id=2, **options).tolist()
           for road, options in roads.items()}
    with open(sys.argv[2], "w") as handle:
        json.dump(out, handle)
    """
)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_keep_packed_generation_through_remote_code_equals_the_unpacked_model(saved, layout, tmp_path):
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    out = tmp_path / "generated.json"
    subprocess.run([sys.executable, "-c", REMOTE_GENERATE, str(saved[layout]), str(out)], check=True, env=env,
                   cwd=tmp_path)
    remote = json.loads(out.read_text())
    unpacked = AutoModelForCausalLM.from_pretrained(saved[layout])
    expected = {
        "beam search": unpacked.generate(PROMPT, max_new_tokens=6, pad_token_id=2, num_beams=4,
                                         num_return_sequences=2),
        "batched prompts": unpacked.generate(BATCH, attention_mask=BATCH_MASK, max_new_tokens=6, pad_token_id=2,
                                             num_beams=2),
    }
    for road, sequences in expected.items():
        assert remote[road] == sequences.tolist(), road


@pytest.mark.parametrize("layout", LAYOUTS)
def test_keep_packed_scoring_of_lines_that_are_all_empty(saved, layout, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n\n")
    outputs = {}
    for mode in ("unpacked", "keep-packed"):
        status = cli_main(["score", str(saved[layout]), str(empty), "--no-progress"]
                          + (["--keep-packed"] if mode == "keep-packed" else []))
        captured = capsys.readouterr()
        assert status == 0, captured.err
        outputs[mode] = captured.out.splitlines()
    assert len(outputs["keep-packed"]) == 3 + 4  # a line per input line (<eos> alone), then the corpus summary
    assert outputs["keep-packed"] == outputs["unpacked"]

    scorer = pipeline("text-scoring", model=str(saved[layout]), model_kwargs={"keep_packed": True})
    reference = pipeline("text-scoring", model=str(saved[layout]))
    got, expected = scorer(["", ""]), reference(["", ""])
    assert [r["num_tokens"] for r in got] == [1, 1]
    assert [r["logprob"] for r in got] == pytest.approx([r["logprob"] for r in expected], abs=1e-5)
