"""The files a training run leaves in its output directory (besides the model and tokenizer at the top)."""

METRICS_FILE = "metrics.json"  # perplexities, compression, speed, the config and the validation history
CURVE_FILE = "training_curve.png"
MASTER_DIR = "master"  # the float master weights of a quantized model, from which training can continue
CHECKPOINT_DIR = "checkpoint"  # Accelerate's resumable state
