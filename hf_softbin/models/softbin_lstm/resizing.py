"""Resizing the vocabulary of a master model (`resize_token_embeddings`): a mixin for the model classes.

This file imports only its siblings (relatively), so checkpoints carry it as remote code.
"""

import torch
from torch import nn

from .matrices import WeightMatrix


class VocabularyResizingMixin:
    """`resize_token_embeddings` for the model classes (a mixin placed before `PreTrainedModel`)."""

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True):
        """Grow or shrink the vocabulary of a master model; new rows start at the mean of the existing ones."""
        if new_num_tokens is None:
            return self.get_input_embeddings()
        if pad_to_multiple_of:
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        if self.is_packed:
            raise ValueError("resize_token_embeddings: a packed checkpoint cannot be resized (its rows are sign bits "
                             "or codes); resize the float master (OUTPUT_DIR/master) and train it")
        if "pq" in (self.config.quantization["embedding"], self.config.quantization["output"]):
            raise ValueError("resize_token_embeddings: product-quantized vocabulary matrices cannot be resized; their "
                             "codebooks were fit to the old rows")
        matrices = {id(matrix): matrix for matrix in (self.get_input_embeddings(), getattr(self, "lm_head", None))
                    if matrix is not None}
        for matrix in matrices.values():
            _resize_rows_(matrix, new_num_tokens, mean_resizing)
        if hasattr(self, "lm_head_bias"):
            _resize_vector_(self, "lm_head_bias", new_num_tokens)
        self.config.vocab_size = new_num_tokens
        return self.get_input_embeddings()


@torch.no_grad()
def _resize_rows_(matrix: WeightMatrix, rows: int, mean_resizing: bool):
    for name, parameter in list(matrix.named_parameters(recurse=False)):
        if parameter.shape[0] != matrix.rows:
            continue  # a per-column BLLM gamma or a per-tensor scalar does not grow with the vocabulary
        grown = parameter.new_empty(rows, *parameter.shape[1:])
        keep = min(rows, matrix.rows)
        grown[:keep] = parameter[:keep]
        if rows > keep:
            fill = parameter.mean(dim=0) if mean_resizing else torch.zeros_like(parameter[0])
            grown[keep:] = fill
        setattr(matrix, name, nn.Parameter(grown, requires_grad=parameter.requires_grad))
    matrix.rows = rows


@torch.no_grad()
def _resize_vector_(owner: nn.Module, name: str, size: int):
    old = getattr(owner, name)
    grown = old.new_zeros(size)
    grown[: min(size, old.shape[0])] = old[:size]
    setattr(owner, name, nn.Parameter(grown, requires_grad=old.requires_grad))
