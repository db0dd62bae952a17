import builtins
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from hf_softbin import PackedModelTrainingError, SoftBinLSTMConfig, SoftBinLSTMForCausalLM
from hf_softbin.models.softbin_lstm import checkpoint
from hf_softbin.summary import summarize_config

from conftest import BLOCK_HF_SOFTBIN, REMOTE_CODE_FILES, REPO_ROOT, train_a_little

VARIANTS = [
    dict(),
    dict(scaling="tensor"),
    dict(scaling="bllm"),
    dict(learnable_scale=True),
    dict(scaling="row_col", learnable_scale=True),
    dict(float_storage_dtype="float32"),
    dict(binarize=["lstm"]),
    dict(embedding_size=16, tie_word_embeddings=True),
    dict(projection_size=12, tie_word_embeddings=True),
    dict(binarize=False),
    dict(quantization={"embedding": "pq", "lstm": "binary", "output": "pq"}, pq_subvectors=4, pq_codebook_size=8),
    dict(quantization={"embedding": "pq", "lstm": "binary", "output": "pq"}, pq_subvectors={"embedding": 3, "output": 2},
         pq_codebook_size=16, pq_codebook_storage="binary"),
    dict(quantization={"embedding": "pq", "lstm": "binary", "output": "pq"}, pq_subvectors=4, pq_codebook_size=8,
         pq_row_scale=True),
    dict(quantization={"embedding": "pq", "lstm": "binary", "output": "pq"}, pq_subvectors=2, pq_codebook_size=8,
         pq_codebook_storage="binary", pq_row_scale=True),
    dict(quantization={"embedding": "pq", "lstm": "float", "output": "pq"}, embedding_size=16, tie_word_embeddings=True,
         pq_subvectors=2, pq_codebook_size=4),
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_packed_and_master_checkpoints_reload_to_identical_logits(tmp_path, tiny_config, overrides):
    torch.manual_seed(0)
    model = train_a_little(SoftBinLSTMForCausalLM(tiny_config(**overrides)))
    ids = torch.randint(0, 40, (3, 11))
    with torch.no_grad():
        expected = model(ids).logits
    formats = [("master", False)] + ([("packed", True)] if model.config.is_quantized else [])
    for name, packed in formats:
        model.save_pretrained(tmp_path / name, packed=packed)
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path / name)
        assert loaded.config.checkpoint_format == name
        with torch.no_grad():
            assert torch.equal(loaded(ids).logits, expected), name


def test_packed_file_holds_sign_bits_and_float_scalars(tmp_path, tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config())
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    bits = tensors["model.lstm.0.weight_ih.bits"]
    assert bits.dtype == torch.uint8 and bits.shape == (64, 2)  # 12 inputs -> 2 bytes a row
    assert tensors["model.lstm.0.weight_ih.scale"].dtype == torch.float16
    assert tensors["model.lstm.0.bias_ih"].dtype == torch.float16
    assert not any(name.endswith(".weight") for name in tensors)
    signs = torch.where(model.model.lstm[0].weight_ih.weight >= 0, 1, 0)
    unpacked = torch.tensor([[(byte >> bit) & 1 for byte in row for bit in range(8)][:12] for row in bits.tolist()])
    assert torch.equal(unpacked, signs)


def test_reference_configuration_packs_at_least_30x_smaller():
    """The file sizes save_pretrained writes (test_summary checks them against saved files), and README says them."""
    summary = summarize_config(SoftBinLSTMConfig(vocab_size=10000, embedding_size=650, hidden_size=650,
                                                 num_hidden_layers=2, binarize=True, scaling="row"))
    assert summary.file_ratio >= 30.0, summary.file_ratio
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"is {summary.file_ratio:.1f}x smaller than the float32 one ({summary.float_file_bytes:,} vs " \
           f"{summary.packed_file_bytes:,} bytes)" in " ".join(readme.split())


def test_a_save_writes_each_file_once_and_prints_nothing(tmp_path, tiny_config, capfd, monkeypatch):
    model = SoftBinLSTMForCausalLM(tiny_config())
    writes = []
    real_save = SoftBinLSTMConfig.save_pretrained
    monkeypatch.setattr(SoftBinLSTMConfig, "save_pretrained",
                        lambda self, *a, **k: writes.append(1) or real_save(self, *a, **k))
    model.save_pretrained(tmp_path)
    assert writes == [1]
    assert capfd.readouterr().err == ""  # no progress bar of a shard that is not written


def test_loading_reads_config_json_once_and_hashes_the_weights_once(tmp_path, tiny_config, monkeypatch):
    SoftBinLSTMForCausalLM(tiny_config()).save_pretrained(tmp_path)
    opened, digests = [], []
    real_open, real_digest = builtins.open, checkpoint.WeightsFile._payload_digest
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: opened.append(os.path.basename(os.fspath(file)))
                        or real_open(file, *a, **k))
    monkeypatch.setattr(checkpoint.WeightsFile, "_payload_digest", lambda self: digests.append(1) or real_digest(self))
    SoftBinLSTMForCausalLM.from_pretrained(tmp_path)
    monkeypatch.undo()
    assert opened.count("config.json") == 1 and opened.count("model.safetensors") == 1 and digests == [1]


def test_packed_model_refuses_training_and_master_trains(tmp_path, tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config())
    model.save_pretrained(tmp_path / "packed")
    model.save_pretrained(tmp_path / "master", packed=False)
    packed = AutoModelForCausalLM.from_pretrained(tmp_path / "packed")
    with pytest.raises(PackedModelTrainingError, match="master"):
        packed.train()
    assert not any(parameter.requires_grad for parameter in packed.parameters())
    with pytest.raises(ValueError, match="packed"):
        packed.save_pretrained(tmp_path / "again", packed=False)
    master = AutoModelForCausalLM.from_pretrained(tmp_path / "master")
    master.train()
    ids = torch.tensor([[1, 2, 3, 4]])
    master(ids, labels=ids).loss.backward()


def test_full_precision_model_cannot_be_packed(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="full precision"):
        SoftBinLSTMForCausalLM(tiny_config(binarize=False)).save_pretrained(tmp_path, packed=True)


@pytest.fixture
def saved(tmp_path, tiny_config):
    SoftBinLSTMForCausalLM(tiny_config()).save_pretrained(tmp_path)
    return tmp_path


def test_truncated_weights_file_is_named_in_the_error(saved):
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="model.safetensors.*truncated"):
        AutoModelForCausalLM.from_pretrained(saved)


def test_flipped_byte_in_weights_is_detected(saved):
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors.*corrupted"):
        AutoModelForCausalLM.from_pretrained(saved)


def test_missing_weights_file_is_an_error(saved):
    os.remove(saved / "model.safetensors")
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModelForCausalLM.from_pretrained(saved)


def test_tensor_shape_disagreeing_with_an_explicit_config_names_the_tensor(saved, tiny_config):
    with pytest.raises(ValueError, match="weight_hh"):
        AutoModelForCausalLM.from_pretrained(saved, config=tiny_config(hidden_size=20))


def test_tensor_shape_disagreeing_with_config_json_of_a_file_without_its_config_names_the_tensor(saved):
    """Files written before the weights carried their config (or by other tools) are checked against config.json."""
    path = saved / "model.safetensors"
    save_file(load_file(path), path, metadata={"format": "pt"})
    config = json.loads((saved / "config.json").read_text())
    config["hidden_size"] = 20
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="weight_hh"):
        AutoModelForCausalLM.from_pretrained(saved)


def test_config_json_disagreeing_with_the_weights_loads_the_config_they_were_saved_with(saved, caplog):
    """What an interrupted save (new config.json, old weights) or a hand edit leaves: the weights still load."""
    expected = AutoModelForCausalLM.from_pretrained(saved)
    config = json.loads((saved / "config.json").read_text())
    config["hidden_size"] = 20
    (saved / "config.json").write_text(json.dumps(config))
    loaded = AutoModelForCausalLM.from_pretrained(saved)
    assert loaded.config.hidden_size == 16
    assert "saved with another config" in caplog.text and "hidden_size" in caplog.text
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, expected(ids).logits)


def test_missing_tensor_names_the_tensor(saved):
    path = saved / "model.safetensors"
    tensors = load_file(path)
    del tensors["model.lstm.1.weight_hh.scale"]
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="model.lstm.1.weight_hh.scale"):
        AutoModelForCausalLM.from_pretrained(saved)


def test_saved_files_carry_metadata_digest_and_remote_code(saved):
    with safe_open(saved / "model.safetensors", "pt") as handle:
        metadata = handle.metadata()
    assert metadata["softbin_format"] == "softbin-packed-1" and len(metadata["softbin_payload_sha256"]) == 64
    config = json.loads((saved / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_softbin_lstm.SoftBinLSTMForCausalLM"
    assert config["auto_map"]["AutoModel"] == "modeling_softbin_lstm.SoftBinLSTMModel"
    for name in REMOTE_CODE_FILES:
        assert (saved / name).exists(), name
    assert not [name for name in os.listdir(saved) if name.startswith(".tmp")]


BLOCKED_IMPORT = BLOCK_HF_SOFTBIN + textwrap.dedent(
    """
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    ids = torch.load(sys.argv[2])
    with torch.no_grad():
        torch.save(model(ids).logits, sys.argv[3])
    """
)


PQ = dict(quantization={"embedding": "pq", "lstm": "binary", "output": "pq"}, pq_subvectors=4, pq_codebook_size=8,
          pq_codebook_storage="binary")


@pytest.mark.parametrize("packed, overrides", [(True, {}), (False, {}), (True, PQ), (True, dict(PQ, pq_row_scale=True))],
                         ids=["packed", "master", "pq", "pq-row-scale"])
def test_remote_code_loads_without_the_package(tmp_path, tiny_config, packed, overrides):
    model = train_a_little(SoftBinLSTMForCausalLM(tiny_config(**overrides)))
    model.save_pretrained(tmp_path / "model", packed=packed)
    ids = torch.randint(0, 40, (2, 7))
    torch.save(ids, tmp_path / "ids.pt")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, str(tmp_path / "model"), str(tmp_path / "ids.pt"),
                    str(tmp_path / "logits.pt")], check=True, env=env, cwd=tmp_path)
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "logits.pt"), model(ids).logits)


def test_pq_file_holds_byte_codes_and_codebooks(tmp_path, tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config(**PQ))
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    assert tensors["model.embeddings.codes"].dtype == torch.uint8 and tensors["model.embeddings.codes"].shape == (40, 4)
    assert tensors["lm_head.codebook_bits"].shape == (4 * 8, 1)  # 4 sub-spaces x 8 codewords, 4 wide: one byte
    assert tensors["lm_head.codebook_scale"].dtype == torch.float16
    assert not any(name.endswith((".weight", ".codebooks")) for name in tensors)


@pytest.mark.parametrize("overrides, field", [
    (dict(pq_subvectors=5), "do not divide"),
    (dict(pq_codebook_size=300), "at most|\\[2, 256\\]"),
    (dict(pq_codebook_storage="int4"), "pq_codebook_storage"),
    (dict(pq_row_scale="yes"), "pq_row_scale must be true or false"),
    (dict(quantization={"lstm": "pq"}), "vocabulary matrices"),
    (dict(quantization={"embedding": "int8"}), "quantization"),
])
def test_bad_pq_settings_are_rejected_with_a_message(tiny_config, overrides, field):
    values = {**PQ, **overrides}
    if "quantization" in overrides:
        values["quantization"] = overrides["quantization"]
    with pytest.raises(ValueError, match=field):
        tiny_config(**values)
