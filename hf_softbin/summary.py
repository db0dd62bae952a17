"""Per-layer parameter and byte accounting of a saved model (DESIGN 2.4)."""

import os
from dataclasses import dataclass

import torch
from safetensors.torch import save as safetensors_save

from .modeling_softbin import SAFE_WEIGHTS_NAME, STORAGE_DTYPES, QuantizedMatrix, SoftBinLSTMForCausalLM


@dataclass
class LayerRow:
    name: str
    parameters: int
    binarized: int
    float_bytes: int  # float32 bytes of all its parameters
    packed_bytes: float  # one bit per binarized weight plus every float kept


@dataclass
class Summary:
    rows: list[LayerRow]
    float_file_bytes: int
    packed_file_bytes: int | None
    float_file_source: str

    @property
    def parameters(self) -> int:
        return sum(row.parameters for row in self.rows)

    @property
    def count_ratio(self) -> float:
        return sum(row.float_bytes for row in self.rows) / sum(row.packed_bytes for row in self.rows)

    @property
    def file_ratio(self) -> float | None:
        return self.float_file_bytes / self.packed_file_bytes if self.packed_file_bytes else None


def layer_rows(model: SoftBinLSTMForCausalLM) -> list[LayerRow]:
    """One row per weight matrix (with its scalars) and per float vector (biases, gamma/beta)."""
    config = model.config
    kept_float_bytes = torch.finfo(STORAGE_DTYPES[config.float_storage_dtype]).bits // 8
    rows = []
    matrix_parts = set()
    for name, module in model.named_modules():
        if not isinstance(module, QuantizedMatrix):
            continue
        matrix_parts.update(f"{name}.{suffix}" for suffix in ("weight", "scale", "bits"))
        weights = module.rows * module.cols
        if not module.binarized:
            rows.append(LayerRow(name, weights, 0, 4 * weights, 4 * weights))
            continue
        stored_scalars = _numel(module.scale_shape) if module.has_scale_parameter or module.scaling != "none" else 0
        learned_scalars = _numel(module.scale_shape) if module.has_scale_parameter else 0
        params = weights + learned_scalars
        rows.append(LayerRow(name, params, weights, 4 * params, weights / 8 + kept_float_bytes * stored_scalars))
    for name, tensor in model.state_dict().items():
        if name in matrix_parts:
            continue
        count = tensor.numel()
        binarized_part = model._part_of(name) in config.binarize
        rows.append(LayerRow(name, count, 0, 4 * count, (kept_float_bytes if binarized_part else 4) * count))
    return rows


def _numel(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def summarize(directory: str) -> Summary:
    """Account for the model saved in `directory` (packed or master); compare with `directory/master` if present."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such model directory")
    model = SoftBinLSTMForCausalLM.from_pretrained(directory)
    weights = os.path.join(directory, SAFE_WEIGHTS_NAME)
    master = os.path.join(directory, "master", SAFE_WEIGHTS_NAME)
    if not model.is_packed:
        float_bytes, packed_bytes, source = os.path.getsize(weights), None, "this checkpoint"
    elif os.path.exists(master):
        float_bytes, packed_bytes, source = os.path.getsize(master), os.path.getsize(weights), "master/model.safetensors"
    else:
        float_bytes, packed_bytes, source = _float32_file_size(model.config), os.path.getsize(weights), "a float32 checkpoint of the same shape, serialized in memory"
    return Summary(layer_rows(model), float_bytes, packed_bytes, source)


def _float32_file_size(config) -> int:
    master_config = config.__class__.from_dict({**config.to_dict(), "checkpoint_format": "master"})
    return len(safetensors_save(SoftBinLSTMForCausalLM(master_config).master_state_dict()))


def format_summary(summary: Summary) -> str:
    header = f"{'layer':<32} {'params':>12} {'binarized':>12} {'float32 bytes':>14} {'packed bytes':>14}"
    lines = [header, "-" * len(header)]
    for row in summary.rows:
        lines.append(f"{row.name:<32} {row.parameters:>12,} {row.binarized:>12,} {row.float_bytes:>14,} {row.packed_bytes:>14,.0f}")
    total_float = sum(row.float_bytes for row in summary.rows)
    total_packed = sum(row.packed_bytes for row in summary.rows)
    binarized = sum(row.binarized for row in summary.rows)
    lines.append("-" * len(header))
    lines.append(f"{'total':<32} {summary.parameters:>12,} {binarized:>12,} {total_float:>14,} {total_packed:>14,.0f}")
    lines.append(f"compression from parameter counts: {summary.count_ratio:.2f}x")
    if summary.file_ratio is not None:
        lines.append(
            f"compression on disk: {summary.float_file_bytes:,} bytes ({summary.float_file_source}) / "
            f"{summary.packed_file_bytes:,} bytes (model.safetensors) = {summary.file_ratio:.2f}x"
        )
    else:
        lines.append(f"this is a full-precision checkpoint: model.safetensors is {summary.float_file_bytes:,} bytes")
    return "\n".join(lines)
