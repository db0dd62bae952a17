"""hf-softbin: soft-binarized (1-bit) and product-quantized LSTM language models as native Transformers models."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from . import kernels
from .models import softbin_lstm
from .models.softbin_lstm import *  # noqa: F403  (the model, its config, quantizers and pipeline)
from .models.softbin_lstm import SoftBinLSTMConfig, SoftBinLSTMForCausalLM, SoftBinLSTMModel, register_pipeline
from .models.softbin_lstm.packed_products import use_compiled_kernel
from .tokenization import WordTokenizer
from .training.hooks import register_latent_clipping

__version__ = "0.2.0"

AutoConfig.register(SoftBinLSTMConfig.model_type, SoftBinLSTMConfig, exist_ok=True)
AutoModel.register(SoftBinLSTMConfig, SoftBinLSTMModel, exist_ok=True)
AutoModelForCausalLM.register(SoftBinLSTMConfig, SoftBinLSTMForCausalLM, exist_ok=True)
AutoTokenizer.register(SoftBinLSTMConfig, tokenizer_class=WordTokenizer, exist_ok=True)

register_pipeline()  # pipeline("text-scoring", model=...)
use_compiled_kernel(kernels.load)  # keep-packed products: built at the first one

__all__ = [*softbin_lstm.__all__, "register_latent_clipping"]
