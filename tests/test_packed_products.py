"""Products with packed matrices: the compiled kernel and the pure-torch path against each other and against the
product with the unpacked float matrix, for every stored form; and what happens when the kernel cannot be built."""

import logging

import pytest
import torch

from hf_softbin import kernels
from hf_softbin.models.softbin_lstm import packed_products
from hf_softbin.models.softbin_lstm.packed_products import pq_linear, pq_sign_linear, sign_linear
from hf_softbin.models.softbin_lstm.quantizers import pack_signs, pq_decode, unpack_signs

TOLERANCE = 1e-5  # largest error relative to the largest output


@pytest.fixture
def path(product_path, monkeypatch):
    """Both paths (conftest.product_path); with the kernel, the pure-torch one must not run at all."""
    if product_path == "kernel":
        monkeypatch.setattr(packed_products, "signs_matmul", _must_not_run)
        monkeypatch.setattr(packed_products, "_sum_tables", _must_not_run)
    return product_path


def _must_not_run(*args):
    raise AssertionError("the pure-torch path ran although the kernel was available")


def close(actual: torch.Tensor, expected: torch.Tensor):
    error = (actual.double() - expected.double()).abs().max() / expected.double().abs().max()
    assert error <= TOLERANCE, f"relative error {error:.2e}"


def random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cols", [13, 16, 67])
@pytest.mark.parametrize("batch", [1, 3, 6, 21])  # one vector; batches in chunks of 4, 8, 16 and 16 + 4
@pytest.mark.parametrize("scaling", ["row", "tensor", "column", "none"])
@pytest.mark.parametrize("bias", ["per row", "per input and row", None])
def test_sign_products_equal_the_unpacked_matrix(path, cols, batch, scaling, bias):
    rows = 37
    weight, inputs = random(rows, cols, seed=cols), random(batch, cols, seed=batch)
    bits = pack_signs(weight)
    signs = unpack_signs(bits, cols, torch.float32)
    assert torch.equal(signs, torch.where(weight >= 0, 1.0, -1.0))
    scales = {"row": dict(row_scale=random(rows, 1, seed=1).abs()), "tensor": dict(row_scale=torch.tensor([[0.3]])),
              "column": dict(col_scale=random(1, cols, seed=2).abs()), "none": {}}[scaling]
    if bias is not None:  # a bias per (input, row) comes as a slice of a wider tensor: rows apart
        bias = random(rows, seed=3) if bias == "per row" else random(batch, 2 * rows, seed=3)[:, :rows]
    matrix = signs * scales.get("row_scale", 1.0) * scales.get("col_scale", 1.0)
    expected = torch.nn.functional.linear(inputs, matrix, bias)
    close(sign_linear(inputs, bits, cols, bias=bias, **scales), expected)


def test_products_take_non_contiguous_inputs(path):
    weight, wide = random(29, 16), random(4, 32, seed=1)
    bits = pack_signs(weight)
    inputs = wide[:, ::2]  # a strided view, as a beam search's reordered state can be
    assert not inputs.is_contiguous()
    expected = 0.5 * inputs @ unpack_signs(bits, 16, torch.float32).T
    close(sign_linear(inputs, bits, 16, row_scale=torch.full((29, 1), 0.5)), expected)
    codebooks, codes = random(4, 8, 4, seed=2), torch.randint(0, 8, (29, 4), generator=torch.Generator().manual_seed(3))
    codes = codes.to(torch.uint8)
    close(pq_linear(inputs, codes, codebooks), inputs @ pq_decode(codes, codebooks).T)


@pytest.mark.parametrize("storage", ["float16", "binary"])
@pytest.mark.parametrize("batch", [1, 2, 7])
@pytest.mark.parametrize("width", [5, 12])  # sub-vector width: not a multiple of 8, and one
def test_pq_products_equal_the_decoded_matrix(path, storage, batch, width):
    subvectors, codewords, rows = 3, 16, 45
    generator = torch.Generator().manual_seed(width)
    codes = torch.randint(0, codewords, (rows, subvectors), generator=generator).to(torch.uint8)
    inputs, bias = random(batch, subvectors * width, seed=batch), random(rows, seed=7)
    if storage == "float16":
        codebooks = random(subvectors, codewords, width).half().float()
        product = pq_linear(inputs, codes, codebooks, bias)
    else:
        latent = random(subvectors * codewords, width)
        bits, scale = pack_signs(latent), latent.abs().mean(dim=1, keepdim=True)
        codebooks = (unpack_signs(bits, width, torch.float32) * scale).view(subvectors, codewords, width)
        product = pq_sign_linear(inputs, codes, bits, scale, codewords, bias)
    close(product, torch.nn.functional.linear(inputs, pq_decode(codes, codebooks), bias))


def test_a_code_past_the_codebook_gives_nan_never_another_entry(path):
    codes = torch.tensor([[0, 1], [2, 3], [3, 200]], dtype=torch.uint8)  # 200: past a codebook of 4
    inputs, codebooks = random(2, 6), random(2, 4, 3, seed=1)
    outputs = pq_linear(inputs, codes, codebooks)
    assert outputs[:, 2].isnan().all() and not outputs[:, :2].isnan().any()
    close(outputs[:, :2], inputs @ pq_decode(codes[:2], codebooks).T)


def test_the_torch_path_bounds_its_temporaries(monkeypatch):
    """Rows are gathered block by block: a small block gives the same result as one block for everything."""
    monkeypatch.setattr(packed_products, "_kernel_loaded", True)
    monkeypatch.setattr(packed_products, "_kernel", None)
    weight, inputs = random(300, 40), random(2, 40, seed=1)
    bits = pack_signs(weight)
    whole = sign_linear(inputs, bits, 40)
    monkeypatch.setattr(packed_products, "LOOKUP_BLOCK", 50)  # 10 rows a block
    seen = []
    real = torch.Tensor.long

    def spy(tensor):
        seen.append(tensor.numel())
        return real(tensor)

    close(sign_linear(inputs[:1], bits, 40), whole[:1])
    torch.testing.assert_close(sign_linear(inputs, bits, 40), whole)
    monkeypatch.setattr(torch.Tensor, "long", spy)
    sign_linear(inputs[:1], bits, 40)
    assert seen and max(seen) <= 50


def test_a_missing_compiler_falls_back_to_torch_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with caplog.at_level(logging.WARNING):
        assert kernels.load() is None
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and "no C++ compiler found ('/nonexistent/c++'" in lines[0] and "pure-torch" in lines[0]


def test_a_failed_build_falls_back_to_torch_with_one_log_line(monkeypatch, caplog, tmp_path):
    if kernels.build_problem():
        pytest.skip("no compiler here")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # a fresh cache: really build
    monkeypatch.setattr(kernels, "SOURCE", str(tmp_path / "broken.cpp"))
    (tmp_path / "broken.cpp").write_text("this is not C++\n")
    with caplog.at_level(logging.WARNING):
        assert kernels.load() is None
    failures = [record.getMessage() for record in caplog.records if "not available" in record.getMessage()]
    assert len(failures) == 1 and "the build failed" in failures[0]


def test_the_kernel_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(kernels.DISABLE_VARIABLE, "1")
    assert kernels.load() is None
