"""A packed model on every road: dtypes, devices, memory footprint, and the keep-packed (1-bit resident) mode."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM, UnsupportedDeviceDtype
from hf_softbin.models.softbin_lstm import matrices, modeling_softbin_lstm
from hf_softbin.summary import float_twin

from conftest import train_a_little

VOCAB = 300


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    config = SoftBinLSTMConfig(vocab_size=VOCAB, embedding_size=16, hidden_size=24, num_hidden_layers=2, dropout=0.0)
    model = train_a_little(SoftBinLSTMForCausalLM(config))
    directory = tmp_path_factory.mktemp("packed")
    model.save_pretrained(directory)
    model.save_pretrained(directory / "master", packed=False)
    return model, directory


@pytest.fixture
def ids():
    return torch.randint(0, VOCAB, (3, 17), generator=torch.Generator().manual_seed(1))


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("where", ["packed", "master"])
def test_float64_scores_equal_float32(saved, ids, where):
    model, directory = saved
    path = directory if where == "packed" else directory / "master"
    expected = logits(AutoModelForCausalLM.from_pretrained(path), ids)
    moved = AutoModelForCausalLM.from_pretrained(path).to(torch.float64)
    assert {t.dtype for t in moved.buffers() if t.is_floating_point()} <= {torch.float64}
    assert torch.allclose(logits(moved, ids).double(), expected.double(), atol=1e-6)
    loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    assert loaded.lm_head_bias.dtype == torch.float64
    assert torch.allclose(logits(loaded, ids).double(), expected.double(), atol=1e-6)


def test_half_precision_moves_every_float_tensor_and_still_scores(saved, ids):
    _, directory = saved
    expected = logits(AutoModelForCausalLM.from_pretrained(directory), ids)
    for convert in (lambda m: m.to(torch.bfloat16), lambda m: m.half()):
        moved = convert(AutoModelForCausalLM.from_pretrained(directory))
        floats = {t.dtype for t in list(moved.buffers()) + list(moved.parameters()) if t.is_floating_point()}
        assert len(floats) == 1 and floats != {torch.float32}
        assert logits(moved, ids).dtype == floats.pop()  # the model's dtype, as any Transformers model gives
        assert torch.allclose(logits(moved, ids).float(), expected, atol=0.1)  # half-precision rounding


def test_a_device_and_dtype_the_lstm_kernel_cannot_run_is_refused_before_moving(saved, monkeypatch):
    _, directory = saved
    model = AutoModelForCausalLM.from_pretrained(directory)
    monkeypatch.setattr(modeling_softbin_lstm, "_KERNEL_CHECKED", {})
    real_lstm = modeling_softbin_lstm._VF.lstm

    def no_half(*args):
        if args[0].dtype == torch.float16:
            raise RuntimeError("\"lstm\" not implemented for 'Half'")
        return real_lstm(*args)

    monkeypatch.setattr(modeling_softbin_lstm._VF, "lstm", no_half)
    with pytest.raises(UnsupportedDeviceDtype, match=r"torch.float16 on cpu .*not implemented for 'Half'"):
        model.half()
    assert {t.dtype for t in model.parameters()} == {torch.float32}  # left where it was
    model.to(torch.float64)  # another dtype is still fine


def test_keep_packed_on_a_master_checkpoint_says_it_has_no_effect(saved, caplog):
    _, directory = saved
    master = AutoModelForCausalLM.from_pretrained(directory / "master", keep_packed=True)
    assert "keep_packed=True has no effect" in caplog.text and "master" in caplog.text
    assert not master.is_packed
    caplog.clear()
    AutoModelForCausalLM.from_pretrained(directory, keep_packed=True)
    assert "no effect" not in caplog.text


def test_to_meta_moves_every_tensor(saved):
    _, directory = saved
    for keep_packed in (False, True):
        model = AutoModelForCausalLM.from_pretrained(directory, keep_packed=keep_packed).to("meta")
        tensors = list(model.parameters()) + list(model.buffers())
        assert tensors and {t.device.type for t in tensors} == {"meta"}


def resident(model) -> dict[str, int]:
    return {name: t.numel() * t.element_size() for name, t in list(model.named_buffers()) + list(model.named_parameters())}


def test_memory_footprint_counts_what_is_held(saved):
    _, directory = saved
    unpacked = AutoModelForCausalLM.from_pretrained(directory)
    assert unpacked.get_memory_footprint() == sum(resident(unpacked).values())
    assert unpacked.model.embeddings.unpacked.shape == (VOCAB, 16)  # the unpacked matrix is a registered buffer
    assert "model.embeddings.unpacked" not in unpacked.state_dict()  # ... that is not saved
    packed = AutoModelForCausalLM.from_pretrained(directory, keep_packed=True)
    assert packed.get_memory_footprint() == sum(resident(packed).values())
    floats = float_twin(packed.config).get_memory_footprint()
    assert unpacked.get_memory_footprint() > floats  # unpacked matrices as well as the bits
    assert packed.get_memory_footprint() * 8 < floats  # at this tiny width the scalars and biases weigh a lot


def test_keep_packed_scores_like_unpacked_and_never_holds_a_float_vocabulary_matrix(saved, monkeypatch):
    monkeypatch.setattr(matrices, "BLOCK_ROWS", 64)  # several output blocks even at this vocabulary size
    _, directory = saved
    unpacked = AutoModelForCausalLM.from_pretrained(directory)
    packed = AutoModelForCausalLM.from_pretrained(directory, keep_packed=True)
    for name, tensor in list(packed.named_buffers()) + list(packed.named_parameters()):
        if tensor.is_floating_point():
            assert tensor.dim() < 2 or tensor.shape[-1] == 1 or tensor.shape[0] < VOCAB, name

    generator = torch.Generator().manual_seed(1)
    few = torch.randint(0, VOCAB, (2, 5), generator=generator)  # 10 vectors: products by table lookups
    many = torch.randint(0, VOCAB, (8, 17), generator=generator)  # 136 vectors: matrices rebuilt block by block
    expected = {"few": logits(unpacked, few), "many": logits(unpacked, many)}
    seen = []
    real_linear = torch.nn.functional.linear

    def record(inputs, weight, bias=None):
        seen.append(weight.shape[0])
        return real_linear(inputs, weight, bias)

    monkeypatch.setattr(matrices.F, "linear", record)
    assert torch.allclose(logits(packed, few), expected["few"], atol=1e-5)
    assert not seen  # no matrix was rebuilt at all
    assert torch.allclose(logits(packed, many), expected["many"], atol=1e-5)
    assert seen and max(seen) <= 64  # the output layer was computed block by block


def test_keep_packed_single_steps_follow_the_fused_kernel(saved):
    _, directory = saved
    unpacked = AutoModelForCausalLM.from_pretrained(directory)
    packed = AutoModelForCausalLM.from_pretrained(directory, keep_packed=True)
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        whole = unpacked(ids)
        state, steps = None, []
        for position in range(ids.shape[1]):
            output = packed(ids[:, position:position + 1], cache=state)
            state = output.cache
            steps.append(output.logits)
    assert torch.allclose(torch.cat(steps, dim=1), whole.logits, atol=1e-5)
    assert torch.allclose(state.c, whole.cache.c, atol=1e-5)


def test_keep_packed_generation_matches_unpacked(saved):
    _, directory = saved
    prompt = torch.tensor([[1, 5, 9]])
    unpacked = AutoModelForCausalLM.from_pretrained(directory).generate(prompt, max_new_tokens=6, do_sample=False)
    packed = AutoModelForCausalLM.from_pretrained(directory, keep_packed=True)
    assert torch.equal(packed.generate(prompt, max_new_tokens=6, do_sample=False), unpacked)
    assert packed.config.keep_packed


def test_a_packed_model_saves_again_to_the_same_file_after_a_dtype_round_trip(saved, tmp_path):
    _, directory = saved
    model = AutoModelForCausalLM.from_pretrained(directory).to(torch.float64).to(torch.float32)
    model.save_pretrained(tmp_path / "again")
    first, again = load_file(directory / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == again.keys()
    for name in first:
        assert first[name].dtype == again[name].dtype and torch.equal(first[name], again[name]), name


def test_device_map_and_pipeline_model_kwargs_reach_the_memory_modes(saved, tmp_path):
    from transformers import pipeline

    from hf_softbin.tokenization import train_word_tokenizer

    model, directory = saved
    mapped = AutoModelForCausalLM.from_pretrained(directory, device_map="cpu")
    assert mapped.model.embeddings.unpacked.device.type == "cpu"
    tokenizer = train_word_tokenizer(["the cat sat on the mat"], max_size=VOCAB)
    tokenizer.save_pretrained(directory)
    scorer = pipeline("text-scoring", model=str(directory), model_kwargs={"keep_packed": True})
    assert scorer.model.config.keep_packed and scorer.model.model.embeddings.resident_packed
    unpacked = pipeline("text-scoring", model=str(directory))
    assert scorer("the cat sat")["logprob"] == pytest.approx(unpacked("the cat sat")["logprob"], abs=1e-5)
