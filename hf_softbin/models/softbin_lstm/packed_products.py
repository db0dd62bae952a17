"""Products with packed matrices, computed from their sign bits or PQ codes without rebuilding the float matrix.

For a few input vectors at a time (decoding, beam search): each input vector gets a table of its dot products with
every pattern the stored form can hold (the 256 sign patterns of a byte of 8 columns, or every codeword of a PQ
sub-space), and each output is a sum of one table entry per byte or code of its row.

Two implementations compute the same values: a compiled kernel (hf_softbin/kernels, C++, no temporary larger than a
table per input vector), used when the installed package has registered it with `use_compiled_kernel` and the
operands are float32 on the CPU; and the pure-torch one below, used otherwise (remote code, no compiler, other dtypes
and devices), which bounds its temporaries by working through the rows in blocks.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .quantizers import split_subspaces

LOOKUP_BLOCK = 1 << 16  # table lookups of the pure-torch path held at once (int64 index and float value each)

_BYTE_PATTERNS = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1  # (256, 8): the bits of every byte value

_kernel_loader: Callable[[], object] | None = None
_kernel: object | None = None
_kernel_loaded = False


def use_compiled_kernel(loader: Callable[[], object] | None):
    """Register the function that builds or loads the compiled kernel (called once, at the first product; it returns
    the ops namespace, or None when the kernel is not available); None goes back to pure torch."""
    global _kernel_loader, _kernel, _kernel_loaded
    _kernel_loader, _kernel, _kernel_loaded = loader, None, False


def compiled_kernel():
    """The compiled kernel's ops, or None (none registered, or it could not be built)."""
    global _kernel, _kernel_loaded
    if not _kernel_loaded:
        _kernel = _kernel_loader() if _kernel_loader is not None else None
        _kernel_loaded = True
    return _kernel


def _kernel_for(*tensors: torch.Tensor | None):
    """The compiled kernel when it can take these operands (float32 on the CPU, no gradient wanted), else None."""
    for tensor in tensors:
        if tensor is None or not tensor.is_floating_point():
            continue
        wants_gradient = tensor.requires_grad and torch.is_grad_enabled()
        if tensor.dtype != torch.float32 or tensor.device.type != "cpu" or wants_gradient:
            return None
    return compiled_kernel()


def kernel_takes(*tensors: torch.Tensor | None) -> bool:
    """Whether the compiled kernel computes products with these operands (else pure torch does, slower)."""
    return _kernel_for(*tensors) is not None


def _contiguous(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.contiguous()


def _rows_contiguous(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """The kernel reads matrices row by row: each row must be contiguous, rows may be apart (a slice of a batch)."""
    return tensor if tensor is None or tensor.stride(-1) == 1 else tensor.contiguous()


# ---- the three products -------------------------------------------------------------------------------------------


def sign_linear(inputs: torch.Tensor, bits: torch.Tensor, cols: int, *, col_scale: torch.Tensor | None = None,
                row_scale: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`((inputs * col_scale) @ sign(W).T) * row_scale + bias` for (n, cols) inputs and W's packed sign bits.

    `col_scale` has one value per input column, `row_scale` one per row or a single one; both optional. `bias` has
    one value per row, or one per (input, row): (n, rows).
    """
    kernel = _kernel_for(inputs, col_scale, row_scale, bias)
    if kernel is not None:
        outputs = inputs.new_empty(inputs.shape[0], bits.shape[0])
        kernel.sign_linear(_rows_contiguous(inputs), bits.contiguous(), _contiguous(col_scale),
                           _contiguous(row_scale), _rows_contiguous(bias), outputs)
        return outputs
    if col_scale is not None:
        inputs = inputs * col_scale.reshape(-1)
    outputs = signs_matmul(inputs, bits, cols)
    if row_scale is not None:
        outputs = outputs * row_scale.reshape(1, -1)
    return outputs if bias is None else outputs + bias


def pq_linear(inputs: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """`inputs @ decoded.T + bias` for (n, cols) inputs and a PQ matrix of (rows, m) codes and (m, K, d) codebooks."""
    kernel = _kernel_for(inputs, codebooks, bias)
    if kernel is not None:
        outputs = inputs.new_empty(inputs.shape[0], codes.shape[0])
        kernel.pq_linear(_rows_contiguous(inputs), codes.contiguous(), codebooks.contiguous(), _rows_contiguous(bias),
                         outputs)
        return outputs
    outputs = pq_matmul(inputs, codes, codebooks)
    return outputs if bias is None else outputs + bias


def pq_sign_linear(inputs: torch.Tensor, codes: torch.Tensor, codebook_bits: torch.Tensor,
                   codebook_scale: torch.Tensor, codebook_size: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`pq_linear` with binary codebooks: codeword `k` of sub-space `s` is row `s * K + k` of `codebook_bits` (its
    signs) times the same row of `codebook_scale`."""
    kernel = _kernel_for(inputs, codebook_scale, bias)
    if kernel is not None:
        outputs = inputs.new_empty(inputs.shape[0], codes.shape[0])
        kernel.pq_sign_linear(_rows_contiguous(inputs), codes.contiguous(), codebook_bits.contiguous(),
                              codebook_scale.contiguous(), codebook_size, _rows_contiguous(bias), outputs)
        return outputs
    subvectors = codes.shape[1]
    width = inputs.shape[1] // subvectors
    parts = inputs.reshape(-1, subvectors, width)
    tables = torch.stack([  # (n, m, K): each sub-vector against the signed codewords of its sub-space
        signs_matmul(parts[:, s], codebook_bits[s * codebook_size:(s + 1) * codebook_size], width)
        for s in range(subvectors)], dim=1) * codebook_scale.reshape(1, subvectors, codebook_size)
    outputs = _sum_code_tables(tables, codes)
    return outputs if bias is None else outputs + bias


# ---- pure torch ---------------------------------------------------------------------------------------------------


def _sum_tables(tables: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """out[t, r] = sum_g tables[t, g, indices[r, g]]: (n, groups, size) tables, (rows, groups) uint8 indices.

    Rows are taken in blocks, so the gathered values never exceed `LOOKUP_BLOCK` a vector."""
    n, groups, size = tables.shape
    rows = indices.shape[0]
    offsets = torch.arange(groups, device=indices.device) * size
    block = max(1, LOOKUP_BLOCK // groups)
    outputs = tables.new_empty(n, rows)
    if n == 1:  # a plain gather; embedding_bag takes a slow path for one-wide rows
        flat = tables.reshape(-1)
        for start in range(0, rows, block):
            outputs[0, start:start + block] = flat[indices[start:start + block].long() + offsets].sum(dim=1)
        return outputs
    flat = tables.reshape(n, groups * size).T
    offsets = offsets.int()
    for start in range(0, rows, block):
        bags = indices[start:start + block].int() + offsets
        outputs[:, start:start + block] = F.embedding_bag(bags, flat, mode="sum").T
    return outputs


def signs_matmul(inputs: torch.Tensor, bits: torch.Tensor, cols: int) -> torch.Tensor:
    """`inputs @ signs.T` for (n, cols) inputs and packed sign bits, in pure torch.

    Each input row is cut into bytes' worth of 8 values; a table holds its dot product with all 256 bit patterns of
    a byte, so each output is a sum of one table entry per byte.
    """
    n, width = inputs.shape[0], bits.shape[1]
    padded = F.pad(inputs, (0, width * 8 - cols)).reshape(n * width, 8)
    patterns = _BYTE_PATTERNS.to(device=inputs.device, dtype=inputs.dtype)
    tables = (padded @ patterns.T).view(n, width, 256)  # inputs . bits of each pattern, byte by byte
    positive = _sum_tables(tables, bits)  # inputs . [sign > 0]
    return 2 * positive - inputs.sum(dim=1, keepdim=True)  # inputs . (2 [sign > 0] - 1)


def pq_matmul(inputs: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """`inputs @ pq_decode(codes, codebooks).T` without decoding, in pure torch: a table of each input sub-vector's
    dot products with every codeword of its sub-space, then one table entry per code."""
    tables = torch.einsum("mnd,mkd->nmk", split_subspaces(inputs, codebooks.shape[0]), codebooks)
    return _sum_code_tables(tables, codes)


def _sum_code_tables(tables: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """`_sum_tables` for PQ codes: each sub-space's table padded to 256 entries with NaN, so that a code past the
    codebook (a damaged file) gives NaN, as in the kernel, instead of another sub-space's entry."""
    return _sum_tables(F.pad(tables, (0, 256 - tables.shape[-1]), value=float("nan")), codes)
