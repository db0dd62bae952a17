import pytest
import torch

from hf_softbin.binarize import analytic_scale
from hf_softbin import Binarizer, SoftBinLSTMForCausalLM, clip_latent_weights_, register_latent_clipping, sign_ste


def test_sign_maps_zero_to_plus_one_and_is_exactly_plus_minus_one():
    weight = torch.tensor([[-0.5, 0.0, 0.3], [2.0, -0.0, -3.0]])
    signs = sign_ste(weight)
    assert torch.equal(signs, torch.tensor([[-1.0, 1.0, 1.0], [1.0, 1.0, -1.0]]))


def test_straight_through_gradient_is_cut_where_latent_weight_left_unit_interval():
    weight = torch.tensor([-1.5, -1.0, -0.2, 0.0, 0.7, 1.0, 1.01], requires_grad=True)
    sign_ste(weight).backward(torch.arange(1.0, 8.0))
    assert torch.equal(weight.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]))


def test_row_scaling_alpha_is_row_mean_of_absolute_latent_weights():
    weight = torch.tensor([[0.2, -0.4, 0.6], [-0.1, -0.1, 0.4]])
    binarizer = Binarizer("row")
    out = binarizer(weight)
    alpha = weight.abs().mean(dim=1, keepdim=True)
    assert torch.equal(out, alpha * torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]]))
    assert torch.equal(binarizer.scale(weight), alpha)


def test_tensor_scaling_uses_one_alpha_and_none_scaling_is_plus_minus_one():
    weight = torch.randn(5, 7)
    assert torch.equal(Binarizer("tensor")(weight), weight.abs().mean() * sign_ste(weight))
    plain = Binarizer("none")(weight)
    assert set(plain.unique().tolist()) <= {-1.0, 1.0}


def test_learned_scale_replaces_the_analytic_one_and_receives_gradient():
    weight = torch.randn(3, 4, requires_grad=True)
    learned = torch.full((3, 1), 0.25, requires_grad=True)
    out = Binarizer("row")(weight, learned)
    assert torch.equal(out, 0.25 * sign_ste(weight.detach()))
    out.sum().backward()
    assert torch.allclose(learned.grad.squeeze(), sign_ste(weight.detach()).sum(dim=1))


def test_float16_storage_rounds_alpha_in_the_forward_pass():
    weight = torch.full((1, 3), 0.1)
    alpha = Binarizer("row", storage_dtype=torch.float16).scale(weight)
    assert alpha.dtype == torch.float32
    assert torch.equal(alpha, torch.tensor([[0.1]]).half().float())


def test_unknown_scaling_is_rejected():
    try:
        Binarizer("column")
    except ValueError as err:
        assert "column" in str(err)
    else:
        raise AssertionError("Binarizer accepted an unknown scaling")


def test_clipping_helpers_bound_only_latent_binarized_weights(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config(binarize=["lstm"]))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(3.0)
    clip_latent_weights_(model)
    assert model.model.lstm[0].weight_ih.weight.max() == 1.0
    assert model.model.embeddings.weight.max() == 3.0  # not binarized: left alone
    assert model.model.lstm[0].bias_ih.max() == 3.0  # biases stay float and unclipped

    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    register_latent_clipping(optimizer, model)
    model.model.lstm[1].weight_hh.weight.grad = torch.full_like(model.model.lstm[1].weight_hh.weight, -5.0)
    optimizer.step()
    assert model.model.lstm[1].weight_hh.weight.max() == 1.0


@pytest.mark.parametrize("scaling, learned_shape", [("row", None), ("tensor", None), ("none", None),
                                                     ("row", (6, 1)), ("tensor", (1, 1)), ("none", (1, 9))])
def test_fused_quantizer_matches_the_composed_definition(scaling, learned_shape):
    torch.manual_seed(0)
    weight = (torch.rand(6, 9) * 2.4 - 1.2).requires_grad_(True)
    learned = torch.randn(learned_shape).requires_grad_(True) if learned_shape else None
    grad = torch.randn(6, 9)
    Binarizer(scaling)(weight, learned).backward(grad)
    fused = (weight.grad.clone(), learned.grad.clone() if learned is not None else None)
    weight.grad = None
    if learned is not None:
        learned.grad = None
    alpha = learned if learned is not None else (None if scaling == "none" else analytic_scale(weight, scaling))
    composed = sign_ste(weight) if alpha is None else alpha * sign_ste(weight)
    composed.backward(grad)
    assert torch.allclose(fused[0], weight.grad, atol=1e-6)
    if learned is not None:
        assert torch.allclose(fused[1], learned.grad, atol=1e-6)


@pytest.mark.parametrize("scaling", ["row", "tensor", "none"])
def test_fused_quantizer_maps_both_zeros_to_plus_alpha(scaling):
    weight = torch.tensor([[0.0, -0.0, -0.5, 0.25]])
    out = Binarizer(scaling)(weight)
    alpha = 1.0 if scaling == "none" else 0.1875
    assert torch.equal(out, torch.tensor([[alpha, alpha, -alpha, alpha]]))
