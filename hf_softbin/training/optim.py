"""How training updates the weights: the optimizer (SGD, Adam, or Bop for binary signs), the learning-rate schedule,
the moving average of the weights, and the ramp from float to binary weights."""

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import get_scheduler

from ..models.softbin_lstm.matrices import BinaryMatrix
from .recipe import RunConfig


class Bop(torch.optim.Adam):
    """Bop (Helwegen et al., NeurIPS 2019) for the latent weights of binary matrices, Adam for every other parameter.

    A Bop group keeps an exponential moving average `m` of each weight's gradient (rate `gamma`) and flips the
    weight's sign where |m| > `threshold` and `m` has the weight's sign (the loss keeps growing with it). Only signs
    change, so the scalars of those matrices must be learned (Adam trains them). The groups marked `bop` are left out
    of Adam's step.
    """

    def __init__(self, groups: list[dict], lr: float, threshold: float, gamma: float, weight_decay: float = 0.0):
        super().__init__(groups, lr=lr, weight_decay=weight_decay)
        for group in self.param_groups:
            group.setdefault("bop", False)
            group.setdefault("threshold", threshold)
            group.setdefault("gamma", gamma)

    @torch.no_grad()
    def step(self, closure=None):
        every_group = self.param_groups
        self.param_groups = [group for group in every_group if not group["bop"]]
        try:
            loss = super().step(closure)
        finally:
            self.param_groups = every_group
        for group in every_group:
            if group["bop"]:
                for weight in group["params"]:
                    if weight.grad is not None:
                        self._flip(weight, group["threshold"], group["gamma"])
        return loss

    def _flip(self, weight: torch.Tensor, threshold: float, gamma: float):
        state = self.state[weight]
        if "gradient_average" not in state:
            state["gradient_average"] = torch.zeros_like(weight)
        average = state["gradient_average"].lerp_(weight.grad, gamma)
        positive = weight >= 0  # sign(0) = +1, as the forward pass binarizes
        flip = (average.abs() > threshold) & ((average > 0) == positive)
        magnitude = weight.abs().clamp_(min=1e-6)  # a zero weight must also be able to turn negative
        weight.copy_(torch.where(flip, torch.where(positive, -magnitude, magnitude), weight))


def parameter_groups(model) -> tuple[list, list, list]:
    """(latent weights of binary matrices, their learned scalars, every other parameter)."""
    latent, scalars = [], []
    for module in model.modules():
        if isinstance(module, BinaryMatrix):
            latent.append(module.weight)
            scalars += module.learned_scalars()
    taken = {id(parameter) for parameter in latent + scalars}
    rest = [parameter for parameter in model.parameters() if id(parameter) not in taken]
    return latent, scalars, rest


def build_optimizer(config: RunConfig, model) -> torch.optim.Optimizer:
    training = config.training
    latent, scalars, rest = parameter_groups(model)
    scalar_group = {"params": scalars, "lr": training.scale_lr or training.lr}
    if training.optimizer == "bop":
        groups = [{"params": latent, "bop": True}, scalar_group, {"params": rest}]
        return Bop([group for group in groups if group["params"]], lr=training.lr, threshold=training.bop_threshold,
                   gamma=training.bop_gamma, weight_decay=training.weight_decay)
    kind = torch.optim.Adam if training.optimizer == "adam" else torch.optim.SGD
    groups = [group for group in ({"params": latent + rest}, scalar_group) if group["params"]]
    return kind(groups, lr=training.lr, weight_decay=training.weight_decay)


def build_schedule(config: RunConfig, optimizer, total_steps: int):
    """A per-step schedule (cosine, linear, constant) or the classic plateau decay, stepped after evaluations."""
    training = config.training
    if training.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=training.plateau_factor,
                                                          patience=training.plateau_patience)
    name = "constant_with_warmup" if training.schedule == "constant" else training.schedule
    return get_scheduler(name, optimizer, num_warmup_steps=training.warmup_steps, num_training_steps=total_steps)


def weight_average(config: RunConfig, model) -> AveragedModel | None:
    """An exponential moving average of every parameter and buffer (`training.ema_decay`), or None when off.

    Evaluation, early stopping and the saved model use the average: for binary matrices, the signs and scalars of
    the averaged latent weights, so late updates that flip signs back and forth count less."""
    decay = config.training.ema_decay
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


class BinarizationRamp:
    """Progressive binarization: the training forward pass of every binary matrix is `(1 - p) W + p alpha sign(W)`,
    `p` rising linearly from 0 to 1 over `steps` optimizer steps. Evaluation and saving always use the binary
    matrices (`p = 1`): the ramp only changes what the gradients see early in training."""

    def __init__(self, model, steps: int):
        self.matrices = [module for module in model.modules() if isinstance(module, BinaryMatrix)]
        self.steps = steps

    def update(self, step: int) -> float:
        progress = 1.0 if self.steps <= 0 else min(1.0, step / self.steps)
        for matrix in self.matrices:
            matrix.float_share = 1.0 - progress
        return progress
