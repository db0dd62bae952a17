import pytest
import torch

from hf_softbin import SoftBinLSTMForCausalLM, register_latent_clipping
from hf_softbin.training.hooks import clip_latent_weights_
from hf_softbin.models.softbin_lstm.quantizers import (
    binarize,
    kmeans,
    mean_abs_scale,
    pack_signs,
    pq_assign,
    pq_decode,
    pq_train,
    round_ste,
    unpack_signs,
)

# ---- binarization ------------------------------------------------------------------------------------------------


def test_sign_maps_zero_to_plus_one_and_is_exactly_plus_minus_one():
    weight = torch.tensor([[-0.5, 0.0, 0.3], [2.0, -0.0, -3.0]])
    signs = binarize(weight)
    assert torch.equal(signs, torch.tensor([[-1.0, 1.0, 1.0], [1.0, 1.0, -1.0]]))


def test_straight_through_gradient_is_cut_where_latent_weight_left_unit_interval():
    weight = torch.tensor([[-1.5, -1.0, -0.2, 0.0, 0.7, 1.0, 1.01]], requires_grad=True)
    binarize(weight).backward(torch.arange(1.0, 8.0)[None])
    assert torch.equal(weight.grad, torch.tensor([[0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]]))


def test_row_scaling_alpha_is_row_mean_of_absolute_latent_weights():
    weight = torch.tensor([[0.2, -0.4, 0.6], [-0.1, -0.1, 0.4]])
    alpha = mean_abs_scale(weight, "row")
    assert torch.equal(alpha, weight.abs().mean(dim=1, keepdim=True))
    assert torch.equal(binarize(weight, alpha), alpha * torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]]))


def test_tensor_scaling_uses_one_alpha():
    weight = torch.randn(5, 7)
    assert torch.equal(binarize(weight, mean_abs_scale(weight, "tensor")), weight.abs().mean() * binarize(weight))


def test_learned_scale_receives_the_sum_of_signs_times_the_gradient():
    weight = torch.randn(3, 4, requires_grad=True)
    learned = torch.full((3, 1), 0.25, requires_grad=True)
    out = binarize(weight, learned)
    assert torch.equal(out, 0.25 * binarize(weight.detach()))
    out.sum().backward()
    assert torch.allclose(learned.grad.squeeze(), binarize(weight.detach()).sum(dim=1))


def test_float16_storage_rounds_in_the_forward_pass_and_passes_the_gradient():
    value = torch.full((1, 1), 0.1, requires_grad=True)
    rounded = round_ste(value, torch.float16)
    assert rounded.dtype == torch.float32 and torch.equal(rounded, torch.tensor([[0.1]]).half().float())
    rounded.sum().backward()
    assert value.grad.item() == 1.0


def test_unknown_granularity_is_rejected():
    with pytest.raises(ValueError, match="column"):
        mean_abs_scale(torch.ones(2, 2), "column")


@pytest.mark.parametrize("shape", [(6, 1), (1, 1), (1, 9)])
@pytest.mark.parametrize("analytic", [True, False])
def test_fused_quantizer_matches_the_composed_definition(shape, analytic):
    torch.manual_seed(0)
    weight = (torch.rand(6, 9) * 2.4 - 1.2).requires_grad_(True)
    learned = torch.rand(shape).requires_grad_(True)
    grad = torch.randn(6, 9)

    def scale():
        if not analytic:
            return learned
        return mean_abs_scale(weight, "row" if shape == (6, 1) else "tensor")

    binarize(weight, scale()).backward(grad)
    fused = (weight.grad.clone(), learned.grad.clone() if not analytic else None)
    weight.grad, learned.grad = None, None
    inside = (weight.abs() <= 1).float()
    signs = torch.where(weight >= 0, 1.0, -1.0)
    composed = scale() * (signs + (weight - weight.detach()) * inside)  # the straight-through definition
    composed.backward(grad)
    assert torch.allclose(fused[0], weight.grad, atol=1e-6)
    if not analytic:
        assert torch.allclose(fused[1], learned.grad, atol=1e-6)


def test_quantizer_maps_both_zeros_to_plus_alpha():
    weight = torch.tensor([[0.0, -0.0, -0.5, 0.25]])
    assert torch.equal(binarize(weight, mean_abs_scale(weight, "row")),
                       torch.tensor([[0.1875, 0.1875, -0.1875, 0.1875]]))


def test_sign_bits_round_trip_row_by_row_least_significant_bit_first():
    weight = torch.randn(5, 13)
    weight[0, 0] = 0.0
    bits = pack_signs(weight)
    assert bits.dtype == torch.uint8 and bits.shape == (5, 2)
    assert torch.equal(unpack_signs(bits, 13, torch.float32), torch.where(weight >= 0, 1.0, -1.0))
    assert bits[1, 0].item() == sum(1 << bit for bit in range(8) if weight[1, bit] >= 0)


def test_clipping_bounds_only_latent_binary_weights(tiny_config):
    model = SoftBinLSTMForCausalLM(tiny_config(binarize=["lstm"]))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(3.0)
    clip_latent_weights_(model)
    assert model.model.lstm[0].weight_ih.weight.max() == 1.0
    assert model.model.embeddings.weight.max() == 3.0  # not binary: left alone
    assert model.model.lstm[0].bias_ih.max() == 3.0  # biases stay float and unclipped

    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    register_latent_clipping(optimizer, model)
    model.model.lstm[1].weight_hh.weight.grad = torch.full_like(model.model.lstm[1].weight_hh.weight, -5.0)
    optimizer.step()
    assert model.model.lstm[1].weight_hh.weight.max() == 1.0


# ---- product quantization ----------------------------------------------------------------------------------------


def test_kmeans_finds_separated_clusters_and_uses_every_centroid():
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    points = centers.repeat_interleave(50, dim=0) + 0.1 * torch.randn(200, 2, generator=generator)
    centroids = kmeans(points, 4, generator=generator)
    nearest = torch.cdist(centers, centroids).min(dim=1).values
    assert nearest.max() < 0.1
    with pytest.raises(ValueError, match="at least k=8"):
        kmeans(points[:5], 8)


def test_pq_encode_decode_round_trip():
    generator = torch.Generator().manual_seed(1)
    codebooks = torch.randn(4, 16, 3, generator=generator)
    codes = torch.randint(0, 16, (30, 4), generator=generator).to(torch.uint8)
    matrix = pq_decode(codes, codebooks)
    assert matrix.shape == (30, 12)
    assert torch.equal(matrix[7, 3:6], codebooks[1, codes[7, 1].long()])
    assert torch.equal(pq_assign(matrix, codebooks), codes)  # each row's own codewords are the nearest
    trained, trained_codes = pq_train(matrix, 4, 16)
    assert torch.allclose(pq_decode(trained_codes, trained), matrix, atol=1e-5)  # 16 distinct sub-vectors, K=16


def test_codebook_gradients_match_finite_differences():
    torch.manual_seed(2)
    codebooks = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    codes = torch.randint(0, 3, (5, 2)).to(torch.uint8)
    target = torch.randn(5, 4, dtype=torch.float64)

    def loss(books):
        return ((pq_decode(codes, books) - target) ** 2).sum()

    assert torch.autograd.gradcheck(loss, (codebooks,))
    loss(codebooks).backward()
    epsilon = 1e-6
    numeric = torch.zeros_like(codebooks)
    with torch.no_grad():
        for index in range(codebooks.numel()):
            bumped = codebooks.detach().clone().view(-1)
            bumped[index] += epsilon
            numeric.view(-1)[index] = (loss(bumped.view_as(codebooks)) - loss(codebooks)) / epsilon
    assert torch.allclose(codebooks.grad, numeric, atol=1e-4)
