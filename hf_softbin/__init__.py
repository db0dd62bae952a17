"""hf-softbin: soft-binarized (1-bit) LSTM language models as native Hugging Face Transformers models."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .binarize import Binarizer, clip_latent_weights_, register_latent_clipping, sign_ste
from .configuration_softbin import SoftBinLSTMConfig
from .modeling_softbin import (
    LSTMState,
    PackedModelTrainingError,
    SoftBinLSTMForCausalLM,
    SoftBinLSTMModel,
    SoftBinLSTMPreTrainedModel,
)
from .pipelines import TextScoringPipeline, register_pipeline

__version__ = "0.1.0"

AutoConfig.register(SoftBinLSTMConfig.model_type, SoftBinLSTMConfig, exist_ok=True)
AutoModel.register(SoftBinLSTMConfig, SoftBinLSTMModel, exist_ok=True)
AutoModelForCausalLM.register(SoftBinLSTMConfig, SoftBinLSTMForCausalLM, exist_ok=True)

register_pipeline()  # pipeline("text-scoring", model=...)

__all__ = [
    "Binarizer",
    "LSTMState",
    "PackedModelTrainingError",
    "SoftBinLSTMConfig",
    "SoftBinLSTMForCausalLM",
    "SoftBinLSTMModel",
    "SoftBinLSTMPreTrainedModel",
    "TextScoringPipeline",
    "clip_latent_weights_",
    "register_latent_clipping",
    "sign_ste",
]
