"""Loading checkpoints on the roads a user takes: the Auto classes both ways, remote code, old files, bad inputs."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, pipeline

from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM, SoftBinLSTMModel
from hf_softbin.cli import main as cli_main
from hf_softbin.scoring.lm import LanguageModel
from hf_softbin.tokenization import save_tokenizer, train_word_tokenizer

from conftest import BLOCK_HF_SOFTBIN, train_a_little

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-v0.1"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained tiny causal LM saved packed and master, with its tokenizer."""
    torch.manual_seed(0)
    tokenizer = train_word_tokenizer(["the cat sat on the mat", "a dog ran far away"])
    config = SoftBinLSTMConfig(vocab_size=len(tokenizer), embedding_size=12, hidden_size=16, num_hidden_layers=2,
                               dropout=0.0, learnable_scale=True)
    model = train_a_little(SoftBinLSTMForCausalLM(config))
    root = tmp_path_factory.mktemp("trained")
    for name, packed in (("packed", True), ("master", False)):
        model.save_pretrained(root / name, packed=packed)
        tokenizer.save_pretrained(root / name)
    return model, root


IDS = torch.tensor([[1, 3, 4, 5, 6, 7, 8, 1, 9, 10]])


@pytest.mark.parametrize("name", ["packed", "master"])
def test_a_checkpoint_written_by_version_0_1_loads_to_the_same_logits(name):
    expected = load_file(FIXTURE / "expected_logits.safetensors")
    model = AutoModelForCausalLM.from_pretrained(FIXTURE / name)
    assert model.config.initializer_range == 0.1  # written as init_range
    assert model.config.checkpoint_format == name
    with torch.no_grad():
        assert torch.equal(model(input_ids=expected["input_ids"]).logits[0], expected[name])
    base = AutoModel.from_pretrained(FIXTURE / name)
    with torch.no_grad():
        assert torch.equal(base(input_ids=expected["input_ids"]).last_hidden_state,
                           model.model(input_ids=expected["input_ids"]).last_hidden_state)


def test_a_version_0_1_checkpoint_scores_the_same_with_its_own_tokenizer_and_a_current_one(tmp_path):
    """Its tokenizer appends <eos>; scoring adds the start and closing tokens itself, so nothing changes."""
    sentences = ["the cat sat on the mat", "a dog ran far away home"]
    old = LanguageModel.from_pretrained(FIXTURE / "packed", device="cpu")
    assert old.tokenizer("the cat")["input_ids"][-1] == old.eos_id  # the 0.1 convention
    shutil.copytree(FIXTURE / "packed", tmp_path / "packed")
    save_tokenizer(old.tokenizer, tmp_path / "packed")
    current = LanguageModel.from_pretrained(tmp_path / "packed", device="cpu")
    assert current.tokenizer("the cat")["input_ids"][0] == current.eos_id  # the current convention
    assert current.lm_logprob(sentences) == old.lm_logprob(sentences)
    ids = [old.eos_id] + old.tokenizer(sentences[0], add_special_tokens=False)["input_ids"] + [old.eos_id]
    with torch.no_grad():
        logprobs = old.model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
    assert old.lm_logprob(sentences[:1])[0] == pytest.approx(float(logprobs.gather(1, torch.tensor(ids[1:])[:, None]).sum()),
                                                            abs=1e-5)


def test_old_config_names_are_read():
    config = SoftBinLSTMConfig.from_dict({"vocab_size": 20, "init_range": 0.05, "scaling": "none",
                                          "binarize": ["lstm"]})
    assert config.initializer_range == 0.05 and config.scaling == "bllm"
    assert config.quantization == {"embedding": "float", "lstm": "binary", "output": "float"}
    assert "init_range" not in config.to_dict() and "binarize" not in config.to_dict()


@pytest.mark.parametrize("name", ["packed", "master"])
def test_automodel_loads_the_base_of_a_causal_lm_checkpoint(trained, name, caplog, capfd):
    model, root = trained
    base = AutoModel.from_pretrained(root / name)
    printed = caplog.text + "".join(capfd.readouterr())
    assert "LOAD REPORT" not in printed and "UNEXPECTED" not in printed  # leaving the output layer out is the point
    assert isinstance(base, SoftBinLSTMModel)
    with torch.no_grad():
        assert torch.equal(base(IDS).last_hidden_state, model.model(IDS).last_hidden_state)


def test_a_base_model_checkpoint_loads_as_a_base_model_and_its_master_as_a_causal_lm(trained, tmp_path):
    model, _ = trained
    model.model.save_pretrained(tmp_path / "base-packed")
    model.model.save_pretrained(tmp_path / "base-master", packed=False)
    config = json.loads((tmp_path / "base-master" / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel"}
    for name in ("base-packed", "base-master"):
        base = AutoModel.from_pretrained(tmp_path / name)
        with torch.no_grad():
            assert torch.equal(base(IDS).last_hidden_state, model.model(IDS).last_hidden_state)
    with pytest.raises(ValueError, match="packed base model.*AutoModel"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "base-packed")
    causal = AutoModelForCausalLM.from_pretrained(tmp_path / "base-master")  # the head is initialized, as usual
    with torch.no_grad():
        assert torch.equal(causal.model(IDS).last_hidden_state, model.model(IDS).last_hidden_state)
        assert causal(IDS).logits.shape == model(IDS).logits.shape


REMOTE_AUTOMODEL = BLOCK_HF_SOFTBIN + textwrap.dedent(
    """
    import torch
    from transformers import AutoModel
    base = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True, keep_packed=sys.argv[3] == "keep")
    assert type(base).__module__.startswith("transformers_modules"), type(base).__module__
    with torch.no_grad():
        torch.save(base(torch.load(sys.argv[2])).last_hidden_state, sys.argv[2] + ".out")
    """
)


@pytest.mark.parametrize("name, mode", [("packed", "unpack"), ("packed", "keep"), ("master", "unpack")])
def test_automodel_through_remote_code_without_the_package(trained, tmp_path, name, mode):
    model, root = trained
    torch.save(IDS, tmp_path / "ids.pt")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-c", REMOTE_AUTOMODEL, str(root / name), str(tmp_path / "ids.pt"), mode],
                   check=True, env=env, cwd=tmp_path)
    with torch.no_grad():
        expected = model.model(IDS).last_hidden_state
    assert torch.allclose(torch.load(tmp_path / "ids.pt.out"), expected, atol=1e-6)


def test_resize_token_embeddings_grows_a_master_model_and_refuses_a_packed_one(trained):
    _, root = trained
    master = AutoModelForCausalLM.from_pretrained(root / "master")
    old_rows = master.model.embeddings.weight.detach().clone()
    master.resize_token_embeddings(master.config.vocab_size + 3)
    assert master.config.vocab_size == old_rows.shape[0] + 3
    assert torch.equal(master.model.embeddings.weight[:-3], old_rows)
    assert torch.allclose(master.model.embeddings.weight[-1], old_rows.mean(dim=0))
    assert master.lm_head.weight.shape[0] == master.lm_head_bias.shape[0] == master.config.vocab_size
    assert master.lm_head.scale.shape[0] == master.config.vocab_size  # learned row scalars grow too
    with torch.no_grad():
        assert master(torch.tensor([[master.config.vocab_size - 1]])).logits.shape[-1] == master.config.vocab_size
    with pytest.raises(ValueError, match="packed checkpoint cannot be resized"):
        AutoModelForCausalLM.from_pretrained(root / "packed").resize_token_embeddings(40)


# ---- bad inputs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_a_missing_directory_is_named_as_such(tmp_path, monkeypatch, capsys, where):
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "runs" / "missing") if where == "absolute" else "runs/missing"
    with pytest.raises(FileNotFoundError, match="runs/missing: no such"):
        SoftBinLSTMForCausalLM.from_pretrained(missing)  # the Auto classes fail in AutoConfig, before our code
    (tmp_path / "lines.txt").write_text("a b\n")
    assert cli_main(["score", missing, "lines.txt"]) == 2
    err = capsys.readouterr().err
    assert "runs/missing: no such" in err
    assert ("Hub" in err) == (where == "relative")  # only a name that could be a Hub id was tried there


def test_a_changed_header_byte_is_an_error_naming_the_file(trained, tmp_path):
    _, root = trained
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in (root / "packed").iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    data = bytearray((damaged / "model.safetensors").read_bytes())
    data[12] = ord("\x01")  # inside the JSON header
    (damaged / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors: corrupted or truncated"):
        AutoModelForCausalLM.from_pretrained(damaged)


def test_a_missing_tokenizer_is_named_with_how_to_save_it(trained, tmp_path):
    _, root = trained
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in (root / "packed").iterdir():
        if path.name != "tokenizer.json":
            (bare / path.name).write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match="no tokenizer.json.*save_pretrained"):
        LanguageModel.from_pretrained(bare)
    # Without any tokenizer file, AutoTokenizer comes to the tokenizer class hf_softbin registers for the config.
    os.remove(bare / "tokenizer_config.json")
    for load in (lambda: AutoTokenizer.from_pretrained(bare), lambda: pipeline("text-scoring", model=str(bare)),
                 lambda: pipeline("text-generation", model=str(bare))):
        with pytest.raises(FileNotFoundError, match="bare: no tokenizer.json.*save_pretrained"):
            load()
    # With tokenizer.json alone, that class supplies the special tokens tokenizer_config.json would have named.
    (bare / "tokenizer.json").write_bytes((root / "packed" / "tokenizer.json").read_bytes())
    alone = AutoTokenizer.from_pretrained(bare)
    assert (alone.unk_token_id, alone.eos_token_id, alone.pad_token_id) == (0, 1, 2)
    assert alone("the cat")["input_ids"] == AutoTokenizer.from_pretrained(root / "packed")("the cat")["input_ids"]
