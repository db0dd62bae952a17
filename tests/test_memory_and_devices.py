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


def test_keep_packed_holds_no_float_vocabulary_matrix(saved):
    _, directory = saved
    packed = AutoModelForCausalLM.from_pretrained(directory, keep_packed=True)
    for name, tensor in list(packed.named_buffers()) + list(packed.named_parameters()):
        if tensor.is_floating_point():
            assert tensor.dim() < 2 or tensor.shape[-1] == 1 or tensor.shape[0] < VOCAB, name


PQ_PARTS = {"embedding": "pq", "lstm": "binary", "output": "pq"}
VARIANTS = {"row": {}, "tensor": dict(scaling="tensor"), "row_col": dict(scaling="row_col", learnable_scale=True),
            "bllm tied": dict(scaling="bllm", tie_word_embeddings=True, embedding_size=24),  # a scale per column
            "pq float16": dict(quantization=PQ_PARTS, pq_subvectors=4, pq_codebook_size=16),
            "pq binary": dict(quantization=PQ_PARTS, pq_subvectors=4, pq_codebook_size=16, pq_codebook_storage="binary"),
            "pq binary row scale": dict(quantization=PQ_PARTS, pq_subvectors=4, pq_codebook_size=16,
                                        pq_codebook_storage="binary", pq_row_scale=True)}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, tmp_path_factory):
    """A packed checkpoint of each stored form, loaded unpacked and keep-packed."""
    torch.manual_seed(0)
    values = dict(vocab_size=VOCAB, embedding_size=16, hidden_size=24, num_hidden_layers=2, dropout=0.0)
    model = train_a_little(SoftBinLSTMForCausalLM(SoftBinLSTMConfig(**{**values, **VARIANTS[request.param]})))
    directory = tmp_path_factory.mktemp("variant")
    model.save_pretrained(directory)
    return (AutoModelForCausalLM.from_pretrained(directory),
            AutoModelForCausalLM.from_pretrained(directory, keep_packed=True))


def padded_batch(rows: int, length: int, seed: int):
    """Random ids and a mask with padding on the right, on the left, in the middle, and a row of padding only."""
    ids = torch.randint(0, VOCAB, (rows, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[0, length // 2:] = 0
    mask[1, :length // 3] = 0
    mask[2, length // 3:length // 2] = 0
    mask[3] = 0
    return ids, mask


def test_keep_packed_scores_like_unpacked_without_a_float_lstm_or_vocabulary_matrix(variant, product_path, monkeypatch):
    """Batches of a few and of many vectors, padded anywhere: logits and state equal the unpacked model's. The kernel
    rebuilds no matrix at all; pure torch rebuilds, for many vectors, blocks of at most 16 x 24 weights here (less
    than an LSTM gate of the second layer), never a whole matrix."""
    unpacked, packed = variant
    monkeypatch.setattr(matrices, "BLOCK_ELEMENTS", 16 * 24)
    rebuilt = []
    real_rows_of = {cls: cls.rows_of for cls in (matrices.PackedBinaryMatrix, matrices.PackedPQMatrix)}
    for cls, rows_of in real_rows_of.items():
        def record(self, index, rows_of=rows_of):
            if isinstance(index, slice):
                rebuilt.append((self, len(range(*index.indices(self.rows))) * self.cols))
            return rows_of(self, index)
        monkeypatch.setattr(cls, "rows_of", record)
    lstm = {matrix for layer in packed.model.lstm for matrix in (layer.weight_ih, layer.weight_hh)}
    for rows, length in ((4, 3), (8, 17)):  # 12 and 136 vectors a product
        ids, mask = padded_batch(rows, length, seed=length)
        with torch.no_grad():
            expected, actual = (model(ids, attention_mask=mask, output_hidden_states=True)
                                for model in (unpacked, packed))
        real = mask.bool()
        assert torch.allclose(actual.logits[real], expected.logits[real], atol=1e-5)
        assert torch.allclose(actual.cache.h, expected.cache.h, atol=1e-5)
        assert torch.allclose(actual.cache.c, expected.cache.c, atol=1e-5)
        assert len(actual.hidden_states) == len(expected.hidden_states) == 3  # embedding, then each layer
        for mine, theirs in zip(actual.hidden_states, expected.hidden_states):
            assert torch.allclose(mine[real], theirs[real], atol=1e-5)
    if product_path == "kernel":
        assert not rebuilt
    else:
        assert rebuilt and max(size for _, size in rebuilt) <= 16 * 24
        assert not [size for matrix, size in rebuilt if matrix in lstm and size >= matrix.rows * matrix.cols]


def test_keep_packed_single_steps_follow_the_fused_kernel(variant, product_path):
    unpacked, packed = variant
    ids = torch.tensor([[1, 5, 9, 13, 2, 7], [4, 4, 8, 120, 3, 1]])
    with torch.no_grad():
        whole = unpacked(ids)
        state, steps = None, []
        for position in range(ids.shape[1]):
            output = packed(ids[:, position:position + 1], cache=state)
            state = output.cache
            steps.append(output.logits)
    assert torch.allclose(torch.cat(steps, dim=1), whole.logits, atol=1e-5)
    assert torch.allclose(state.c, whole.cache.c, atol=1e-5)


def test_keep_packed_generation_matches_unpacked(variant, product_path):
    """Greedy, beam search and a padded batch of prompts (batch > 1 one token at a time)."""
    unpacked, packed = variant
    prompt, batch = torch.tensor([[1, 5, 9]]), torch.tensor([[2, 2, 1, 5], [1, 7, 9, 11]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    for inputs, kwargs in ((prompt, {}), (prompt, dict(num_beams=4, num_return_sequences=2)),
                           (batch, dict(attention_mask=mask, pad_token_id=2))):
        expected = unpacked.generate(inputs, max_new_tokens=6, do_sample=False, **kwargs)
        assert torch.equal(packed.generate(inputs, max_new_tokens=6, do_sample=False, **kwargs), expected), kwargs
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
