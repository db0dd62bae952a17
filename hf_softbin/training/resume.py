"""What makes a run resumable: its progress, the carried LSTM states, checkpoints, and stopping on a signal.

A checkpoint is Accelerate's `save_state` (model, optimizer, schedule, random states) plus `Progress`, which holds
where the loop is, the best weights so far, the validation history and every process's carried LSTM state. Resuming
it continues the run exactly: the weights at the end equal those of an uninterrupted run.

A checkpoint folder is pickled Python objects (Accelerate's format): load only checkpoints you wrote yourself.
"""

import math
import os
import shutil
import signal

import torch
from accelerate import Accelerator

from ..models.softbin_lstm import LSTMState
from .run_files import CHECKPOINT_DIR


class Progress:
    """Where the loop is, saved with the Accelerate state so a resumed run continues exactly where it stopped."""

    def __init__(self):
        self.epoch = 0
        self.segment = 0  # next BPTT segment of the epoch
        self.step = 0  # optimizer steps taken
        self.tokens = 0
        self.train_seconds = 0.0
        self.best_valid_loss = math.inf
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.history: list[dict] = []
        self.carried: dict[str, dict[str, torch.Tensor]] = {}  # per-rank LSTM states of student and teacher

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict):
        for name, value in state.items():
            setattr(self, name, value)

    def record(self, point: dict, weights: dict[str, torch.Tensor]) -> None:
        """Add an evaluation to the history; keep a copy of the weights when they are the best so far."""
        self.history.append(point)
        if point["valid_loss"] < self.best_valid_loss:
            self.best_valid_loss = point["valid_loss"]
            self.best_weights = {name: tensor.detach().cpu().clone() for name, tensor in weights.items()}

    def evaluations_since_best(self) -> int:
        losses = [point["valid_loss"] for point in self.history]
        return len(losses) - 1 - losses.index(min(losses)) if losses else 0

    def converged(self, patience: int) -> bool:
        """Early stopping: the last `patience` evaluations did not beat the best one (never with patience 0)."""
        return patience > 0 and self.evaluations_since_best() >= patience

    @property
    def best_epoch(self) -> float | None:
        return min(self.history, key=lambda point: point["valid_loss"])["epoch"] if self.history else None


def resolve_resume(resume: str | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from: a path, or "latest" for OUTPUT_DIR/checkpoint; never a Hub id."""
    if resume is None:
        return None
    path = os.path.join(output_dir, CHECKPOINT_DIR) if resume == "latest" else resume
    if not os.path.isdir(path):
        raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint folder at {path} (resuming reads a local "
                                "folder written by a run of yours, never a Hub id)")
    return path


def save_checkpoint(accelerator: Accelerator, output_dir: str) -> str:
    """`accelerator.save_state` into a fresh folder, then swapped in place of OUTPUT_DIR/checkpoint."""
    final = os.path.join(output_dir, CHECKPOINT_DIR)
    staging = final + ".incoming"
    if accelerator.is_main_process and os.path.exists(staging):
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(staging)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        previous = final + ".previous"
        if os.path.exists(final):
            os.replace(final, previous)
        os.replace(staging, final)
        shutil.rmtree(previous, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def stack_states(accelerator: Accelerator, state: LSTMState | None) -> dict[str, torch.Tensor]:
    """Every process's carried LSTM state, stacked by rank (a checkpoint holds them all)."""
    if state is None:
        return {}
    return {"h": accelerator.gather(state.h.unsqueeze(0)).cpu(), "c": accelerator.gather(state.c.unsqueeze(0)).cpu()}


def unstack_state(accelerator: Accelerator, stacked: dict[str, torch.Tensor]) -> LSTMState | None:
    if not stacked:
        return None
    rank = accelerator.process_index
    return LSTMState(stacked["h"][rank].to(accelerator.device), stacked["c"][rank].to(accelerator.device))


class StopSignal:
    """SIGINT/SIGTERM set Accelerate's trigger; `requested()` is true on every process once any process got one."""

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator
        self.received: int | None = None
        self.previous = {}

    def __enter__(self):
        for number in (signal.SIGINT, signal.SIGTERM):
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame):
        self.received = number
        self.accelerator.set_trigger()

    def requested(self) -> bool:
        return self.accelerator.check_trigger()

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
