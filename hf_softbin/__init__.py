"""hf-softbin: soft-binarized (1-bit) and product-quantized LSTM language models as native Transformers models."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .models.softbin_lstm import (
    LSTMState,
    PackedModelTrainingError,
    SoftBinLSTMConfig,
    SoftBinLSTMForCausalLM,
    SoftBinLSTMModel,
    SoftBinLSTMPreTrainedModel,
    TextScoringPipeline,
    UnsupportedDeviceDtype,
    binarize,
    register_latent_clipping,
    register_pipeline,
    sign_ste,
)

__version__ = "0.2.0"

AutoConfig.register(SoftBinLSTMConfig.model_type, SoftBinLSTMConfig, exist_ok=True)
AutoModel.register(SoftBinLSTMConfig, SoftBinLSTMModel, exist_ok=True)
AutoModelForCausalLM.register(SoftBinLSTMConfig, SoftBinLSTMForCausalLM, exist_ok=True)

register_pipeline()  # pipeline("text-scoring", model=...)

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
    "register_latent_clipping",
    "sign_ste",
]
