"""The soft-binarized LSTM language model: config, quantizers, matrices, modeling, checkpoint format, pipeline.

These files import only each other (relatively), torch, tqdm, safetensors and transformers, so `save_pretrained`
copies them beside a checkpoint and `trust_remote_code=True` loads it where hf_softbin is not installed.
"""

from .configuration_softbin_lstm import SoftBinLSTMConfig
from .modeling_softbin_lstm import (
    LSTMState,
    PackedModelTrainingError,
    SoftBinLSTMForCausalLM,
    SoftBinLSTMModel,
    SoftBinLSTMPreTrainedModel,
    UnsupportedDeviceDtype,
)
from .pipeline_text_scoring import TextScoringPipeline, register_pipeline
from .quantizers import binarize

__all__ = [
    "LSTMState",
    "PackedModelTrainingError",
    "SoftBinLSTMConfig",
    "SoftBinLSTMForCausalLM",
    "SoftBinLSTMModel",
    "SoftBinLSTMPreTrainedModel",
    "TextScoringPipeline",
    "UnsupportedDeviceDtype",
    "binarize",
    "register_pipeline",
]
