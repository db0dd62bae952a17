"""`hf-softbin summary`: where the bytes of a packed model go, checked against the file itself."""

import os

import pytest
from safetensors.torch import load_file

from hf_softbin import SoftBinLSTMForCausalLM
from hf_softbin.cli import main
from hf_softbin.summary import format_summary, summarize

PQ = dict(quantization={"embedding": "pq", "lstm": "binary", "output": "pq"}, pq_subvectors=4, pq_codebook_size=8,
          pq_codebook_storage="binary")


ROW_COL = dict(scaling="row_col", learnable_scale=True)


@pytest.mark.parametrize("overrides", [{}, ROW_COL, PQ, dict(PQ, pq_codebook_storage="float16")],
                         ids=["binary", "row-col", "pq", "pq-fp16"])
def test_every_stored_byte_is_counted_once_by_kind(tmp_path, tiny_config, overrides):
    SoftBinLSTMForCausalLM(tiny_config(**overrides)).save_pretrained(tmp_path)
    summary = summarize(str(tmp_path))
    stored = load_file(tmp_path / "model.safetensors")
    assert sum(row.packed_bytes for row in summary.rows) == sum(t.numel() * t.element_size() for t in stored.values())
    kinds = summary.bytes_by_kind()
    assert kinds["sign bits"] == sum(t.numel() for name, t in stored.items() if name.endswith("bits"))
    assert kinds["codes"] == sum(t.numel() for name, t in stored.items() if name.endswith(".codes"))
    assert kinds["codebooks"] == sum(2 * t.numel() for name, t in stored.items() if name.endswith(".codebooks"))
    assert kinds["scalars"] == sum(2 * t.numel() for name, t in stored.items() if name.endswith("scale"))
    assert summary.packed_file_bytes == os.path.getsize(tmp_path / "model.safetensors")
    assert summary.file_ratio == pytest.approx(summary.float_file_bytes / summary.packed_file_bytes)
    embedding = next(row for row in summary.rows if row.name == "model.embeddings")
    assert embedding.parameters == 40 * 12  # the float32 matrix it stands for


def test_the_command_prints_pq_codes_and_the_lstm_costs_what_it_costs_in_a_binary_model(tmp_path, tiny_config,
                                                                                        capsys):
    SoftBinLSTMForCausalLM(tiny_config()).save_pretrained(tmp_path / "binary")
    SoftBinLSTMForCausalLM(tiny_config(**dict(PQ, pq_subvectors=2))).save_pretrained(tmp_path / "pq")
    assert main(["summary", str(tmp_path / "pq")]) == 0
    printed = capsys.readouterr().out
    header = printed.splitlines()[0]
    assert "codes" in header and "sign bits" in header
    assert "codebooks" not in header  # binary codebooks are sign bits and scalars
    assert "compression on disk" in printed and format_summary(summarize(str(tmp_path / "pq"))) in printed
    binary, pq = summarize(str(tmp_path / "binary")), summarize(str(tmp_path / "pq"))
    lstm_rows = [row.name for row in binary.rows if ".lstm." in row.name]
    assert [r.packed_bytes for r in binary.rows if r.name in lstm_rows] == \
        [r.packed_bytes for r in pq.rows if r.name in lstm_rows]  # the LSTM is stored alike


def test_a_master_directory_does_not_pass_an_in_memory_packing_off_as_the_packed_file(tmp_path, tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config())
    model.save_pretrained(tmp_path / "master", packed=False)
    model.save_pretrained(tmp_path / "packed")
    master, packed = format_summary(summarize(str(tmp_path / "master"))), format_summary(summarize(str(tmp_path / "packed")))
    assert "packed model.safetensors" not in master and "serialized in memory" in master.splitlines()[-1]
    real = os.path.getsize(tmp_path / "packed" / "model.safetensors")
    assert f"{real:,} bytes (packed model.safetensors)" in packed
