import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from hf_softbin import LSTMState, SoftBinLSTMConfig, SoftBinLSTMForCausalLM, SoftBinLSTMModel
from hf_softbin.models.softbin_lstm import modeling_softbin_lstm

from conftest import train_a_little


def test_default_config_is_fully_binarized_with_row_scaling_and_teacher_has_same_shape():
    config = SoftBinLSTMConfig()
    assert config.quantization == {"embedding": "binary", "lstm": "binary", "output": "binary"}
    assert config.scaling == "row"
    teacher = SoftBinLSTMConfig(binarize=False)
    assert set(teacher.quantization.values()) == {"float"} and not teacher.is_quantized
    assert (teacher.vocab_size, teacher.hidden_size) == (config.vocab_size, config.hidden_size)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(scaling="column"), "scaling"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(vocab_size=-3), "vocab_size"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(embedding_size=8, hidden_size=16, tie_word_embeddings=True), "tie_word_embeddings"),
        (dict(binarize=["embedding", "attention"]), "binarize"),
        (dict(float_storage_dtype="int4"), "float_storage_dtype"),
    ],
)
def test_invalid_config_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        SoftBinLSTMConfig(**overrides)


def test_tying_with_a_projection_is_allowed():
    config = SoftBinLSTMConfig(vocab_size=30, embedding_size=8, hidden_size=16, projection_size=8, tie_word_embeddings=True)
    model = SoftBinLSTMForCausalLM(config)
    assert model.lm_head is None
    assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 30)


def test_auto_classes_resolve_to_the_package_classes(tiny_config):
    config = tiny_config()
    assert isinstance(AutoConfig.for_model("softbin_lstm"), SoftBinLSTMConfig)
    assert isinstance(AutoModel.from_config(config), SoftBinLSTMModel)
    assert isinstance(AutoModelForCausalLM.from_config(config), SoftBinLSTMForCausalLM)


def test_float_model_is_the_standard_pytorch_lstm(tiny_config):
    torch.manual_seed(0)
    config = tiny_config(binarize=False)
    model = SoftBinLSTMForCausalLM(config).eval()
    reference = torch.nn.LSTM(config.embedding_size, config.hidden_size, config.num_hidden_layers, batch_first=True)
    with torch.no_grad():
        for layer, weights in enumerate(model.model.lstm):
            getattr(reference, f"weight_ih_l{layer}").copy_(weights.weight_ih.weight)
            getattr(reference, f"weight_hh_l{layer}").copy_(weights.weight_hh.weight)
            getattr(reference, f"bias_ih_l{layer}").uniform_(-0.1, 0.1)
            getattr(reference, f"bias_hh_l{layer}").uniform_(-0.1, 0.1)
            weights.bias_ih.copy_(getattr(reference, f"bias_ih_l{layer}"))
            weights.bias_hh.copy_(getattr(reference, f"bias_hh_l{layer}"))
    ids = torch.randint(0, config.vocab_size, (2, 9))
    with torch.no_grad():
        hidden, _ = reference(torch.nn.functional.embedding(ids, model.model.embeddings.weight))
        expected = hidden @ model.lm_head.weight.T + model.lm_head_bias
        assert torch.allclose(model(ids).logits, expected, atol=1e-6)


def test_binarized_forward_uses_scaled_signs(tiny_config):
    config = tiny_config(float_storage_dtype="float32")
    model = SoftBinLSTMForCausalLM(config).eval()
    for layer in model.model.lstm:
        weight = layer.weight_hh.weight
        expected = weight.abs().mean(dim=1, keepdim=True) * torch.where(weight >= 0, 1.0, -1.0)
        assert torch.equal(layer.weight_hh.matrix(), expected)


def test_loss_is_shifted_cross_entropy_ignoring_minus_100(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config()).eval()
    ids = torch.randint(0, 40, (2, 6))
    labels = ids.clone()
    labels[0, 3] = -100
    out = model(ids, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, 40)
    targets = labels[:, 1:].reshape(-1)
    keep = targets != -100
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(logits[keep], targets[keep]))


def test_training_step_reaches_latent_weights_scales_and_biases(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config(learnable_scale=True)).train()
    ids = torch.randint(0, 40, (3, 8))
    model(ids, labels=ids).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_carried_state_equals_one_pass(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config()).eval()
    ids = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        whole = model(ids).logits
        first = model(ids[:, :5])
        second = model(ids[:, 5:], cache=first.cache)
    assert torch.allclose(torch.cat([first.logits, second.logits], dim=1), whole, atol=1e-6)


@pytest.mark.parametrize("kind", ["float", "binary master", "packed, unpacked"])
def test_single_steps_run_explicit_gate_products_equal_to_the_fused_kernel(tiny_config, tmp_path, monkeypatch, kind):
    model = train_a_little(SoftBinLSTMForCausalLM(tiny_config(binarize=kind != "float")))
    if kind == "packed, unpacked":
        model.save_pretrained(tmp_path)
        model = SoftBinLSTMForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 40, (3, 6), generator=torch.Generator().manual_seed(0))
    fused_calls = []
    real_lstm = modeling_softbin_lstm._VF.lstm
    monkeypatch.setattr(modeling_softbin_lstm._VF, "lstm", lambda *args: fused_calls.append(1) or real_lstm(*args))

    def step_by_step():
        state, logits, layers = None, [], []
        with torch.no_grad():
            for position in range(ids.shape[1]):
                output = model(ids[:, position:position + 1], cache=state, output_hidden_states=True)
                state, logits, layers = output.cache, logits + [output.logits], layers + [output.hidden_states]
        return torch.cat(logits, dim=1), state, [torch.cat(outputs, dim=1) for outputs in zip(*layers)]

    with torch.no_grad():
        whole = model(ids, output_hidden_states=True)
    calls = len(fused_calls)  # the fused kernel, layer by layer to give every layer's output
    steps, state, layers = step_by_step()
    assert len(fused_calls) == calls  # no step went through the fused kernel
    assert torch.allclose(steps, whole.logits, atol=1e-5)
    assert torch.allclose(state.h, whole.cache.h, atol=1e-5) and torch.allclose(state.c, whole.cache.c, atol=1e-5)
    assert len(layers) == len(whole.hidden_states) == 3
    for mine, theirs in zip(layers, whole.hidden_states):
        assert torch.allclose(mine, theirs, atol=1e-5)
    model.model.fused_single_steps = True  # the path before explicit steps, for comparisons
    fused_steps, _, _ = step_by_step()
    assert len(fused_calls) == calls + ids.shape[1] * calls  # each step as many kernel calls as the whole pass
    assert torch.allclose(fused_steps, steps, atol=1e-5)


def test_padding_on_either_side_does_not_change_the_scores(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config()).eval()
    short, long = torch.tensor([5, 6, 7]), torch.tensor([3, 4, 5, 6, 7, 8])
    with torch.no_grad():
        alone = model(short[None]).logits[0]
        long_alone = model(long[None]).logits[0]
        for side in ("right", "left"):
            pad = torch.full((3,), 2)
            row = torch.cat([short, pad]) if side == "right" else torch.cat([pad, short])
            mask = torch.tensor([[1, 1, 1, 0, 0, 0]]) if side == "right" else torch.tensor([[0, 0, 0, 1, 1, 1]])
            batch = torch.stack([row, long])
            out = model(batch, attention_mask=torch.cat([mask, torch.ones(1, 6, dtype=torch.long)]))
            picked = out.logits[0, :3] if side == "right" else out.logits[0, 3:]
            assert torch.allclose(picked, alone, atol=1e-5)
            assert torch.allclose(out.logits[1], long_alone, atol=1e-5)
            assert torch.allclose(out.cache.h[:, 0], model(short[None]).cache.h[:, 0], atol=1e-5)


@pytest.mark.parametrize(
    "ids, message",
    [
        (torch.zeros(1, 0, dtype=torch.long), "empty"),
        (torch.tensor([[1, 40]]), "40"),
        (torch.tensor([[-1, 2]]), "-1"),
        (torch.tensor([1, 2]), "shape"),
    ],
)
def test_bad_input_ids_raise_a_clear_error(tiny_config, ids, message):
    model = SoftBinLSTMForCausalLM(tiny_config())
    with pytest.raises(ValueError, match=message):
        model(ids)


class StepRecorder:
    def __init__(self, model):
        self.lengths = []
        model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.lengths.append(ids.shape[1])


def test_greedy_generation_carries_state_and_matches_full_rerun(tiny_config):
    torch.manual_seed(1)
    model = SoftBinLSTMForCausalLM(tiny_config(eos_token_id=None, bos_token_id=None)).eval()
    prompt = torch.tensor([[4, 9, 13, 3]])
    recorder = StepRecorder(model)
    generated = model.generate(prompt, max_new_tokens=8, do_sample=False)
    assert generated.shape == (1, 12)
    assert recorder.lengths == [4] + [1] * 7
    sequence = prompt
    with torch.no_grad():
        for _ in range(8):
            next_id = model(sequence).logits[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_id], dim=1)
    assert torch.equal(generated, sequence)


def test_beam_search_and_sampling_generate(tiny_config):
    torch.manual_seed(2)
    model = SoftBinLSTMForCausalLM(tiny_config(eos_token_id=None, bos_token_id=None)).eval()
    prompt = torch.tensor([[4, 9, 13], [7, 8, 3]])
    beams = model.generate(prompt, max_new_tokens=6, num_beams=4, num_return_sequences=2, do_sample=False,
                           output_scores=True, return_dict_in_generate=True)
    assert beams.sequences.shape == (4, 9)
    # The best beam's score equals the log-probability of its continuation computed from scratch.
    best = beams.sequences[0:1]
    with torch.no_grad():
        logprobs = model(best).logits.log_softmax(-1)[0, 2:-1].gather(-1, best[0, 3:, None]).sum()
    assert torch.allclose(beams.sequences_scores[0] * 6, logprobs, atol=1e-4)
    sampled = model.generate(prompt, max_new_tokens=5, do_sample=True, top_k=5)
    assert sampled.shape == (2, 8)


def test_left_padded_batch_generation_matches_single_prompts(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config(eos_token_id=None, bos_token_id=None, pad_token_id=2)).eval()
    short, long = [5, 6], [9, 10, 11, 12]
    batch = torch.tensor([[2, 2] + short, long])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    together = model.generate(batch, attention_mask=mask, max_new_tokens=5, do_sample=False)
    alone = model.generate(torch.tensor([short]), max_new_tokens=5, do_sample=False)
    assert torch.equal(together[0, 4:], alone[0, 2:])


def test_state_is_a_plain_pair_that_can_be_passed_back(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config()).eval()
    out = model(torch.tensor([[1, 2, 3]]))
    assert isinstance(out.cache, LSTMState) and out.cache.h.shape == (2, 1, 16)
    again = model(torch.tensor([[4]]), cache=(out.cache.h, out.cache.c))
    assert again.logits.shape == (1, 1, 40)
