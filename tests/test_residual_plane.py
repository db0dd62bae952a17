"""A second sign plane on the first rows of the binary output layer (`output_residual_rows`): its definition and
gradients, its packed checkpoint (exact reload, every memory mode; remote code: test_quality_methods.py), its bytes,
its settings."""

import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from hf_softbin import SoftBinLSTMForCausalLM
from hf_softbin.model_card import render_model_card
from hf_softbin.models.softbin_lstm.matrices import ResidualBinaryMatrix
from hf_softbin.models.softbin_lstm.quantizers import packed_width
from hf_softbin.summary import summarize
from hf_softbin.training.loop import train
from hf_softbin.training.optim import parameter_groups
from hf_softbin.training.recipe import load_run_config

from conftest import recipe, train_a_little, write_recipe

RESIDUAL = dict(output_residual_rows=9, learnable_scale=True)


def _straight_through(weight: torch.Tensor) -> torch.Tensor:
    """sign(W) forward, identity backward where |W| <= 1."""
    signs = torch.where(weight >= 0, 1.0, -1.0)
    return signs + (weight - weight.detach()) * (weight.abs() <= 1).float()


@pytest.mark.parametrize("learnable", [True, False], ids=["learned", "mean-abs"])
def test_the_first_rows_add_a_binarized_residual_and_gradients_follow_the_definition(learnable):
    torch.manual_seed(0)
    matrix = ResidualBinaryMatrix(7, 10, residual_rows=3, scaling="row", learnable_scale=learnable,
                                  storage_dtype=torch.float32)
    matrix.reset_parameters(0.9)
    grad = torch.randn(7, 10)
    matrix.matrix().backward(grad)

    weight = matrix.weight.detach().clone().requires_grad_(True)
    if learnable:
        a1 = matrix.scale.detach().clone().requires_grad_(True)
        a2 = matrix.residual_scale.detach().clone().requires_grad_(True)
    else:
        a1 = weight.abs().mean(1, keepdim=True)
    first = a1 * _straight_through(weight)
    residual = weight[:3] - first[:3].detach()
    if not learnable:
        a2 = residual.abs().mean(1, keepdim=True)
    expected = torch.cat([first[:3] + a2 * _straight_through(residual), first[3:]])
    expected.backward(grad)

    assert torch.allclose(matrix.matrix().detach(), expected.detach(), atol=1e-7)
    assert torch.allclose(matrix.weight.grad, weight.grad, atol=1e-6)
    if learnable:
        assert torch.allclose(matrix.scale.grad, a1.grad, atol=1e-6)
        assert torch.allclose(matrix.residual_scale.grad, a2.grad, atol=1e-6)
    # Two planes: the first rows take four levels, the others two.
    with torch.no_grad():
        levels = [row.unique().numel() for row in matrix.matrix()]
    assert max(levels[:3]) > 2 and max(levels[3:]) == 2


def test_the_second_planes_scalars_start_at_the_residuals_magnitude_and_train_at_the_scalars_rate(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config(**RESIDUAL))
    lm_head = model.lm_head
    with torch.no_grad():
        first = lm_head.alpha() * torch.where(lm_head.weight >= 0, 1.0, -1.0)  # scalars at storage precision
        residual = lm_head.weight[:9] - first[:9]
    assert torch.allclose(lm_head.residual_scale, residual.abs().mean(1, keepdim=True), atol=1e-7)
    _, scalars, _ = parameter_groups(model)
    assert any(scalar is lm_head.residual_scale for scalar in scalars)


def test_a_packed_checkpoint_reloads_exactly_and_scores_alike_in_every_memory_mode(tiny_config, tmp_path):
    torch.manual_seed(0)
    model = train_a_little(SoftBinLSTMForCausalLM(tiny_config(**RESIDUAL)))
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    assert tensors["lm_head.residual_bits"].shape == (9, packed_width(16))
    assert tensors["lm_head.residual_scale"].shape == (9, 1)
    assert tensors["lm_head.residual_scale"].dtype == torch.float16
    ids = torch.randint(0, 40, (3, 9))
    with torch.no_grad():
        expected = model(ids).logits
        unpacked = AutoModelForCausalLM.from_pretrained(tmp_path)
        assert torch.equal(unpacked.lm_head.matrix(), model.lm_head.matrix())
        assert torch.equal(unpacked(ids).logits, expected)
        kept = AutoModelForCausalLM.from_pretrained(tmp_path, keep_packed=True)
        assert kept.lm_head.resident_packed
        assert torch.allclose(kept(ids).logits, expected, atol=1e-5)
        assert torch.allclose(kept(ids[:, :1]).logits, model(ids[:, :1]).logits, atol=1e-5)  # table lookups
        rows = torch.tensor([0, 8, 9, 39, 3])  # inside and outside the second plane
        assert torch.equal(kept.lm_head.rows_of(rows), model.lm_head.matrix()[rows])
        assert torch.equal(kept.lm_head.rows_of(slice(5, 12)), model.lm_head.matrix()[5:12])


def test_the_summary_counts_the_second_planes_bits_and_scalars_to_the_byte(tiny_config, tmp_path):
    one_plane = SoftBinLSTMForCausalLM(tiny_config(learnable_scale=True))
    two_planes = SoftBinLSTMForCausalLM(tiny_config(**RESIDUAL))
    for name, model in (("one", one_plane), ("two", two_planes)):
        model.save_pretrained(tmp_path / name)
    one, two = summarize(str(tmp_path / "one")), summarize(str(tmp_path / "two"))
    more = {kind: two.bytes_by_kind()[kind] - one.bytes_by_kind()[kind] for kind in ("sign bits", "scalars")}
    assert more == {"sign bits": 9 * packed_width(16), "scalars": 9 * 2}
    assert two.packed_file_bytes == os.path.getsize(tmp_path / "two" / "model.safetensors")
    assert two.packed_file_bytes > one.packed_file_bytes


@pytest.mark.parametrize("overrides, message", [
    (dict(output_residual_rows=41), r"output_residual_rows must be an integer in \[0, vocab_size=40\], got 41"),
    (dict(output_residual_rows=-1), "output_residual_rows must be an integer"),
    (dict(output_residual_rows=4, scaling="tensor"), "needs an untied binary output layer with row scalars"),
    (dict(output_residual_rows=4, binarize=["embedding", "lstm"]), "quantization output 'float'"),
    (dict(output_residual_rows=4, embedding_size=16, tie_word_embeddings=True), "tie_word_embeddings=True"),
], ids=["too-many", "negative", "tensor-scaling", "float-output", "tied"])
def test_bad_second_plane_settings_say_what_is_wrong(tiny_config, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


TWO_PLANE_OUTPUT = {"binarize": None, "quantization": {"embedding": "pq", "lstm": "binary", "output": "binary"},
                    "pq_subvectors": 4, "pq_codebook_size": 8, "pq_codebook_storage": "binary",
                    "learnable_scale": True, "output_residual_rows": 0.5}


def test_a_recipe_gives_the_second_plane_a_share_of_the_vocabulary_and_a_student_trains_with_it(teacher_run, corpus,
                                                                                              tmp_path):
    teacher_dir, _ = teacher_run
    values = recipe(corpus, tmp_path / "student", model=TWO_PLANE_OUTPUT, training={"max_steps": 3},
                    distill={"teacher": str(teacher_dir), "kd_lambda": 1.0})
    metrics = train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    vocab_size = student.config.vocab_size
    assert student.config.output_residual_rows == round(0.5 * vocab_size)
    assert student.lm_head.residual_bits.shape == (round(0.5 * vocab_size), packed_width(16))
    assert metrics["steps"] == 3 and metrics["compression_ratio"] > 1


def test_a_share_of_the_vocabulary_must_be_below_one(corpus, tmp_path):
    values = recipe(corpus, tmp_path / "run", model={**TWO_PLANE_OUTPUT, "output_residual_rows": 1.5})
    with pytest.raises(ValueError, match="model: .*output_residual_rows must be an integer .* got 1.5"):
        load_run_config(str(write_recipe(tmp_path / "bad.yaml", values)))


@pytest.mark.parametrize("layout, says", [
    (RESIDUAL, "the output layer's first 9 rows (its most frequent words) keep a second sign plane"),
    (dict(scaling="row_col", learnable_scale=True), "one float scalar per row and one per column (OneBit)"),
], ids=["second-plane", "row-col"])
def test_the_model_card_describes_the_layout(tiny_config, tmp_path, layout, says):
    SoftBinLSTMForCausalLM(tiny_config(**layout)).save_pretrained(tmp_path)
    card = render_model_card(tmp_path, metrics={})
    assert says in card
