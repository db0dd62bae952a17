"""What a training loop does to a model around its steps: clip the latent weights of binary matrices, move PQ codes
or let them learn."""

import torch

from ..models.softbin_lstm.matrices import BinaryMatrix, PQMatrix


@torch.no_grad()
def clip_latent_weights_(model: torch.nn.Module) -> None:
    """Clip the latent weights of every binary matrix of `model` to [-1, 1] (the straight-through estimator's range)."""
    for module in model.modules():
        if isinstance(module, BinaryMatrix):
            module.clip_latent_()


def register_latent_clipping(optimizer: torch.optim.Optimizer, model: torch.nn.Module):
    """Clip the latent weights of `model` after every `optimizer.step()`; returns the hook handle."""
    return optimizer.register_step_post_hook(lambda *_: clip_latent_weights_(model))


@torch.no_grad()
def reassign_pq_codes_(model: torch.nn.Module) -> dict[str, float]:
    """Move the codes of every PQ matrix to the codewords nearest its latent rows; the fraction changed per matrix."""
    return {name: module.reassign_codes_() for name, module in model.named_modules() if isinstance(module, PQMatrix)}


def learn_pq_codes(model: torch.nn.Module, temperature: float) -> None:
    """Let every PQ matrix of `model` choose its codes in each training forward pass (0: codes move only when told)."""
    for module in model.modules():
        if isinstance(module, PQMatrix):
            module.code_temperature = temperature
