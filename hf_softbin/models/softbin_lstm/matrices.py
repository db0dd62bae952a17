"""The weight matrices of the model: one module per way of storing a matrix, all read the same way.

Every matrix answers `matrix()` (the whole effective matrix), `lookup(ids)` (some of its rows, for the embedding) and
`linear(x, bias)` (`x @ W.T + bias`, for the LSTM input projections and the output layer). In training they hold
latent float weights; loaded from a packed checkpoint they hold what the file holds (sign bits, codes, scalars) as
registered buffers, so `.to()`, `state_dict()` and `get_memory_footprint()` see exactly what is resident.

A packed matrix is either unpacked once into a non-persistent buffer (fast), or, with `keep_packed`, never rebuilt
whole: the embedding rebuilds only the looked-up rows, and products are computed from the sign bits or codes
(packed_products.py: the compiled kernel, or pure torch for a few input vectors), or, in pure torch for many input
vectors, with the matrix rebuilt block by block.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .packed_products import kernel_takes, pq_linear, pq_sign_linear, sign_linear
from .quantizers import (
    binarize,
    mean_abs_scale,
    pack_signs,
    packed_width,
    pq_assign,
    pq_decode,
    pq_straight_through,
    pq_train,
    rank_one_scales,
    round_ste,
    unpack_signs,
)

BLOCK_ELEMENTS = 1 << 19  # weights rebuilt at once (2 MiB of float32) by pure-torch keep-packed products


class WeightMatrix(nn.Module):
    """A (rows, cols) weight matrix; subclasses decide how it is stored (float, binary or PQ; master or packed)."""

    def __init__(self, rows: int, cols: int):
        super().__init__()
        self.rows, self.cols = rows, cols

    def matrix(self) -> torch.Tensor:
        raise NotImplementedError

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.matrix())

    def linear(self, inputs: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(inputs, self.matrix(), bias)

    def packed_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors a packed checkpoint stores for this matrix, in their storage precision."""
        raise NotImplementedError

    @torch.no_grad()
    def reset_parameters(self, initializer_range: float):
        """Initialize a trainable matrix: latent weights uniform in [-range, range], then whatever derives from them."""
        if not self.weight.is_meta:
            self.weight.uniform_(-initializer_range, initializer_range)
            self.fit_to_latent_()

    @torch.no_grad()
    def fit_to_latent_(self):
        """Re-derive the quantized form from the latent weights (after they were copied from a teacher)."""

    def extra_repr(self):
        return f"rows={self.rows}, cols={self.cols}"


class FloatMatrix(WeightMatrix):
    """A full-precision matrix."""

    def __init__(self, rows, cols):
        super().__init__(rows, cols)
        self.weight = nn.Parameter(torch.empty(rows, cols))

    def matrix(self):
        return self.weight

    def packed_tensors(self):
        return {"weight": self.weight.detach().float()}


def _scale_shape(rows: int, cols: int, scaling: str, gamma_axis: str) -> tuple[int, int]:
    if scaling == "tensor":
        return (1, 1)
    if scaling == "bllm" and gamma_axis == "col":
        return (1, cols)
    return (rows, 1)


class BinaryMatrix(WeightMatrix):
    """`alpha * sign(W)` over a latent float matrix `W`, trained with the straight-through estimator.

    `alpha` is mean |W| per row or per matrix (recomputed from `W`), or the learned `scale` parameter: a learned
    scalar per row or matrix (`learnable_scale`), or the BLLM gamma per output unit (rows, or columns for the
    embedding, whose units are its columns). With `row_col` scaling, a learned `col_scale` per input column
    multiplies too: `alpha[r, c] = scale[r] * col_scale[c]`. Scalars are rounded to `storage_dtype` in the forward
    pass, so the model computes exactly what a packed checkpoint reloads.

    `float_share` (set by a training schedule, 0 by default) mixes the latent weights into the training forward pass:
    `float_share * W + (1 - float_share) * alpha * sign(W)`. Inference always uses the binary matrix.
    """

    float_share = 0.0

    def __init__(self, rows, cols, *, scaling: str, learnable_scale: bool, storage_dtype: torch.dtype,
                 gamma_axis: str = "row"):
        super().__init__(rows, cols)
        self.scaling = scaling
        self.storage_dtype = storage_dtype
        self.scale_shape = _scale_shape(rows, cols, scaling, gamma_axis)
        self.weight = nn.Parameter(torch.empty(rows, cols))
        self.scale = nn.Parameter(torch.empty(self.scale_shape)) if learnable_scale or scaling == "bllm" else None
        self.col_scale = nn.Parameter(torch.empty(1, cols)) if scaling == "row_col" else None
        self._cache_key, self._cache_value = None, None

    def extra_repr(self):
        return f"rows={self.rows}, cols={self.cols}, binary, scaling={self.scaling}"

    def alpha(self) -> torch.Tensor:
        """The scalars that multiply the signs, at storage precision."""
        if self.scale is None:
            return round_ste(mean_abs_scale(self.weight, self.scaling), self.storage_dtype)
        return self._with_col_scale(round_ste(self.scale, self.storage_dtype))

    def _with_col_scale(self, row_alpha: torch.Tensor) -> torch.Tensor:
        if self.col_scale is None:
            return row_alpha
        return row_alpha * round_ste(self.col_scale, self.storage_dtype)

    def _mixed(self, latent: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
        return binary if not self.float_share else binary.lerp(latent, self.float_share)

    def learned_scalars(self) -> list[nn.Parameter]:
        """The scalars training learns (at `training.scale_lr`), not derived from the latent weights."""
        return [parameter for parameter in (self.scale, self.col_scale) if parameter is not None]

    def binary(self) -> torch.Tensor:
        """The quantized matrix, with gradients straight through to the latent weights and scalars."""
        return binarize(self.weight, self.alpha())

    def matrix(self):
        if torch.is_grad_enabled():
            return self._mixed(self.weight, self.binary())
        # Inference: binarize once and reuse until the latent weights change (in-place updates bump _version).
        key = (self.weight.data_ptr(), self.weight._version, *(scalar._version for scalar in self.learned_scalars()))
        if key != self._cache_key:
            self._cache_key, self._cache_value = key, self.binary()
        return self._cache_value

    def lookup(self, ids):
        """Rows `ids`; in training only those rows are binarized (the embedding's gradient is sparse anyway)."""
        if not torch.is_grad_enabled() or self.scaling == "tensor":
            return F.embedding(ids, self.matrix())
        flat = ids.reshape(-1)
        rows = F.embedding(flat, self.weight)
        if self.scale is None:
            alpha = mean_abs_scale(rows, "row")
        elif self.scale_shape[0] == self.rows:
            alpha = F.embedding(flat, self.scale)
        else:
            alpha = self.scale
        alpha = self._with_col_scale(round_ste(alpha, self.storage_dtype))
        return self._mixed(rows, binarize(rows, alpha)).view(*ids.shape, self.cols)

    @torch.no_grad()
    def packed_tensors(self):
        if self.col_scale is not None:
            return {"bits": pack_signs(self.weight), "scale": self.scale.to(self.storage_dtype),
                    "col_scale": self.col_scale.to(self.storage_dtype)}
        return {"bits": pack_signs(self.weight), "scale": self.alpha().to(self.storage_dtype)}

    @torch.no_grad()
    def fit_to_latent_(self):
        self.weight.clamp_(-1.0, 1.0)
        self._reset_scale()

    @torch.no_grad()
    def clip_latent_(self):
        self.weight.clamp_(-1.0, 1.0)

    @torch.no_grad()
    def _reset_scale(self):
        """Learned scalars start at mean |W| (row and column scalars at the rank-1 fit of |W|); the BLLM gamma at
        1/sqrt(fan-in) (mean |W| per column for the embedding)."""
        if self.scale is None:
            return
        if self.col_scale is not None:
            row, column = rank_one_scales(self.weight)
            self.scale.copy_(row)
            self.col_scale.copy_(column)
        elif self.scaling != "bllm":
            self.scale.copy_(mean_abs_scale(self.weight, self.scaling))
        elif self.scale_shape == (self.rows, 1):
            self.scale.fill_(self.cols ** -0.5)
        else:
            self.scale.copy_(self.weight.abs().mean(dim=0, keepdim=True))


class ResidualBinaryMatrix(BinaryMatrix):
    """A binary matrix with row scalars whose first `residual_rows` rows also binarize what the first sign plane
    leaves: `W[r] ~ a1[r] sign(W[r]) + a2[r] sign(W[r] - a1[r] sign(W[r]))`, two bits a weight for those rows.

    Meant for the output layer, the part whose binarization costs the most perplexity: in a vocabulary sorted by
    frequency (as hf-softbin builds them) its first rows are the most frequent words. Both planes read the same latent
    weights, straight through; `a2` is mean |residual| per row, or learned with `learnable_scale` (starting there).
    """

    def __init__(self, rows, cols, *, residual_rows: int, scaling: str, learnable_scale: bool,
                 storage_dtype: torch.dtype, gamma_axis: str = "row"):
        super().__init__(rows, cols, scaling=scaling, learnable_scale=learnable_scale, storage_dtype=storage_dtype,
                         gamma_axis=gamma_axis)
        self.residual_rows = residual_rows
        self.residual_scale = nn.Parameter(torch.empty(residual_rows, 1)) if learnable_scale else None

    def extra_repr(self):
        return super().extra_repr() + f", second plane on the first {self.residual_rows} rows"

    def learned_scalars(self):
        return super().learned_scalars() + ([self.residual_scale] if self.residual_scale is not None else [])

    def _residual(self, first_plane_rows: torch.Tensor) -> torch.Tensor:
        """What the first plane leaves of the first rows: the second plane's latent weights."""
        return self.weight[: self.residual_rows] - first_plane_rows.detach()

    def residual_alpha(self, residual: torch.Tensor) -> torch.Tensor:
        scale = mean_abs_scale(residual, "row") if self.residual_scale is None else self.residual_scale
        return round_ste(scale, self.storage_dtype)

    def binary(self):
        first = super().binary()
        head = first[: self.residual_rows]
        residual = self._residual(head)
        return torch.cat([head + binarize(residual, self.residual_alpha(residual)), first[self.residual_rows:]])

    lookup = WeightMatrix.lookup  # rows of the whole matrix: the second plane covers only some of them

    @torch.no_grad()
    def packed_tensors(self):
        residual = self._residual(binarize(self.weight[: self.residual_rows], self.alpha()[: self.residual_rows]))
        return {**super().packed_tensors(), "residual_bits": pack_signs(residual),
                "residual_scale": self.residual_alpha(residual).to(self.storage_dtype)}

    @torch.no_grad()
    def fit_to_latent_(self):
        super().fit_to_latent_()
        if self.residual_scale is not None:
            head = binarize(self.weight[: self.residual_rows], self.alpha()[: self.residual_rows])
            self.residual_scale.copy_(mean_abs_scale(self._residual(head), "row"))


class PQMatrix(WeightMatrix):
    """A product-quantized matrix: each row is `m` codebook indices; the codebooks (m, K, d) are trained.

    A latent float matrix learns straight through the quantization (its gradient is the decoded matrix's), so
    `reassign_codes_()` can move rows to other codewords during training. With `codebook_storage="binary"` the
    codebooks are themselves soft-binarized (sign bits and one scalar per codeword), in training as in the file.
    With `row_scale`, every decoded row is multiplied by its own learned scalar (shape-gain quantization: the codes
    quantize the row's direction).

    `code_temperature` (set by training, 0 by default) learns the codes end to end instead: every training forward
    pass gives each sub-vector of the latent rows its nearest codeword, with gradients through a softmax over the
    codewords (`pq_straight_through`).
    """

    code_temperature = 0.0

    def __init__(self, rows, cols, *, subvectors: int, codebook_size: int, codebook_storage: str,
                 storage_dtype: torch.dtype, row_scale: bool = False):
        super().__init__(rows, cols)
        self.subvectors, self.codebook_size = subvectors, codebook_size
        self.codebook_storage = codebook_storage
        self.storage_dtype = storage_dtype
        self.weight = nn.Parameter(torch.empty(rows, cols))
        self.codebooks = nn.Parameter(torch.empty(subvectors, codebook_size, cols // subvectors))
        self.row_scale = nn.Parameter(torch.ones(rows, 1)) if row_scale else None
        self.register_buffer("codes", torch.zeros(rows, subvectors, dtype=torch.uint8))

    def extra_repr(self):
        return (f"rows={self.rows}, cols={self.cols}, pq m={self.subvectors} K={self.codebook_size}, "
                f"codebooks {self.codebook_storage}" + (", row scale" if self.row_scale is not None else ""))

    def effective_codebooks(self) -> torch.Tensor:
        if self.codebook_storage == "binary":
            return binarize(self.codebooks, self.codeword_scale())
        return round_ste(self.codebooks, self.storage_dtype)

    def _decoded(self, index: slice | torch.Tensor) -> torch.Tensor:
        """Rows `index` of the effective matrix; in training, with gradients to the latent rows too."""
        training = torch.is_grad_enabled()
        if training and self.code_temperature:
            codes, decoded = pq_straight_through(self._quantized_rows(index), self.effective_codebooks(),
                                                 self.code_temperature)
            with torch.no_grad():
                self.codes[index] = codes
        else:
            decoded = pq_decode(self.codes[index], self.effective_codebooks())
        if self.row_scale is not None:
            decoded = decoded * round_ste(self.row_scale[index], self.storage_dtype)
        if not training or self.code_temperature:
            return decoded
        latent_rows = self.weight[index]
        return decoded + (latent_rows - latent_rows.detach())  # value of the codes, gradient also to the latent

    def matrix(self):
        return self._decoded(slice(None))

    def lookup(self, ids):
        return self._decoded(ids.reshape(-1)).view(*ids.shape, self.cols)

    def codeword_scale(self) -> torch.Tensor:
        """One scalar per codeword, (m, K, 1), at storage precision: the scale of binary codebooks."""
        return round_ste(mean_abs_scale(self.codebooks, "row"), self.storage_dtype)

    @torch.no_grad()
    def packed_tensors(self):
        tensors = {"codes": self.codes.clone()}
        if self.codebook_storage == "binary":
            width = self.codebooks.shape[-1]
            tensors.update(codebook_bits=pack_signs(self.codebooks.reshape(-1, width)),
                           codebook_scale=self.codeword_scale().reshape(-1, 1).to(self.storage_dtype))
        else:
            tensors["codebooks"] = self.codebooks.to(self.storage_dtype)
        if self.row_scale is not None:
            tensors["row_scale"] = self.row_scale.to(self.storage_dtype)
        return tensors

    def _quantized_rows(self, index: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        """What the codes quantize: the latent rows, or with a row scale their directions (rows of unit norm)."""
        rows = self.weight[index]
        if self.row_scale is None:
            return rows
        return rows / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)

    @torch.no_grad()
    def fit_to_latent_(self):
        """k-means codebooks in every sub-space of the latent matrix, and the codes of its rows; with a row scale,
        of the rows' directions, and every row's scalar the least-squares fit of its decoded direction to it."""
        codebooks, codes = pq_train(self._quantized_rows(), self.subvectors, self.codebook_size)
        self.codebooks.copy_(codebooks)
        self.codes.copy_(codes)
        if self.row_scale is not None:
            directions = pq_decode(self.codes, self.effective_codebooks())
            fitted = (self.weight * directions).sum(1, keepdim=True) / directions.pow(2).sum(1, keepdim=True)
            self.row_scale.copy_(fitted.nan_to_num_(0.0))

    @torch.no_grad()
    def reassign_codes_(self) -> float:
        """Move every sub-vector of the latent matrix (or of its directions) to its nearest codeword; returns the
        fraction of codes changed."""
        codes = pq_assign(self._quantized_rows(), self.effective_codebooks())
        changed = (codes != self.codes).float().mean().item()
        self.codes.copy_(codes)
        return changed


# ---- loaded from a packed checkpoint --------------------------------------------------------------------------------


class PackedMatrix(WeightMatrix):
    """A matrix as a packed checkpoint stores it: persistent buffers, rebuilt into floats by `rows_of`.

    `unpack_()` keeps the whole float matrix in a non-persistent buffer; without it (`keep_packed`) every use rebuilds
    only what it needs. Float buffers (scalars, codebooks) follow the model's dtype; bits and codes stay uint8.
    """

    # Up to this many input vectors, pure-torch products use table lookups; beyond, rebuilding blocks of the matrix
    # is faster (measured on 2x200 and 2x650 shapes). The compiled kernel takes any number.
    torch_table_max_vectors = 1

    def reset_parameters(self, initializer_range):
        """Nothing to initialize: every buffer comes from the checkpoint."""

    def rows_of(self, index: slice | torch.Tensor) -> torch.Tensor:
        """Rows `index` of the effective matrix, in the dtype of the float buffers."""
        raise NotImplementedError

    @torch.no_grad()
    def unpack_(self):
        self.register_buffer("unpacked", self.rows_of(slice(None)), persistent=False)

    def matrix(self):
        unpacked = getattr(self, "unpacked", None)
        return unpacked if unpacked is not None else self.rows_of(slice(None))

    def lookup(self, ids):
        if getattr(self, "unpacked", None) is not None:
            return F.embedding(ids, self.unpacked)
        return self.rows_of(ids.reshape(-1)).view(*ids.shape, self.cols)

    @property
    def resident_packed(self) -> bool:
        """Kept packed in memory: no unpacked float copy."""
        return getattr(self, "unpacked", None) is None

    def packed_linear(self, inputs: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """(n, cols) inputs @ W.T + bias computed from the stored form (packed_products.py), no float matrix; `bias`
        is (rows,) or (n, rows)."""
        raise NotImplementedError

    def linear(self, inputs, bias):
        if not self.resident_packed:
            return F.linear(inputs, self.unpacked, bias)
        flat = inputs.reshape(-1, self.cols)
        if flat.shape[0] <= self.torch_table_max_vectors or kernel_takes(flat):
            return self.packed_linear(flat, bias).view(*inputs.shape[:-1], self.rows)
        outputs = inputs.new_empty(*inputs.shape[:-1], self.rows)
        block = max(1, BLOCK_ELEMENTS // self.cols)
        for start in range(0, self.rows, block):
            end = min(start + block, self.rows)
            outputs[..., start:end] = F.linear(inputs, self.rows_of(slice(start, end)),
                                               None if bias is None else bias[..., start:end])
        return outputs


class PackedBinaryMatrix(PackedMatrix):
    def __init__(self, rows, cols, *, scaling: str, storage_dtype: torch.dtype, gamma_axis: str = "row", **_):
        super().__init__(rows, cols)
        self.storage_dtype = storage_dtype
        self.register_buffer("bits", torch.zeros(rows, packed_width(cols), dtype=torch.uint8))
        self.register_buffer("scale", torch.zeros(_scale_shape(rows, cols, scaling, gamma_axis)))
        self.register_buffer("col_scale", torch.zeros(1, cols) if scaling == "row_col" else None)

    def extra_repr(self):
        return f"rows={self.rows}, cols={self.cols}, binary, packed"

    def rows_of(self, index):
        signs = unpack_signs(self.bits[index], self.cols, self.scale.dtype)
        scale = self.scale[index] if self.scale.shape[0] == self.rows and self.rows > 1 else self.scale
        signs = signs.mul_(scale)
        return signs if self.col_scale is None else signs.mul_(self.col_scale)

    def packed_linear(self, inputs, bias):
        if self.col_scale is not None:  # row_col: a scalar per input column and one per row
            return sign_linear(inputs, self.bits, self.cols, col_scale=self.col_scale, row_scale=self.scale, bias=bias)
        if self.scale.shape[0] == 1 and self.scale.shape[1] == self.cols and self.cols > 1:  # BLLM gamma per column
            return sign_linear(inputs, self.bits, self.cols, col_scale=self.scale, bias=bias)
        return sign_linear(inputs, self.bits, self.cols, row_scale=self.scale, bias=bias)

    def packed_tensors(self):
        tensors = {"bits": self.bits, "scale": self.scale.to(self.storage_dtype)}
        if self.col_scale is not None:
            tensors["col_scale"] = self.col_scale.to(self.storage_dtype)
        return tensors


class PackedResidualBinaryMatrix(PackedBinaryMatrix):
    """`ResidualBinaryMatrix` as a packed checkpoint stores it: the second plane's sign bits and row scalars beside
    the first's."""

    def __init__(self, rows, cols, *, residual_rows: int, scaling: str, storage_dtype: torch.dtype,
                 gamma_axis: str = "row", **_):
        super().__init__(rows, cols, scaling=scaling, storage_dtype=storage_dtype, gamma_axis=gamma_axis)
        self.residual_rows = residual_rows
        self.register_buffer("residual_bits", torch.zeros(residual_rows, packed_width(cols), dtype=torch.uint8))
        self.register_buffer("residual_scale", torch.zeros(residual_rows, 1))

    def extra_repr(self):
        return super().extra_repr() + f", second plane on the first {self.residual_rows} rows"

    def _second_plane(self, index: slice | torch.Tensor) -> torch.Tensor:
        signs = unpack_signs(self.residual_bits[index], self.cols, self.residual_scale.dtype)
        return signs.mul_(self.residual_scale[index])

    def rows_of(self, index):
        rows = super().rows_of(index)
        if isinstance(index, slice):
            start, stop, _ = index.indices(self.rows)
            end = min(stop, self.residual_rows)
            if start < end:
                rows[: end - start] += self._second_plane(slice(start, end))
            return rows
        inside = (index < self.residual_rows).nonzero().squeeze(1)
        rows[inside] += self._second_plane(index[inside])
        return rows

    def packed_linear(self, inputs, bias):
        outputs = super().packed_linear(inputs, bias)
        outputs[:, : self.residual_rows] += sign_linear(inputs, self.residual_bits, self.cols,
                                                        row_scale=self.residual_scale)
        return outputs

    def packed_tensors(self):
        return {**super().packed_tensors(), "residual_bits": self.residual_bits,
                "residual_scale": self.residual_scale.to(self.storage_dtype)}


class PackedPQMatrix(PackedMatrix):
    torch_table_max_vectors = 64  # a few codes a row: tables stay cheaper than decoding

    def __init__(self, rows, cols, *, subvectors: int, codebook_size: int, codebook_storage: str,
                 storage_dtype: torch.dtype, row_scale: bool = False):
        super().__init__(rows, cols)
        self.storage_dtype = storage_dtype
        self.codebook_storage = codebook_storage
        self.codebook_shape = (subvectors, codebook_size, cols // subvectors)
        self.register_buffer("codes", torch.zeros(rows, subvectors, dtype=torch.uint8))
        self.register_buffer("row_scale", torch.zeros(rows, 1) if row_scale else None)
        if codebook_storage == "binary":
            self.register_buffer("codebook_bits", torch.zeros(subvectors * codebook_size,
                                                              packed_width(cols // subvectors), dtype=torch.uint8))
            self.register_buffer("codebook_scale", torch.zeros(subvectors * codebook_size, 1))
        else:
            self.register_buffer("codebooks", torch.zeros(self.codebook_shape))

    def extra_repr(self):
        m, k, _ = self.codebook_shape
        return f"rows={self.rows}, cols={self.cols}, pq m={m} K={k}, packed"

    def effective_codebooks(self) -> torch.Tensor:
        if self.codebook_storage == "binary":
            signs = unpack_signs(self.codebook_bits, self.codebook_shape[-1], self.codebook_scale.dtype)
            return signs.mul_(self.codebook_scale).view(self.codebook_shape)
        return self.codebooks

    def rows_of(self, index):
        rows = pq_decode(self.codes[index], self.effective_codebooks())
        return rows if self.row_scale is None else rows.mul_(self.row_scale[index])

    def packed_linear(self, inputs, bias):
        # A row scale multiplies each output before the bias is added.
        product_bias = None if self.row_scale is not None else bias
        if self.codebook_storage == "binary":
            outputs = pq_sign_linear(inputs, self.codes, self.codebook_bits, self.codebook_scale,
                                     self.codebook_shape[1], product_bias)
        else:
            outputs = pq_linear(inputs, self.codes, self.codebooks, product_bias)
        if self.row_scale is None:
            return outputs
        outputs = outputs.mul_(self.row_scale.view(1, -1))
        return outputs if bias is None else outputs.add_(bias)

    def packed_tensors(self):
        tensors = {"codes": self.codes}
        if self.codebook_storage == "binary":
            tensors.update(codebook_bits=self.codebook_bits, codebook_scale=self.codebook_scale.to(self.storage_dtype))
        else:
            tensors["codebooks"] = self.codebooks.to(self.storage_dtype)
        if self.row_scale is not None:
            tensors["row_scale"] = self.row_scale.to(self.storage_dtype)
        return tensors
