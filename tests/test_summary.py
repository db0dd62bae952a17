"""`hf-softbin summary`: where the bytes of a packed model go, and the file sizes, computed from shapes alone and
checked against files actually saved."""

import os

import pytest
from safetensors.torch import load_file

from hf_softbin import SoftBinLSTMForCausalLM
from hf_softbin.cli import main
from hf_softbin.summary import format_summary, summarize

PQ = dict(quantization={"embedding": "pq", "lstm": "binary", "output": "pq"}, pq_subvectors=4, pq_codebook_size=8,
          pq_codebook_storage="binary")
ROW_COL = dict(scaling="row_col", learnable_scale=True)
LAYOUTS = {"binary": {}, "row-col": ROW_COL, "pq": PQ, "pq-fp16": dict(PQ, pq_codebook_storage="float16"),
           "pq-row-scale": dict(PQ, pq_row_scale=True)}
FLOAT = {"quantization": {"embedding": "float", "lstm": "float", "output": "float"}}


def saved_size(model, directory, **options) -> int:
    model.save_pretrained(directory, **options)
    return os.path.getsize(directory / "model.safetensors")


@pytest.mark.parametrize("overrides", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_every_stored_byte_is_counted_once_by_kind(tmp_path, tiny_config, overrides):
    SoftBinLSTMForCausalLM(tiny_config(**overrides)).save_pretrained(tmp_path)
    summary = summarize(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    assert sum(row.packed_bytes for row in summary.rows) == sum(t.numel() * t.element_size() for t in stored.values())
    kinds = summary.bytes_by_kind()
    assert kinds["sign bits"] == sum(t.numel() for name, t in stored.items() if name.endswith("bits"))
    assert kinds["codes"] == sum(t.numel() for name, t in stored.items() if name.endswith(".codes"))
    assert kinds["codebooks"] == sum(2 * t.numel() for name, t in stored.items() if name.endswith(".codebooks"))
    assert kinds["scalars"] == sum(2 * t.numel() for name, t in stored.items() if name.endswith("scale"))
    assert summary.packed_file_bytes == os.path.getsize(tmp_path / "model.safetensors")
    embedding = next(row for row in summary.rows if row.name == "model.embeddings")
    assert embedding.parameters == 40 * 12  # the float32 matrix it stands for


@pytest.mark.parametrize("overrides", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_file_sizes_from_shapes_are_the_sizes_save_pretrained_writes(tmp_path, tiny_config, overrides):
    """From a master directory: the packed file it would give and the float32 file of the same shape, to the byte."""
    model = SoftBinLSTMForCausalLM(tiny_config(**overrides))
    model.save_pretrained(tmp_path / "master", packed=False)
    summary = summarize(tmp_path / "master")
    assert summary.packed_file_bytes == saved_size(model, tmp_path / "packed")
    twin = SoftBinLSTMForCausalLM(tiny_config(**{**overrides, **FLOAT}))
    assert summary.float_file_bytes == saved_size(twin, tmp_path / "float32")
    printed = format_summary(summary)
    assert "packed model.safetensors, as save_pretrained writes it" in printed  # no such file in the directory
    assert "packed model.safetensors)" not in printed


def test_summary_reads_no_tensor_data(tmp_path, tiny_config):
    """Shapes are all it needs: a directory whose tensor data is damaged (so it would not load) is still summarized."""
    model = SoftBinLSTMForCausalLM(tiny_config())
    model.save_pretrained(tmp_path)
    intact = format_summary(summarize(tmp_path))
    data = bytearray((tmp_path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        SoftBinLSTMForCausalLM.from_pretrained(tmp_path)
    assert format_summary(summarize(tmp_path)) == intact


def test_the_command_prints_pq_codes_and_the_lstm_costs_what_it_costs_in_a_binary_model(tmp_path, tiny_config,
                                                                                        capsys):
    pq_config = dict(PQ, pq_subvectors=2)
    SoftBinLSTMForCausalLM(tiny_config()).save_pretrained(tmp_path / "binary")
    packed = saved_size(SoftBinLSTMForCausalLM(tiny_config(**pq_config)), tmp_path / "pq")
    float32 = saved_size(SoftBinLSTMForCausalLM(tiny_config(**{**pq_config, **FLOAT})), tmp_path / "float32")
    assert main(["summary", str(tmp_path / "pq")]) == 0
    printed = capsys.readouterr().out
    header = printed.splitlines()[0]
    assert "codes" in header and "sign bits" in header
    assert "codebooks" not in header  # binary codebooks are sign bits and scalars
    assert f"{float32:,} bytes" in printed and f"{packed:,} bytes (packed model.safetensors)" in printed
    assert printed.rstrip().endswith(f"= {float32 / packed:.2f}x")
    binary, pq = summarize(tmp_path / "binary"), summarize(tmp_path / "pq")
    lstm_rows = [row.name for row in binary.rows if ".lstm." in row.name]
    assert [r.packed_bytes for r in binary.rows if r.name in lstm_rows] == \
        [r.packed_bytes for r in pq.rows if r.name in lstm_rows]  # the LSTM is stored alike
