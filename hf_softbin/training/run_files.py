"""The files a training run leaves in its output directory (besides the model and tokenizer at the top)."""

import json
import os
from pathlib import Path

METRICS_FILE = "metrics.json"  # perplexities, compression, speed, the config and the validation history
CURVE_FILE = "training_curve.png"
MASTER_DIR = "master"  # the float master weights of a quantized model, from which training can continue
CHECKPOINT_DIR = "checkpoint"  # Accelerate's resumable state


def read_metrics(run_dir: str | os.PathLike) -> dict:
    """A run directory's metrics.json, or {} when it has none; a file that is not a JSON object is an error."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return metrics
