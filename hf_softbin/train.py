"""The training loop: one Accelerate loop for the teacher, the BLLM baseline and soft binarization with distillation.

Run it as `hf-softbin train CONFIG.yaml [--section.key value ...]`, or under any launcher:
`accelerate launch -m hf_softbin.train CONFIG.yaml`, `torchrun --nproc_per_node 2 -m hf_softbin.train CONFIG.yaml`.

Data follow the LSTM LM convention: the token stream is cut into `batch_size` parallel streams (each process its
own contiguous share), trained with truncated BPTT while the LSTM state is carried from segment to segment.
"""

import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

from .binarize import register_latent_clipping
from .configuration_softbin import SoftBinLSTMConfig
from .data import IGNORE_INDEX, batchify, eval_streams, load_text_splits, token_stream, tokenize_splits
from .distill import check_same_vocabulary, distillation_loss, init_student_from_teacher
from .modeling_softbin import LSTMState, SoftBinLSTMForCausalLM
from .atomic import write_bytes_atomic
from .tokenization import train_word_tokenizer_from_dataset
from .training_config import RunConfig, load_run_config, parse_overrides

CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.json"
CURVE_FILE = "training_curve.png"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; a resumable checkpoint was saved."""

    def __init__(self, signal_number: int, checkpoint: str):
        super().__init__(f"interrupted by {signal.Signals(signal_number).name}: resumable checkpoint saved in {checkpoint}")
        self.signal_number = signal_number


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
        self.carried: dict[str, torch.Tensor] = {}  # per-rank LSTM states of student and teacher, stacked by rank

    def state_dict(self) -> dict:
        return {name: value for name, value in vars(self).items()}

    def evaluations_since_best(self) -> int:
        losses = [point["valid_loss"] for point in self.history]
        return len(losses) - 1 - losses.index(min(losses)) if losses else 0

    def converged(self, training) -> bool:
        """Early stopping: the last `early_stopping_patience` evaluations did not beat the best one."""
        patience = training.early_stopping_patience
        return patience > 0 and self.evaluations_since_best() >= patience

    def load_state_dict(self, state: dict):
        for name, value in state.items():
            setattr(self, name, value)


class StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks between optimizer steps."""

    def __init__(self):
        self.received: int | None = None
        self.previous = {}

    def __enter__(self):
        for number in (signal.SIGINT, signal.SIGTERM):
            self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number, frame):
        self.received = number

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def build_accelerator(config: RunConfig) -> Accelerator:
    training = config.training
    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "accelerator") and torch.accelerator.is_available())
    log_with = training.log_with
    if log_with == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            log_with = None
    return Accelerator(
        cpu=training.cpu or not has_accelerator,
        mixed_precision=training.mixed_precision,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        log_with=log_with,
        project_dir=os.path.join(config.output_dir, "logs"),
    )


def load_tokenizer(config: RunConfig, train_split):
    """The teacher's tokenizer for a distilled student, a given one, or one built on the training split."""
    data, teacher = config.data, config.distill.teacher
    if data.tokenizer is not None:
        tokenizer = AutoTokenizer.from_pretrained(data.tokenizer)
        if teacher is not None:
            check_same_vocabulary(AutoTokenizer.from_pretrained(teacher), tokenizer, teacher)
        return tokenizer
    if teacher is not None:
        return AutoTokenizer.from_pretrained(teacher)
    return train_word_tokenizer_from_dataset(train_split, data.text_column, min_count=data.min_count,
                                             max_size=data.max_vocab_size)


def prepare_streams(config: RunConfig, accelerator: Accelerator):
    data = config.data
    with accelerator.main_process_first():
        if data.name is not None:
            splits = load_text_splits(name=data.name, config=data.config, text_column=data.text_column,
                                      splits={"train": data.train_split, "validation": data.validation_split,
                                              "test": data.test_split})
        else:
            splits = load_text_splits(train_file=data.train_file, validation_file=data.validation_file,
                                      test_file=data.test_file, text_column=data.text_column)
        tokenizer = load_tokenizer(config, splits["train"])
        tokenized = tokenize_splits(splits, tokenizer, data.text_column)
    streams = {split: token_stream(dataset, tokenizer.eos_token_id) for split, dataset in tokenized.items()}
    return tokenizer, streams


def build_model(config: RunConfig, tokenizer) -> SoftBinLSTMForCausalLM:
    model_config = SoftBinLSTMConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **vars(config.model),
    )
    return SoftBinLSTMForCausalLM(model_config)


def load_teacher(config: RunConfig, student: SoftBinLSTMForCausalLM, device):
    path = config.distill.teacher
    teacher = AutoModelForCausalLM.from_pretrained(path)
    if teacher.config.vocab_size != student.config.vocab_size:
        raise ValueError(f"teacher {path} has a vocabulary of {teacher.config.vocab_size} words, the student "
                         f"{student.config.vocab_size}: they must share one vocabulary")
    if config.distill.init_from_teacher:
        init_student_from_teacher(student, teacher)
    teacher.requires_grad_(False)
    return teacher.eval().to(device)


def build_optimizer(config: RunConfig, model):
    training = config.training
    if training.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)


def build_schedule(config: RunConfig, optimizer, total_steps: int):
    """A per-step schedule (cosine, linear, constant) or the classic plateau decay, stepped after evaluations."""
    training = config.training
    if training.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=training.plateau_factor,
                                                          patience=training.plateau_patience)
    name = "constant_with_warmup" if training.schedule == "constant" else training.schedule
    return get_scheduler(name, optimizer, num_warmup_steps=training.warmup_steps, num_training_steps=total_steps)


@torch.no_grad()
def evaluate(model, stream: torch.Tensor, accelerator: Accelerator, batch_size: int, bptt: int) -> tuple[float, int]:
    """Mean negative log-likelihood over every token of `stream`, state carried within each row.

    Each process scores its own rows; the sums are added across processes, so the result equals one process's.
    """
    was_training = model.training
    model.eval()
    inputs, targets = eval_streams(stream, batch_size, accelerator.process_index, accelerator.num_processes)
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    state = None
    for start in range(0, inputs.shape[1] if len(inputs) else 0, bptt):
        x = inputs[:, start : start + bptt].to(accelerator.device)
        y = targets[:, start : start + bptt].to(accelerator.device)
        with accelerator.autocast():
            output = model(input_ids=x, cache=state)
        state = output.cache
        logits = output.logits.float()
        totals[0] += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE_INDEX,
                                     reduction="sum").double()
        totals[1] += (y != IGNORE_INDEX).sum()
    totals = accelerator.reduce(totals, reduction="sum")
    model.train(was_training)
    return (totals[0] / totals[1]).item(), int(totals[1].item())


def weights_fingerprint(model) -> int:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return int(digest.hexdigest()[:15], 16)


def replicas_identical(model, accelerator: Accelerator) -> bool:
    fingerprints = accelerator.gather(torch.tensor([weights_fingerprint(model)], device=accelerator.device))
    return bool((fingerprints == fingerprints[0]).all())


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


def plot_curve(history: list[dict], path: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([point["step"] for point in history], [point["valid_ppl"] for point in history], marker="o")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("validation perplexity")
    axis.set_yscale("log")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    staging = path + ".tmp.png"
    figure.savefig(staging, dpi=100)
    plt.close(figure)
    os.replace(staging, path)


def file_size(path: str) -> int:
    return os.path.getsize(os.path.join(path, "model.safetensors"))


def segment_loss(model, teacher, x, y, state, teacher_state, config: RunConfig, accelerator: Accelerator):
    """Loss of one BPTT segment (cross-entropy, or the distillation loss with a teacher) and the carried states."""
    output = model(input_ids=x, cache=state)
    state = output.cache.detach()
    if teacher is None:
        loss = F.cross_entropy(output.logits.reshape(-1, output.logits.shape[-1]).float(), y.reshape(-1))
        return loss, loss, state, None
    with torch.no_grad(), accelerator.autocast():
        teacher_output = teacher(input_ids=x, cache=teacher_state)
    loss, ce = distillation_loss(output.logits, teacher_output.logits, y, config.distill.kd_lambda,
                                 config.distill.temperature)
    return loss, ce, state, teacher_output.cache


def train(config: RunConfig) -> dict:
    """Train as `config` says and leave a run directory; returns the metrics written to metrics.json."""
    accelerator = build_accelerator(config)
    set_seed(config.training.seed)
    training = config.training
    os.makedirs(config.output_dir, exist_ok=True)
    resume = config.resume_from_checkpoint
    if resume == "latest":
        resume = os.path.join(config.output_dir, CHECKPOINT_DIR)
    if resume is not None and not os.path.isdir(resume):
        raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint directory at {resume}")

    tokenizer, streams = prepare_streams(config, accelerator)
    for split in ("train", "validation"):
        if split not in streams:
            raise ValueError(f"the data need a {split} split (data.{'train' if split == 'train' else 'validation'}_file or a Hub split)")
    model = build_model(config, tokenizer)
    teacher = load_teacher(config, model, accelerator.device) if config.distill.teacher else None
    train_rows = batchify(streams["train"], training.batch_size, accelerator.process_index, accelerator.num_processes)
    segments = range(0, train_rows.shape[1] - 1, training.bptt)
    steps_per_epoch = math.ceil(len(segments) / training.gradient_accumulation_steps)
    total_steps = training.max_steps or steps_per_epoch * training.max_epochs

    optimizer = build_optimizer(config, model)
    if model.config.is_binarized:
        register_latent_clipping(optimizer, model)
    schedule = build_schedule(config, optimizer, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    progress = Progress()
    accelerator.register_for_checkpointing(schedule, progress)
    if resume is not None:
        accelerator.load_state(resume)
        accelerator.print(f"resumed from {resume} at epoch {progress.epoch}, step {progress.step}")
    accelerator.init_trackers("hf-softbin", config=_flat_hparams(config))
    raw_model = accelerator.unwrap_model(model)
    eval_every = training.eval_every or steps_per_epoch

    def run_evaluation():
        loss, _ = evaluate(raw_model, streams["validation"], accelerator, training.eval_batch_size, training.bptt)
        point = {"step": progress.step, "epoch": progress.epoch + progress.segment / len(segments), "valid_loss": loss,
                 "valid_ppl": math.exp(loss), "lr": optimizer.param_groups[0]["lr"]}
        progress.history.append(point)
        if loss < progress.best_valid_loss:
            progress.best_valid_loss = loss
            progress.best_weights = {name: tensor.detach().cpu().clone() for name, tensor in raw_model.state_dict().items()}
        if training.schedule == "plateau":
            schedule.step(loss)
        accelerator.log({"valid/ppl": point["valid_ppl"], "valid/loss": loss, "lr": point["lr"]}, step=progress.step)
        accelerator.print(f"step {progress.step}: valid ppl {point['valid_ppl']:.2f} (lr {point['lr']:.3g})")
        save_checkpoint(accelerator, config.output_dir)

    bar = tqdm(total=total_steps, initial=progress.step, disable=not accelerator.is_main_process, desc="training",
               dynamic_ncols=True)
    with StopSignal() as stop:
        model.train()
        while progress.epoch < training.max_epochs and progress.step < total_steps and not progress.converged(training):
            state = unstack_state(accelerator, progress.carried.get("student", {}))
            teacher_state = unstack_state(accelerator, progress.carried.get("teacher", {}))
            while progress.segment < len(segments) and progress.step < total_steps:
                start = segments[progress.segment]
                length = min(training.bptt, train_rows.shape[1] - 1 - start)
                x = train_rows[:, start : start + length].to(accelerator.device)
                y = train_rows[:, start + 1 : start + 1 + length].to(accelerator.device)
                began = time.perf_counter()
                with accelerator.accumulate(model):
                    loss, ce, state, teacher_state = segment_loss(model, teacher, x, y, state, teacher_state,
                                                                  config, accelerator)
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(
                            f"loss became {loss.item()} at epoch {progress.epoch}, step {progress.step}: stopped; the last "
                            f"good checkpoint is {os.path.join(config.output_dir, CHECKPOINT_DIR)}. Try a lower "
                            "training.lr or a tighter training.grad_clip."
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and training.grad_clip > 0:
                        accelerator.clip_grad_norm_(model.parameters(), training.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad()
                progress.segment += 1
                progress.tokens += x.numel() * accelerator.num_processes
                progress.train_seconds += time.perf_counter() - began
                if not accelerator.sync_gradients:
                    continue
                progress.step += 1
                if training.schedule != "plateau":
                    schedule.step()
                bar.update(1)
                if progress.step % training.log_every == 0 or progress.step == 1:
                    tokens_per_second = progress.tokens / max(progress.train_seconds, 1e-9)
                    bar.set_postfix(loss=f"{ce.item():.3f}", ppl=f"{math.exp(min(ce.item(), 50)):.1f}",
                                    tok_s=f"{tokens_per_second:,.0f}")
                    accelerator.log({"train/loss": ce.item(), "train/tokens_per_second": tokens_per_second}, step=progress.step)
                    accelerator.print(f"step {progress.step}: train loss {ce.item():.4f}", file=sys.stdout, flush=True)
                if progress.step % eval_every == 0 and progress.segment < len(segments):
                    progress.carried = {"student": stack_states(accelerator, state), "teacher": stack_states(accelerator, teacher_state)}
                    run_evaluation()
                if _stop_requested(stop, accelerator):
                    progress.carried = {"student": stack_states(accelerator, state), "teacher": stack_states(accelerator, teacher_state)}
                    checkpoint = save_checkpoint(accelerator, config.output_dir)
                    bar.close()
                    accelerator.end_training()
                    raise TrainingInterrupted(stop.received or signal.SIGTERM, checkpoint)
            if progress.segment >= len(segments):
                progress.epoch += 1
                progress.segment = 0
                progress.carried = {}
                run_evaluation()
    bar.close()
    return finish(config, accelerator, model, raw_model, tokenizer, streams, progress)


def _stop_requested(stop: StopSignal, accelerator: Accelerator) -> bool:
    """True on every process as soon as any process received SIGINT or SIGTERM."""
    flag = torch.tensor([1 if stop.received else 0], device=accelerator.device)
    if accelerator.num_processes > 1:
        flag = accelerator.reduce(flag, reduction="sum")
    return bool(flag.item())


def finish(config, accelerator, model, raw_model, tokenizer, streams, progress) -> dict:
    """Save the training state, restore the best weights, evaluate, save model, master, tokenizer, metrics, curve.

    The checkpoint is saved before the best weights are restored, so resuming it with a larger `max_epochs` continues
    the run exactly where it stopped.
    """
    save_checkpoint(accelerator, config.output_dir)
    if progress.best_weights is not None:
        raw_model.load_state_dict(progress.best_weights)
    training = config.training
    valid_loss, _ = evaluate(raw_model, streams["validation"], accelerator, training.eval_batch_size, training.bptt)
    test_loss, test_tokens = (evaluate(raw_model, streams["test"], accelerator, training.eval_batch_size, training.bptt)
                              if "test" in streams else (None, 0))
    identical = replicas_identical(raw_model, accelerator)
    metrics = None
    if accelerator.is_main_process:
        output_dir = config.output_dir
        raw_model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        if raw_model.config.is_binarized:
            master = os.path.join(output_dir, "master")
            raw_model.save_pretrained(master, packed=False)
            tokenizer.save_pretrained(master)
            compression = file_size(master) / file_size(output_dir)
        else:
            compression = 1.0
        metrics = {
            "valid_ppl": math.exp(valid_loss),
            "test_ppl": math.exp(test_loss) if test_loss is not None else None,
            "test_tokens": test_tokens,
            "compression_ratio": compression,
            "model_bytes": file_size(output_dir),
            "num_parameters": sum(parameter.numel() for parameter in raw_model.parameters()),
            "tokens_per_second": progress.tokens / max(progress.train_seconds, 1e-9),
            "train_seconds": progress.train_seconds,
            "steps": progress.step,
            "epochs": progress.epoch,
            "best_epoch": _best_epoch(progress.history),
            "stopped_early": progress.converged(training),
            "world_size": accelerator.num_processes,
            "replicas_identical": identical,
            "history": progress.history,
            "config": config.to_dict(),
        }
        write_bytes_atomic(os.path.join(output_dir, METRICS_FILE), json.dumps(metrics, indent=2).encode())
        if progress.history:
            plot_curve(progress.history, os.path.join(output_dir, CURVE_FILE), os.path.basename(os.path.abspath(output_dir)))
        accelerator.print(f"valid ppl {metrics['valid_ppl']:.2f}, test ppl {metrics['test_ppl'] or float('nan'):.2f}, "
                          f"compression {compression:.2f}x; saved to {output_dir}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def _best_epoch(history: list[dict]) -> float | None:
    return min(history, key=lambda point: point["valid_loss"])["epoch"] if history else None


def _flat_hparams(config: RunConfig) -> dict:
    flat = {}
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            for key, value in values.items():
                flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
        else:
            flat[section] = values if isinstance(values, (int, float, str, bool)) else str(values)
    return flat


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("usage: hf-softbin train CONFIG.yaml [--section.key value ...]")
        return 0 if argv else 2
    path, tokens = (None, argv) if argv[0].startswith("--") else (argv[0], argv[1:])
    try:
        config = load_run_config(path, parse_overrides(tokens))
        train(config)
    except TrainingInterrupted as stop:
        print(f"hf-softbin train: {stop}; resume with --resume_from_checkpoint latest", file=sys.stderr)
        return 128 + stop.signal_number
    except (TrainingDiverged, ValueError, FileNotFoundError) as err:
        print(f"hf-softbin train: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
