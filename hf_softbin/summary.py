"""Per-layer accounting of a saved model: parameters, float32 bytes, and where the packed bytes go.

The reference is a float32 model of the same shape (every part float). A packed layer's bytes are split into sign
bits, PQ codes, PQ codebooks, scalars (alpha, BLLM gamma, codeword scales) and other floats (biases, BLLM beta), read
from exactly the tensors a packed checkpoint holds.
"""

import os
from dataclasses import dataclass, field

from safetensors.torch import save as safetensors_save

from .models.softbin_lstm import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
from .models.softbin_lstm.checkpoint import WEIGHTS_NAME
from .models.softbin_lstm.configuration_softbin_lstm import PARTS

# Which kind of storage each packed tensor name (its last component) is.
KINDS = {"bits": "sign bits", "codebook_bits": "sign bits", "codes": "codes", "codebooks": "codebooks",
         "scale": "scalars", "col_scale": "scalars", "codebook_scale": "scalars", "weight": "float weights"}
KIND_ORDER = ("sign bits", "codes", "codebooks", "scalars", "float weights", "floats")


@dataclass
class LayerRow:
    name: str
    parameters: int  # of the float32 model of the same shape
    packed: dict[str, int] = field(default_factory=dict)  # bytes by kind

    @property
    def float_bytes(self) -> int:
        return 4 * self.parameters

    @property
    def packed_bytes(self) -> int:
        return sum(self.packed.values())


@dataclass
class Summary:
    rows: list[LayerRow]
    float_file_bytes: int
    packed_file_bytes: int | None
    float_file_source: str
    packed_file_source: str | None = None

    @property
    def parameters(self) -> int:
        return sum(row.parameters for row in self.rows)

    @property
    def count_ratio(self) -> float:
        return sum(row.float_bytes for row in self.rows) / sum(row.packed_bytes for row in self.rows)

    @property
    def file_ratio(self) -> float | None:
        return self.float_file_bytes / self.packed_file_bytes if self.packed_file_bytes else None

    def bytes_by_kind(self) -> dict[str, int]:
        totals = {kind: 0 for kind in KIND_ORDER}
        for row in self.rows:
            for kind, size in row.packed.items():
                totals[kind] += size
        return totals


def float_twin(config: SoftBinLSTMConfig) -> SoftBinLSTMForCausalLM:
    """The float32 model of the same shape: what the compression is measured against."""
    values = {**config.to_dict(), "quantization": {part: "float" for part in PARTS}, "checkpoint_format": "master"}
    return SoftBinLSTMForCausalLM(SoftBinLSTMConfig.from_dict(values))


def float_file_bytes(config: SoftBinLSTMConfig) -> int:
    """The size of the float32 model of the same shape, serialized as safetensors."""
    return len(safetensors_save(float_twin(config).master_state_dict()))


def layer_rows(model: SoftBinLSTMForCausalLM) -> list[LayerRow]:
    """One row per weight matrix (with its scalars) and per float vector (biases, gamma/beta)."""
    matrices = set(model.matrices())
    rows = {}
    for name, tensor in float_twin(model.config).state_dict().items():
        layer = name.rsplit(".", 1)[0] if name.rsplit(".", 1)[0] in matrices else name
        rows.setdefault(layer, LayerRow(layer, 0)).parameters += tensor.numel()
    stored = model.packed_state_dict() if model.config.is_quantized else model.master_state_dict()
    for name, tensor in stored.items():
        prefix, last = name.rsplit(".", 1) if "." in name else ("", name)
        layer, kind = (prefix, KINDS[last]) if prefix in matrices else (name, "floats")
        row = rows.setdefault(layer, LayerRow(layer, 0))
        row.packed[kind] = row.packed.get(kind, 0) + tensor.numel() * tensor.element_size()
    return list(rows.values())


def summarize(directory: str) -> Summary:
    """Account for the model saved in `directory` (packed or master), against a float32 model of the same shape."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such model directory")
    model = SoftBinLSTMForCausalLM.from_pretrained(directory, keep_packed=True)
    weights = os.path.join(directory, WEIGHTS_NAME)
    if not model.config.is_quantized:
        return Summary(layer_rows(model), os.path.getsize(weights), None, "this checkpoint")
    if model.is_packed:
        packed_bytes, packed_source = os.path.getsize(weights), "packed model.safetensors"
    else:  # a master directory: no packed file exists yet
        packed_bytes = len(safetensors_save(model.packed_state_dict()))
        packed_source = "the packed tensors of these master weights, serialized in memory"
    reference = "a float32 checkpoint of the same shape, serialized in memory"
    return Summary(layer_rows(model), float_file_bytes(model.config), packed_bytes, reference, packed_source)


def format_summary(summary: Summary) -> str:
    kinds = [kind for kind, size in summary.bytes_by_kind().items() if size]
    header = f"{'layer':<28} {'params':>11} {'float32 bytes':>14} " + " ".join(f"{kind:>13}" for kind in kinds)
    header += f" {'packed bytes':>13}"
    lines = [header, "-" * len(header)]
    for row in summary.rows:
        cells = " ".join(f"{row.packed.get(kind, 0):>13,}" for kind in kinds)
        lines.append(f"{row.name:<28} {row.parameters:>11,} {row.float_bytes:>14,} {cells} {row.packed_bytes:>13,}")
    totals = summary.bytes_by_kind()
    total_float = sum(row.float_bytes for row in summary.rows)
    total_packed = sum(row.packed_bytes for row in summary.rows)
    lines.append("-" * len(header))
    cells = " ".join(f"{totals[kind]:>13,}" for kind in kinds)
    lines.append(f"{'total':<28} {summary.parameters:>11,} {total_float:>14,} {cells} {total_packed:>13,}")
    lines.append(f"compression from the tensors: {summary.count_ratio:.2f}x")
    if summary.file_ratio is not None:
        lines.append(
            f"compression on disk: {summary.float_file_bytes:,} bytes ({summary.float_file_source}) / "
            f"{summary.packed_file_bytes:,} bytes ({summary.packed_file_source}) = {summary.file_ratio:.2f}x"
        )
    else:
        lines.append(f"this is a full-precision checkpoint: model.safetensors is {summary.float_file_bytes:,} bytes")
    return "\n".join(lines)
