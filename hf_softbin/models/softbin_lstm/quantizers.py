"""The quantizers, each with its forward value, its pseudo-gradient and its storage codec side by side.

Binarization (soft binarization when scaled). A binary matrix keeps a latent float copy `W` for training. The forward
pass uses `alpha * sign(W)` with sign(0) = +1; the backward pass is the straight-through estimator, zero where
|W| > 1; the optimizer clips latent weights to [-1, 1] after every step. `alpha` is computed by the caller (mean |W|
per row or per matrix, or a learned scalar) and receives its exact gradient. Storage: one bit per sign, packed row by
row, eight weights a byte, least significant bit first.

Product quantization (PQ). A matrix is cut column-wise into `m` sub-spaces; each sub-space has a codebook of `K`
codewords, and a row is stored as `m` codebook indices (one byte each). Codebooks are trained by k-means and then
learn through the gather that decodes the rows; the latent float matrix learns straight through the quantization,
so codes can be re-assigned from it during training.
"""

import torch
import torch.nn.functional as F

# The precisions a packed checkpoint may keep its floats in (`config.float_storage_dtype`).
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def signs_of(weight: torch.Tensor) -> torch.Tensor:
    """+-1 with sign(0) = +1, in two cheap passes (`+ 0.0` turns -0.0 into +0.0 for copysign)."""
    return torch.copysign(torch.ones((), dtype=weight.dtype, device=weight.device), weight + 0.0)


class ScaledSign(torch.autograd.Function):
    """`scale * sign(W)` (or `sign(W)` without a scale) with the straight-through estimator.

    One function for the whole matrix, fewer passes over it than composing a sign function with a product, which
    matters for the vocabulary-sized matrices. `scale` broadcasts against `W` (a row, column or single scalar).
    """

    @staticmethod
    def forward(ctx, weight, scale):
        ctx.save_for_backward(weight, scale)
        if scale is None:
            return signs_of(weight)
        return signs_of(weight) * scale

    @staticmethod
    def backward(ctx, grad_output):
        weight, scale = ctx.saved_tensors
        grad_weight = grad_output if scale is None else grad_output * scale
        # Latent weights are clipped after every step, so the mask is almost always all ones: test that first.
        if bool(weight.abs().max() > 1):
            grad_weight = grad_weight * (weight.abs() <= 1)
        if scale is None or not ctx.needs_input_grad[1]:
            return grad_weight, None
        return grad_weight, (grad_output * signs_of(weight)).sum_to_size(scale.shape)


def binarize(weight: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """`scale * sign(W)` in the forward pass, the straight-through estimator in the backward pass."""
    return ScaledSign.apply(weight, scale)


def mean_abs_scale(weight: torch.Tensor, granularity: str) -> torch.Tensor:
    """The least-squares best alpha for fixed signs: mean |W| over each row ("row") or the whole matrix ("tensor")."""
    if granularity == "row":
        return weight.abs().mean(dim=-1, keepdim=True)
    if granularity == "tensor":
        return weight.abs().mean().reshape((1,) * weight.dim())
    raise ValueError(f"mean_abs_scale: granularity must be 'row' or 'tensor', got {granularity!r}")


def rank_one_scales(weight: torch.Tensor, iterations: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column scalars `g` (rows, 1) and `h` (1, cols), non-negative, with `g * h` the best rank-1 fit of |W|
    (its leading singular pair, by power iteration; |W| >= 0, so both vectors are non-negative). `h` has mean 1, so
    `g` is close to the row scalars mean |W| when the columns are alike."""
    magnitude = weight.detach().abs().float()
    column = magnitude.mean(dim=0)  # a non-negative start, never orthogonal to the leading vector
    for _ in range(iterations):
        row = magnitude @ column
        column = magnitude.T @ row
        column = column / column.norm().clamp(min=1e-30)
    row = magnitude @ column  # g h^T = (|W| v) v^T with ||v|| = 1
    mean = column.mean().clamp(min=1e-30)
    return (row * mean).unsqueeze(1).to(weight.dtype), (column / mean).unsqueeze(0).to(weight.dtype)


def round_ste(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round to `dtype` precision in the forward pass, identity in the backward pass."""
    if dtype == value.dtype:
        return value
    return value + (value.to(dtype).to(value.dtype) - value).detach()


# ---- sign bits ---------------------------------------------------------------------------------------------------

_BIT_WEIGHTS = 1 << torch.arange(8, dtype=torch.uint8)  # least significant bit first


def packed_width(cols: int) -> int:
    return (cols + 7) // 8


def pack_signs(weight: torch.Tensor) -> torch.Tensor:
    """uint8 bits of `weight >= 0` (sign(0) = +1), packed along each row, on the weight's device."""
    rows, cols = weight.shape
    positive = (weight.detach() >= 0).to(torch.uint8)
    padded = torch.zeros(rows, packed_width(cols) * 8, dtype=torch.uint8, device=weight.device)
    padded[:, :cols] = positive
    octets = padded.view(rows, -1, 8) * _BIT_WEIGHTS.to(weight.device)
    return octets.sum(dim=-1, dtype=torch.uint8)


def unpack_signs(bits: torch.Tensor, cols: int, dtype: torch.dtype) -> torch.Tensor:
    """+-1 matrix of shape (rows, cols) in `dtype` from packed bits, computed on the bits' device."""
    positive = bits.unsqueeze(-1).bitwise_and(_BIT_WEIGHTS.to(bits.device)).ne(0)
    positive = positive.view(bits.shape[0], -1)[:, :cols]
    return positive.to(dtype).mul_(2).sub_(1)


# ---- product quantization --------------------------------------------------------------------------------------


def split_subspaces(matrix: torch.Tensor, subvectors: int) -> torch.Tensor:
    """(rows, m * d) -> (m, rows, d): the sub-vectors of every row, grouped by sub-space."""
    rows, width = matrix.shape
    return matrix.reshape(rows, subvectors, width // subvectors).transpose(0, 1)


def pq_decode(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Rows from their codes: (n, m) codes and (m, K, d) codebooks -> (n, m * d). Differentiable in the codebooks."""
    subspace = torch.arange(codebooks.shape[0], device=codes.device)
    return codebooks[subspace, codes.long()].reshape(codes.shape[0], -1)


def pq_assign(matrix: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """The nearest codeword of every sub-vector: (rows, m) codes, as uint8."""
    parts = split_subspaces(matrix.detach(), codebooks.shape[0])
    distances = _squared_distances(parts, codebooks.detach())
    return distances.argmin(dim=-1).transpose(0, 1).to(torch.uint8)


def pq_straight_through(matrix: torch.Tensor, codebooks: torch.Tensor,
                        temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable PQ (Chen, Li and Sun, ICML 2020): ((rows, m) codes of the nearest codewords, the decoded rows).

    Each sub-vector is decoded by a one-hot choice of codeword: in the forward pass that of the nearest codeword, in
    the backward pass a softmax over negative squared distances (divided by their mean over the codewords and by
    `temperature`). The loss reaches `matrix` and every codeword through the distances, and the chosen codewords
    also through their values.
    """
    parts = split_subspaces(matrix, codebooks.shape[0])  # (m, rows, d)
    distances = _squared_distances(parts, codebooks)  # (m, rows, K)
    nearest = distances.argmin(dim=-1)
    relative = distances / distances.mean(dim=-1, keepdim=True).clamp_min(torch.finfo(distances.dtype).tiny)
    soft = torch.softmax(-relative / temperature, dim=-1)
    choice = F.one_hot(nearest, codebooks.shape[1]).to(soft.dtype) + (soft - soft.detach())
    decoded = (choice @ codebooks).transpose(0, 1).reshape(matrix.shape[0], -1)
    return nearest.transpose(0, 1).to(torch.uint8), decoded


def _squared_distances(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """||p - c||^2 for batches of points (..., n, d) and centroids (..., k, d) -> (..., n, k)."""
    cross = points @ centroids.transpose(-1, -2)
    return points.pow(2).sum(-1, keepdim=True) - 2 * cross + centroids.pow(2).sum(-1).unsqueeze(-2)


def kmeans(points: torch.Tensor, k: int, iterations: int = 25, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding on (n, d) points; returns (k, d) centroids.

    A centroid that loses all its points moves to the point farthest from its centroid, so every codeword is used.
    """
    points = points.detach().float()
    n = points.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    first = torch.randint(n, (1,), generator=generator).item()
    centroids = points[first:first + 1]
    nearest = _squared_distances(points, centroids).squeeze(1).clamp_(min=0)
    for _ in range(1, k):
        weights = nearest if float(nearest.sum()) > 0 else torch.ones_like(nearest)
        chosen = torch.multinomial(weights, 1, generator=generator)
        centroids = torch.cat([centroids, points[chosen]])
        nearest = torch.minimum(nearest, _squared_distances(points, points[chosen]).squeeze(1).clamp_(min=0))
    for _ in range(iterations):
        distances = _squared_distances(points, centroids)
        assignment = distances.argmin(dim=1)
        counts = torch.bincount(assignment, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        updated = sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = distances.gather(1, assignment.unsqueeze(1)).squeeze(1).topk(len(empty)).indices
            updated[empty] = points[far]
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids


def pq_train(matrix: torch.Tensor, subvectors: int, codebook_size: int, iterations: int = 25,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebooks by k-means in each sub-space and the codes of every row: ((m, K, d) codebooks, (rows, m) codes)."""
    generator = torch.Generator().manual_seed(seed)
    parts = split_subspaces(matrix.detach().float().cpu(), subvectors)
    codebooks = torch.stack([kmeans(part, codebook_size, iterations, generator) for part in parts])
    codebooks = codebooks.to(device=matrix.device, dtype=matrix.dtype)
    return codebooks, pq_assign(matrix, codebooks)
