"""The binarization quantizer: alpha * sign(W) with a straight-through estimator (DESIGN 2.1-2.2).

A binarized matrix keeps a latent float copy `W` for training. The forward pass sees `alpha * sign(W)`;
the backward pass lets the gradient through where `|W| <= 1`. After every optimizer step the latent weights are
clipped to [-1, 1] with `clip_latent_weights_` (or automatically with `register_latent_clipping`).
"""

import torch
from torch import nn


class SignSTE(torch.autograd.Function):
    """sign(w) in {-1, +1} with sign(0) = +1; gradient passed straight through where |w| <= 1."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor) -> torch.Tensor:
        inside = weight.abs() <= 1
        ctx.save_for_backward(inside)
        return torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (inside,) = ctx.saved_tensors
        return grad_output * inside


def sign_ste(weight: torch.Tensor) -> torch.Tensor:
    return SignSTE.apply(weight)


def signs_of(weight: torch.Tensor) -> torch.Tensor:
    """+-1 with sign(0) = +1, in two cheap float passes (`+ 0.0` turns -0.0 into +0.0 for copysign)."""
    return torch.copysign(torch.ones((), dtype=weight.dtype, device=weight.device), weight + 0.0)


class ScaledSignSTE(torch.autograd.Function):
    """`alpha * sign(W)` for a whole matrix in one function: fewer passes over the matrix than composing
    `alpha * SignSTE(W)` with autograd, which matters for the vocabulary-sized output layer.

    `alpha` is `learned` (rounded to the storage precision) when given, else mean |W| over each row ("row") or the
    whole matrix ("tensor"), or absent ("none"). The backward pass is the straight-through estimator, zero where
    |W| > 1, plus the exact gradient through alpha (through mean |W|, or into the learned scalars).
    """

    @staticmethod
    def forward(ctx, weight, learned, scaling, storage_dtype):
        if learned is not None:
            alpha = learned.to(storage_dtype).to(weight.dtype)
        elif scaling == "none":
            alpha = None
        else:
            alpha = analytic_scale(weight, scaling).to(storage_dtype).to(weight.dtype)
        ctx.save_for_backward(weight, alpha)
        ctx.learned = learned is not None
        if alpha is None:
            return signs_of(weight)
        if ctx.learned:
            return signs_of(weight) * alpha  # a learned scalar may turn negative: copysign would drop that
        return torch.copysign(alpha, weight + 0.0)  # mean |W| >= 0

    @staticmethod
    def backward(ctx, grad_output):
        weight, alpha = ctx.saved_tensors
        grad_weight = grad_output if alpha is None else grad_output * alpha
        # Latent weights are clipped after every step, so the mask is almost always all ones: test that first.
        if bool(weight.abs().max() > 1):
            grad_weight = grad_weight * (weight.abs() <= 1)
        if alpha is None:
            return grad_weight, None, None, None
        signs = signs_of(weight)
        # d out / d alpha = signs, summed over the entries each alpha scales.
        reduce_dims = [dim for dim in range(2) if alpha.shape[dim] == 1]
        grad_alpha = (grad_output * signs).sum(dim=reduce_dims, keepdim=True)
        if ctx.learned:
            return grad_weight, grad_alpha, None, None
        # Analytic alpha = mean |W|: d alpha / d W = sign(W) / (entries averaged).
        averaged = weight.numel() // alpha.numel()
        return grad_weight.addcmul_(signs, grad_alpha, value=1.0 / averaged), None, None, None


def round_ste(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round to `dtype` precision in the forward pass, identity in the backward pass."""
    if dtype == value.dtype:
        return value
    return value + (value.to(dtype).to(value.dtype) - value).detach()


def analytic_scale(weight: torch.Tensor, scaling: str) -> torch.Tensor:
    """Least-squares best alpha for fixed signs: mean |W| over each row ("row") or the whole matrix ("tensor")."""
    if scaling == "row":
        return weight.abs().mean(dim=1, keepdim=True)
    if scaling == "tensor":
        return weight.abs().mean().reshape(1, 1)
    raise ValueError(f"analytic_scale: scaling must be 'row' or 'tensor', got {scaling!r}")


class Binarizer:
    """A named quantizer: `Binarizer("row")(W)` returns `alpha * sign(W)` with alpha = mean |W| per row.

    `scaling="none"` returns exactly +-1; a `scale` tensor, when given, replaces the analytic alpha (learned scalars).
    """

    def __init__(self, scaling: str = "row", storage_dtype: torch.dtype = torch.float32):
        if scaling not in ("none", "tensor", "row"):
            raise ValueError(f"Binarizer: unknown scaling {scaling!r}; choose 'none', 'tensor' or 'row'")
        self.scaling = scaling
        self.storage_dtype = storage_dtype

    def scale(self, weight: torch.Tensor, learned: torch.Tensor | None = None) -> torch.Tensor | None:
        """The alpha the forward pass multiplies the signs with, rounded to the storage precision."""
        if learned is not None:
            return round_ste(learned, self.storage_dtype)
        if self.scaling == "none":
            return None
        return round_ste(analytic_scale(weight, self.scaling), self.storage_dtype)

    def __call__(self, weight: torch.Tensor, learned: torch.Tensor | None = None) -> torch.Tensor:
        return ScaledSignSTE.apply(weight, learned, self.scaling, self.storage_dtype)

    def __repr__(self):
        return f"Binarizer(scaling={self.scaling!r})"


def latent_weights(model: nn.Module) -> list[nn.Parameter]:
    """The latent float weights of every binarized matrix in `model`."""
    return [module.weight for module in model.modules() if getattr(module, "binarized", False) and isinstance(getattr(module, "weight", None), nn.Parameter)]


@torch.no_grad()
def clip_latent_weights_(model: nn.Module, bound: float = 1.0) -> None:
    """Clip the latent weights of every binarized matrix to [-bound, bound]; call after each optimizer step."""
    for weight in latent_weights(model):
        weight.clamp_(-bound, bound)


def register_latent_clipping(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Clip latent weights automatically after every `optimizer.step()`. Returns the hook handle."""
    weights = latent_weights(model)

    def clip(*_):
        with torch.no_grad():
            for weight in weights:
                weight.clamp_(-1.0, 1.0)

    return optimizer.register_step_post_hook(clip)
