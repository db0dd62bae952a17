"""The training methods of the quality study: row and column scalars, a scalar per row of PQ matrices, per-layer
outputs and the hidden-state loss, an ensemble teacher, text sampled from the teacher, Bop, weight averaging and
progressive binarization."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_softbin import SoftBinLSTMForCausalLM
from hf_softbin.models.softbin_lstm.matrices import BinaryMatrix, PQMatrix
from hf_softbin.models.softbin_lstm.quantizers import pq_assign, pq_decode, rank_one_scales
from hf_softbin.training import sampled_text
from hf_softbin.training.distill import Teacher, hidden_state_loss
from hf_softbin.training.loop import train
from hf_softbin.training.optim import BinarizationRamp, Bop
from hf_softbin.training.recipe import load_run_config

from conftest import BLOCK_HF_SOFTBIN, recipe, train_a_little, write_recipe

ROW_COL = dict(scaling="row_col", learnable_scale=True)


# ---- row and column scalars ------------------------------------------------------------------------------------


def test_rank_one_scales_recover_a_rank_one_magnitude_and_have_unit_mean_columns():
    rows, columns = torch.rand(7, 1) + 0.1, torch.rand(1, 5) + 0.1
    signs = torch.where(torch.rand(7, 5) > 0.5, 1.0, -1.0)
    g, h = rank_one_scales(signs * rows * columns)
    assert g.shape == (7, 1) and h.shape == (1, 5) and (g > 0).all() and (h > 0).all()
    assert torch.allclose(g * h, rows * columns, rtol=1e-5)
    assert math.isclose(h.mean().item(), 1.0, rel_tol=1e-6)


def test_row_col_matrix_and_its_gradients_follow_the_definition():
    torch.manual_seed(0)
    matrix = BinaryMatrix(6, 9, scaling="row_col", learnable_scale=True, storage_dtype=torch.float32)
    matrix.reset_parameters(1.2)  # some latent weights beyond [-1, 1] after the uniform draw are clipped by fit
    with torch.no_grad():
        matrix.weight.uniform_(-1.2, 1.2)  # and some outside, to see the straight-through mask
        matrix.col_scale.uniform_(0.5, 2.0)
    grad = torch.randn(6, 9)
    matrix.matrix().backward(grad)
    got = (matrix.weight.grad.clone(), matrix.scale.grad.clone(), matrix.col_scale.grad.clone())
    weight = matrix.weight.detach().clone().requires_grad_(True)
    g = matrix.scale.detach().clone().requires_grad_(True)
    h = matrix.col_scale.detach().clone().requires_grad_(True)
    signs = torch.where(weight >= 0, 1.0, -1.0)
    straight_through = signs + (weight - weight.detach()) * (weight.abs() <= 1).float()
    (g * straight_through * h).backward(grad)  # diag(g) sign(W) diag(h), gradients straight through
    for ours, reference in zip(got, (weight.grad, g.grad, h.grad)):
        assert torch.allclose(ours, reference, atol=1e-6)
    ids = torch.tensor([[0, 3], [5, 3]])
    rows = matrix.lookup(ids)  # training lookup binarizes only the rows it reads
    assert torch.allclose(rows, matrix.matrix()[ids], atol=1e-7)


def test_row_col_scalars_start_from_the_teachers_magnitudes(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config(**ROW_COL))
    lm_head = model.lm_head
    g, h = rank_one_scales(lm_head.weight)
    assert torch.equal(lm_head.scale.detach(), g) and torch.equal(lm_head.col_scale.detach(), h)


def test_row_col_needs_learned_scalars(tiny_config):
    with pytest.raises(ValueError, match="row_col.*learnable_scale=True"):
        tiny_config(scaling="row_col")


@pytest.mark.parametrize("layout, name, shape", [
    (ROW_COL, "lm_head.col_scale", (1, 16)),  # a scalar per input column of the binary output layer
    (dict(quantization={"embedding": "pq", "lstm": "binary", "output": "pq"}, pq_subvectors=4, pq_codebook_size=8,
          pq_row_scale=True), "lm_head.row_scale", (40, 1)),  # a scalar per word of a PQ output layer
], ids=["row_col", "pq_row_scale"])
def test_new_scalars_are_stored_in_float16_and_score_alike_in_every_memory_mode(tiny_config, tmp_path, layout, name,
                                                                               shape):
    torch.manual_seed(0)
    model = train_a_little(SoftBinLSTMForCausalLM(tiny_config(**layout)))
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    assert tensors[name].shape == shape and tensors[name].dtype == torch.float16
    ids = torch.randint(0, 40, (3, 9))
    with torch.no_grad():
        expected = model(ids).logits
        for keep_packed in (False, True):
            loaded = AutoModelForCausalLM.from_pretrained(tmp_path, keep_packed=keep_packed)
            assert torch.allclose(loaded(ids).logits, expected, atol=1e-5), keep_packed
            single = loaded(ids[:, :1]).logits  # one step: table lookups when kept packed
            assert torch.allclose(single, model(ids[:, :1]).logits, atol=1e-5), keep_packed


@pytest.mark.parametrize("layout", [ROW_COL, dict(output_residual_rows=9, learnable_scale=True)],
                         ids=["row_col", "second-plane-output"])
def test_new_layouts_load_as_remote_code_without_the_package(tiny_config, tmp_path, layout):
    torch.manual_seed(0)
    model = train_a_little(SoftBinLSTMForCausalLM(tiny_config(**layout)))
    model.save_pretrained(tmp_path / "model")
    ids = torch.randint(0, 40, (2, 7))
    torch.save(ids, tmp_path / "ids.pt")
    script = BLOCK_HF_SOFTBIN + (
        "import sys, torch\nfrom transformers import AutoModelForCausalLM\n"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True, keep_packed=True)\n"
        "torch.save(m(torch.load(sys.argv[2])).logits.detach(), sys.argv[2] + '.out')\n")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "model"), str(tmp_path / "ids.pt")], check=True,
                   cwd=tmp_path, env=env)
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "ids.pt.out"), model(ids).logits, atol=1e-5)


# ---- a scalar per row of PQ matrices ---------------------------------------------------------------------------

def test_pq_row_scale_matrix_and_its_gradients_follow_the_definition():
    torch.manual_seed(0)
    matrix = PQMatrix(12, 8, subvectors=2, codebook_size=4, codebook_storage="float16", storage_dtype=torch.float16,
                      row_scale=True)
    matrix.reset_parameters(0.5)
    grad = torch.randn(12, 8)
    matrix.matrix().backward(grad)
    got = (matrix.weight.grad.clone(), matrix.codebooks.grad.clone(), matrix.row_scale.grad.clone())
    codebooks = matrix.codebooks.detach().clone().requires_grad_(True)
    scale = matrix.row_scale.detach().clone().requires_grad_(True)
    weight = matrix.weight.detach().clone().requires_grad_(True)
    # decoded rows at storage precision times each row's scalar; rounding and latent rows pass gradients straight
    rounded = codebooks + (codebooks.half().float() - codebooks).detach()
    rounded_scale = scale + (scale.half().float() - scale).detach()
    reference = pq_decode(matrix.codes, rounded) * rounded_scale + (weight - weight.detach())
    reference.backward(grad)
    assert torch.allclose(matrix.matrix(), reference, atol=1e-6)
    for ours, expected in zip(got, (weight.grad, codebooks.grad, scale.grad)):
        assert torch.allclose(ours, expected, atol=1e-5)
    ids = torch.tensor([[0, 3], [11, 3]])
    assert torch.allclose(matrix.lookup(ids), matrix.matrix()[ids], atol=1e-7)


def test_pq_row_scale_fits_rows_that_differ_only_in_length():
    torch.manual_seed(0)
    directions = F.normalize(torch.randn(4, 6), dim=1)  # 4 directions: one codeword per sub-space each
    lengths = torch.rand(64, 1) * 5 + 0.1
    rows = directions.repeat(16, 1) * lengths
    errors = {}
    for row_scale in (False, True):
        matrix = PQMatrix(64, 6, subvectors=2, codebook_size=4, codebook_storage="float32",
                          storage_dtype=torch.float32, row_scale=row_scale)
        with torch.no_grad():
            matrix.weight.copy_(rows)
        matrix.fit_to_latent_()
        with torch.no_grad():
            errors[row_scale] = (matrix.matrix() - rows).norm() / rows.norm()
    assert errors[True] < 1e-5 < 0.05 < errors[False]  # 4 codewords cannot follow 64 lengths; 4 directions can


def test_learned_pq_codes_take_the_nearest_codewords_with_gradients_through_a_softmax():
    torch.manual_seed(0)
    matrix = PQMatrix(30, 6, subvectors=2, codebook_size=5, codebook_storage="float32", storage_dtype=torch.float32)
    matrix.reset_parameters(0.5)
    with torch.no_grad():
        matrix.weight.add_(0.2 * torch.randn(30, 6))  # rows away from the k-means codewords they were fit to
        matrix.codebooks[0, 4] = 2.0  # a codeword nearest to no row
    matrix.code_temperature = 0.3
    grad = torch.randn(30, 6)
    decoded = matrix.matrix()
    decoded.backward(grad)
    codebooks = matrix.codebooks.detach().clone().requires_grad_(True)
    weight = matrix.weight.detach().clone().requires_grad_(True)
    assert torch.equal(matrix.codes, pq_assign(weight, codebooks))  # the codes follow the rows at every step
    assert torch.equal(decoded, pq_decode(matrix.codes, codebooks))
    reference = []
    for space in range(2):
        part = weight[:, 3 * space:3 * space + 3]
        distances = torch.cdist(part, codebooks[space]) ** 2
        weights = torch.softmax(-distances / distances.mean(1, keepdim=True) / 0.3, dim=1)
        nearest = F.one_hot(matrix.codes[:, space].long(), 5).float()
        reference.append((nearest + weights - weights.detach()) @ codebooks[space])  # straight through the one-hot
    (grad * torch.cat(reference, dim=1)).sum().backward()
    assert torch.allclose(matrix.weight.grad, weight.grad, atol=1e-5)
    assert torch.allclose(matrix.codebooks.grad, codebooks.grad, atol=1e-5)
    assert 4 not in matrix.codes[:, 0] and matrix.codebooks.grad[0, 4].abs().sum() > 0  # it learns too


def test_a_run_learns_pq_codes_and_its_checkpoint_holds_the_codes_it_evaluated(teacher_run, corpus, tmp_path):
    teacher_dir, _ = teacher_run
    pq = {"quantization": {"embedding": "pq", "lstm": "binary", "output": "pq"}, "pq_subvectors": 4,
          "pq_codebook_size": 8, "learnable_scale": True}

    def run(name, temperature):
        values = recipe(corpus, tmp_path / name, model=pq, distill={"teacher": str(teacher_dir)},
                        training={"max_steps": 6, "pq_code_temperature": temperature})
        del values["model"]["binarize"]
        train(load_run_config(str(write_recipe(tmp_path / f"{name}.yaml", values))))

    run("fixed", 0.0)
    run("learned", 0.2)
    codes = {name: load_file(tmp_path / name / "model.safetensors")["lm_head.codes"] for name in ("fixed", "learned")}
    assert not torch.equal(codes["fixed"], codes["learned"])  # same start (k-means of the teacher), other codes
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "learned")
    ids = torch.randint(0, model.config.vocab_size, (2, 9))
    master = AutoModelForCausalLM.from_pretrained(tmp_path / "learned" / "master")
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, master(ids).logits, atol=1e-5)


# ---- layer outputs, hidden-state loss, ensemble teacher -----------------------------------------------------------


def test_every_layers_output_is_returned_and_the_last_one_is_the_fused_kernels(tiny_config):
    torch.manual_seed(0)
    model = SoftBinLSTMForCausalLM(tiny_config(num_hidden_layers=3)).eval()
    ids = torch.randint(0, 40, (3, 8))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding: the packed-sequence path
    with torch.no_grad():
        for attention_mask in (None, mask):
            plain = model.model(ids, attention_mask=attention_mask)
            layered = model.model(ids, attention_mask=attention_mask, output_hidden_states=True)
            assert len(layered.hidden_states) == 4  # the embedding output, then each of the 3 layers
            assert torch.allclose(layered.last_hidden_state, plain.last_hidden_state, atol=1e-6)
            assert torch.allclose(layered.hidden_states[-1], plain.last_hidden_state, atol=1e-6)
            assert torch.allclose(layered.cache.h, plain.cache.h, atol=1e-6)
            assert torch.allclose(layered.cache.c, plain.cache.c, atol=1e-6)


def test_hidden_state_loss_compares_directions_only():
    teacher = torch.randn(2, 5, 8)
    student = torch.randn(2, 5, 8)
    assert hidden_state_loss((3.0 * teacher,), (teacher,)).item() < 1e-10  # a scaled copy costs nothing
    cosine = F.cosine_similarity(student, teacher, dim=-1)
    expected = (2 - 2 * cosine).mean()  # ||a/|a| - b/|b|||^2 = 2 - 2 cos(a, b)
    assert torch.allclose(hidden_state_loss((student, teacher), (teacher, student)), expected, atol=1e-6)
    with pytest.raises(ValueError, match="2 LSTM layers, the teacher 1"):
        hidden_state_loss((student, student), (teacher,))


def test_an_ensemble_teacher_averages_its_members_probabilities(tiny_config):
    torch.manual_seed(0)
    members = [SoftBinLSTMForCausalLM(tiny_config(binarize=False)) for _ in range(3)]
    ids = torch.randint(0, 40, (2, 6))
    output = Teacher(members)(ids, layers=True)
    with torch.no_grad():
        probabilities = torch.stack([torch.softmax(member(ids).logits, -1) for member in members]).mean(0)
        first_layers = members[0].model(ids, output_hidden_states=True).hidden_states[1:]
    assert torch.allclose(torch.softmax(output.logits, -1), probabilities, atol=1e-6)
    assert len(output.states) == 3 and len(output.layers) == 2
    assert all(torch.equal(a, b) for a, b in zip(output.layers, first_layers))
    single = Teacher(members[:1])(ids)
    with torch.no_grad():
        assert torch.equal(single.logits, members[0](ids).logits)


# ---- text sampled from the teacher -----------------------------------------------------------------------------


def test_sampled_rows_are_reproducible_and_become_the_teachers_sentences(teacher_run):
    teacher_dir, _ = teacher_run
    teacher = Teacher([AutoModelForCausalLM.from_pretrained(teacher_dir)])
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    rows = sampled_text.sample_token_rows(teacher, 300, seed=5, start_id=tokenizer.eos_token_id, streams=7,
                                          progress=False)
    assert rows.shape == (7, 43)
    assert torch.equal(rows, sampled_text.sample_token_rows(teacher, 300, seed=5, start_id=tokenizer.eos_token_id,
                                                            streams=7, progress=False))
    lines = sampled_text.rows_to_lines(rows, tokenizer)
    eos = tokenizer.eos_token_id
    assert 0 < len(lines) <= int((rows == eos).sum())  # finished sentences only
    sentences = []
    for row in rows.tolist():  # each row: sentences ended by <eos>, then an unfinished one
        ends = [index for index, token in enumerate(row) if token == eos]
        sentences += [row[start:end] for start, end in zip([0] + [end + 1 for end in ends], ends) if end > start]
    assert lines == [" ".join(tokenizer.convert_ids_to_tokens(sentence)) for sentence in sentences]


def test_sampled_text_is_cached_per_teacher_size_and_seed(teacher_run, tmp_path, monkeypatch):
    teacher_dir, _ = teacher_run
    teacher = Teacher([AutoModelForCausalLM.from_pretrained(teacher_dir)])
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    draws = []
    real_sample = sampled_text.sample_token_rows
    monkeypatch.setattr(sampled_text, "sample_token_rows", lambda *a, **k: draws.append(a) or real_sample(*a, **k))
    first = sampled_text.cached_sample(teacher, [str(teacher_dir)], tokenizer, 500, 1, str(tmp_path), progress=False)
    again = sampled_text.cached_sample(teacher, [str(teacher_dir)], tokenizer, 500, 1, str(tmp_path), progress=False)
    assert first == again and len(draws) == 1
    assert first.startswith(str(teacher_dir))  # beside the teacher's run
    other_seed = sampled_text.cached_sample(teacher, [str(teacher_dir)], tokenizer, 500, 2, str(tmp_path),
                                            progress=False)
    assert other_seed != first and len(draws) == 2
    info = json.loads(open(first.replace(".txt", ".json")).read())
    info["teacher_digest"] = "0" * 64  # as if the teacher had been trained again
    open(first.replace(".txt", ".json"), "w").write(json.dumps(info))
    sampled_text.cached_sample(teacher, [str(teacher_dir)], tokenizer, 500, 1, str(tmp_path), progress=False)
    assert len(draws) == 3


def test_a_student_trains_on_real_and_sampled_text_evaluated_per_pass_over_the_real_text(teacher_run, corpus, tmp_path):
    teacher_dir, _ = teacher_run
    values = recipe(corpus, tmp_path / "student", model={"binarize": True},
                    distill={"teacher": str(teacher_dir), "kd_lambda": 1.0, "sampled_text_ratio": 2.0},
                    training={"max_epochs": 1})
    metrics = train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))
    real_tokens = sum(len(line.split()) + 1 for line in (corpus / "train.txt").read_text().splitlines() if line.strip())
    sampled = metrics["sampled_text"]["tokens"]
    assert 1.5 * real_tokens < sampled <= 2 * real_tokens + 1
    steps_per_real_pass = math.ceil(((real_tokens + 1) // 8 - 1) / 10)  # batch_size 8, bptt 10 (recipe())
    evaluations = [point["step"] for point in metrics["history"]]
    assert evaluations[:2] == [steps_per_real_pass, 2 * steps_per_real_pass]  # not once per (3x longer) epoch
    assert len(evaluations) >= 3


@pytest.mark.parametrize("at_epoch_end", [True, False])
def test_with_sampled_text_epoch_ends_are_evaluated_only_when_the_recipe_asks(teacher_run, corpus, tmp_path,
                                                                              at_epoch_end):
    teacher_dir, _ = teacher_run
    values = recipe(corpus, tmp_path / "student", model={"binarize": True},
                    distill={"teacher": str(teacher_dir), "kd_lambda": 1.0, "sampled_text_ratio": 2.0},
                    training={"max_epochs": 2, "eval_at_epoch_end": at_epoch_end, "early_stopping_patience": 0})
    metrics = train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))
    evaluations = [point["step"] for point in metrics["history"]]
    every = evaluations[0]  # a pass over the real text's worth of steps
    per_epoch, total = metrics["steps"] // 2, metrics["steps"]
    assert per_epoch % every != 0  # the first epoch ends between two evaluations on the schedule
    on_schedule = list(range(every, total + 1, every))
    if at_epoch_end:
        assert evaluations == sorted(set(on_schedule) | {per_epoch, total})
    else:  # the schedule, then the end of training
        assert evaluations == sorted(set(on_schedule) | {total})


# ---- optimizers and schedules ----------------------------------------------------------------------------------


def test_bop_flips_exactly_the_signs_its_gradient_average_pushes_past_the_threshold():
    weight = torch.nn.Parameter(torch.tensor([0.5, 0.5, -0.5, -0.5, 0.0, 0.3]))
    other = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = Bop([{"params": [weight], "bop": True}, {"params": [other]}], lr=0.1, threshold=0.05, gamma=0.5)
    weight.grad = torch.tensor([0.2, -0.2, -0.2, 0.2, 0.2, 0.04])
    other.grad = torch.tensor([1.0])
    optimizer.step()
    # average = 0.5 * grad: flips where |average| > 0.05 and it has the weight's sign (0 counts as positive)
    assert torch.equal(weight.detach(), torch.tensor([-0.5, 0.5, 0.5, -0.5, -1e-6, 0.3]))
    assert other.item() == pytest.approx(0.9)  # Adam's first step moves by lr


def test_progressive_binarization_mixes_latent_weights_in_training_only():
    torch.manual_seed(0)
    matrix = BinaryMatrix(4, 6, scaling="row", learnable_scale=False, storage_dtype=torch.float32)
    matrix.reset_parameters(0.9)
    model = torch.nn.Sequential(matrix)
    ramp = BinarizationRamp(model, steps=10)
    assert ramp.update(3) == pytest.approx(0.3)
    with torch.no_grad():
        binary = matrix.matrix().clone()
    assert torch.equal(binary.abs(), matrix.alpha().detach().expand(4, 6))
    mixed = matrix.matrix()
    assert torch.allclose(mixed, 0.7 * matrix.weight + 0.3 * binary, atol=1e-6)
    grad = torch.randn(4, 6)
    mixed.backward(grad)
    # 0.7 of the gradient straight to the latent weights, 0.3 through the binarization (and its mean |W| scalars)
    reference = matrix.weight.detach().clone().requires_grad_(True)
    alpha = reference.abs().mean(dim=1, keepdim=True)
    signs = torch.where(reference >= 0, 1.0, -1.0)
    (0.7 * reference + 0.3 * alpha * (signs + reference - reference.detach())).backward(grad)
    assert torch.allclose(matrix.weight.grad, reference.grad, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(matrix.matrix(), binary)  # evaluation: always the binary matrix
    ramp.update(12)
    assert matrix.float_share == 0.0
    assert torch.equal(matrix.matrix().detach(), binary)


def test_weight_averaging_progressive_binarization_and_scalar_rates_resume_exactly(teacher_run, corpus, tmp_path):
    teacher_dir, _ = teacher_run
    methods = {"ema_decay": 0.9, "binarize_ramp_epochs": 0.5, "scale_lr": 0.003, "eval_every": 4}

    def run(name, steps, resume=None):
        values = recipe(corpus, tmp_path / name, model={"binarize": True, "learnable_scale": True, "dropout": 0.2},
                        distill={"teacher": str(teacher_dir), "hidden_weight": 0.5},
                        training={**methods, "max_steps": steps})
        if resume:
            values["resume_from_checkpoint"] = "latest"
        return train(load_run_config(str(write_recipe(tmp_path / f"{name}-{steps}.yaml", values))))

    whole = run("whole", 12)
    run("parts", 6)
    resumed = run("parts", 12, resume=True)
    assert [p["valid_ppl"] for p in resumed["history"]] == [p["valid_ppl"] for p in whole["history"]]
    expected = load_file(tmp_path / "whole" / "master" / "model.safetensors")
    got = load_file(tmp_path / "parts" / "master" / "model.safetensors")
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.parametrize("section, values, message", [
    ("distill", {"hidden_weight": 0.5}, "distill.hidden_weight is set but distill.teacher is not"),
    ("distill", {"sampled_text_ratio": -1.0, "teacher": "x"}, "distill.sampled_text_ratio must be >= 0"),
    ("training", {"ema_decay": 1.0}, r"training.ema_decay must be in \[0, 1\)"),
    ("training", {"scale_lr": -0.1}, "training.scale_lr must be positive"),
    ("training", {"optimizer": "bop"}, "bop .* needs a binary part and learned scalars"),
    ("training", {"pq_code_temperature": 0.1}, "pq_code_temperature learns the codes of PQ matrices"),
    ("training", {"pq_code_temperature": -0.1}, "pq_code_temperature must be >= 0"),
])
def test_bad_method_settings_name_their_key(corpus, tmp_path, section, values, message):
    config = recipe(corpus, tmp_path / "run", model={"binarize": True})
    config.setdefault(section, {}).update(values)
    with pytest.raises(ValueError, match=message):
        load_run_config(str(write_recipe(tmp_path / "bad.yaml", config)))


def test_a_hidden_state_loss_needs_a_teacher_of_the_students_shape(teacher_run, corpus, tmp_path):
    teacher_dir, _ = teacher_run
    values = recipe(corpus, tmp_path / "student", model={"binarize": True, "num_hidden_layers": 2},
                    distill={"teacher": str(teacher_dir), "hidden_weight": 1.0, "init_from_teacher": False})
    with pytest.raises(ValueError, match="1 layers of 16 units and the student 2 of 16"):
        train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))


def test_a_float_student_learns_from_an_ensemble_the_fair_row_beside_a_stronger_teacher(teacher_run, corpus, tmp_path):
    teacher_dir, _ = teacher_run
    values = recipe(corpus, tmp_path / "student", model={"binarize": False},
                    distill={"teacher": str(teacher_dir), "ensemble": [str(teacher_dir)], "kd_lambda": 1.0},
                    training={"max_steps": 3})
    metrics = train(load_run_config(str(write_recipe(tmp_path / "s.yaml", values))))
    assert metrics["compression_ratio"] == 1.0 and metrics["steps"] == 3
    assert not AutoModelForCausalLM.from_pretrained(tmp_path / "student").config.is_quantized
