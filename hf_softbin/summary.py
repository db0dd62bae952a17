"""Per-layer accounting of a model: parameters, float32 bytes, and where the packed bytes go; from its config alone.

Nothing but shapes is built: the float32 model of the same shape (every part float), the reference of every ratio,
and the packed model are made on the meta device. A packed layer's bytes are split into sign bits, PQ codes, PQ
codebooks, scalars (alpha, gammas, codeword scales) and other floats (biases, BLLM beta), from exactly the tensors a
packed checkpoint holds; a file's size is the size `save_pretrained` writes, to the byte (or, for a saved directory,
the size of the file it holds). A run's metrics, the model card and the benchmark all take their figures from here.
"""

import os
from dataclasses import dataclass, field

import torch

from .models.softbin_lstm import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
from .models.softbin_lstm.checkpoint import CONFIG_NAME, WEIGHTS_NAME, WeightsFile, weights_file_size
from .models.softbin_lstm.configuration_softbin_lstm import PARTS

# Which kind of storage each packed tensor name (its last component) is.
KINDS = {"bits": "sign bits", "codebook_bits": "sign bits", "codes": "codes", "codebooks": "codebooks",
         "scale": "scalars", "col_scale": "scalars", "codebook_scale": "scalars", "row_scale": "scalars",
         "residual_bits": "sign bits", "residual_scale": "scalars",
         "weight": "float weights"}
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
    float_file_bytes: int  # the float32 model.safetensors of the same shape
    packed_file_bytes: int | None  # the packed model.safetensors (None for a full-precision model)
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
    """The float32 model of the same shape: what every ratio is measured against (built on the default device; the
    summary builds it on the meta device)."""
    values = {**config.to_dict(), "quantization": {part: "float" for part in PARTS}, "output_residual_rows": 0,
              "checkpoint_format": "master"}
    return SoftBinLSTMForCausalLM(SoftBinLSTMConfig.from_dict(values))


def _saved_size(model: SoftBinLSTMForCausalLM, checkpoint_format: str) -> int:
    """The size of the model.safetensors `model.save_pretrained` writes in `checkpoint_format`."""
    tensors = model.packed_state_dict() if checkpoint_format == "packed" else model.master_state_dict()
    return weights_file_size(tensors, checkpoint_format, model.checkpoint_config(checkpoint_format).to_dict())


def summarize_config(config: SoftBinLSTMConfig) -> Summary:
    """Account for a model of this config, against the float32 model of the same shape, from shapes alone."""
    reference = "the float32 model.safetensors of the same shape, as save_pretrained writes it"
    with torch.device("meta"):
        twin = float_twin(config)
        if not config.is_quantized:
            return Summary(_layer_rows(twin, twin), _saved_size(twin, "master"), None, reference)
        packed = SoftBinLSTMForCausalLM(SoftBinLSTMConfig.from_dict({**config.to_dict(), "checkpoint_format": "packed"}))
    return Summary(_layer_rows(twin, packed), _saved_size(twin, "master"), _saved_size(packed, "packed"), reference,
                   "the packed model.safetensors, as save_pretrained writes it")


def _layer_rows(twin: SoftBinLSTMForCausalLM, model: SoftBinLSTMForCausalLM) -> list[LayerRow]:
    """One row per weight matrix (with its scalars) and per float vector (biases, gamma/beta): the parameters of the
    float32 `twin`, the bytes `model` saves."""
    matrices = set(model.matrices())
    rows = {}
    for name, tensor in twin.state_dict().items():
        layer = name.rsplit(".", 1)[0] if name.rsplit(".", 1)[0] in matrices else name
        rows.setdefault(layer, LayerRow(layer, 0)).parameters += tensor.numel()
    stored = model.packed_state_dict() if model.config.is_quantized else model.master_state_dict()
    for name, tensor in stored.items():
        prefix, last = name.rsplit(".", 1) if "." in name else ("", name)
        layer, kind = (prefix, KINDS[last]) if prefix in matrices else (name, "floats")
        row = rows.setdefault(layer, LayerRow(layer, 0))
        row.packed[kind] = row.packed.get(kind, 0) + tensor.numel() * tensor.element_size()
    return list(rows.values())


def summarize(directory: str | os.PathLike) -> Summary:
    """Account for the model saved in `directory` (packed or master): its architecture as its weights record it
    (config.json for files older than that), the size of the file it holds, the other file's as it would be saved."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such model directory")
    weights = os.path.join(directory, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{directory}: no {WEIGHTS_NAME} in this model directory")
    saved = WeightsFile(weights, verify=False).saved_config
    if saved is None and not os.path.isfile(os.path.join(directory, CONFIG_NAME)):
        raise FileNotFoundError(f"{directory}: no {CONFIG_NAME} in this model directory")
    config = SoftBinLSTMConfig.from_dict(saved) if saved else SoftBinLSTMConfig.from_pretrained(directory)
    summary = summarize_config(config)
    held = os.path.getsize(weights)
    if config.checkpoint_format == "packed":
        summary.packed_file_bytes, summary.packed_file_source = held, "packed model.safetensors"
    elif not config.is_quantized:
        summary.float_file_bytes, summary.float_file_source = held, "this model.safetensors"
    return summary


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
        lines.append(f"a full-precision model: {summary.float_file_bytes:,} bytes ({summary.float_file_source})")
    return "\n".join(lines)
