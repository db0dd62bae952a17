"""The training loop: one Accelerate loop for the teacher, the BLLM baseline and soft binarization with distillation.

Run it as `hf-softbin train CONFIG.yaml [--section.key value ...]`, under any launcher:
`accelerate launch -m hf_softbin.cli train CONFIG.yaml`, `torchrun --nproc_per_node 2 -m hf_softbin.cli train ...`.

Data follow the LSTM LM convention (docs/evaluation.md): the token stream is cut into `batch_size` parallel streams
(each process its own contiguous share), trained with truncated BPTT while the LSTM state is carried from segment to
segment. The run evaluates on validation data after every pass over the real training text's worth of steps (or every
`eval_every` steps) and at the end of each epoch (unless `eval_at_epoch_end` is false), cuts the learning rate when
validation stops improving, stops early when it has stopped improving for `early_stopping_patience` evaluations, and
ends with the best-validation weights.
"""

import hashlib
import json
import math
import os
import signal
import sys
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..atomic import write_bytes_atomic
from ..models.softbin_lstm import SoftBinLSTMForCausalLM
from ..models.softbin_lstm.checkpoint import WEIGHTS_NAME, resolve_file
from ..plotting import plot_curve
from ..summary import summarize
from ..tokenization import save_tokenizer, train_word_tokenizer_from_dataset
from .data import IGNORE_INDEX, batchify, eval_streams, get_batch, load_text_splits, oov_rate, token_stream, tokenize_splits
from .hooks import learn_pq_codes, reassign_pq_codes_, register_latent_clipping
from .distill import Teacher, check_same_vocabulary, distillation_loss, hidden_state_loss, init_student_from_teacher
from .optim import BinarizationRamp, build_optimizer, build_schedule, weight_average
from .recipe import RunConfig
from .sampled_text import cached_sample
from .resume import Progress, StopSignal, resolve_resume, save_checkpoint, stack_states, unstack_state
from .run_files import CHECKPOINT_DIR, CURVE_FILE, MASTER_DIR, METRICS_FILE


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; a resumable checkpoint was saved."""

    def __init__(self, signal_number: int, checkpoint: str):
        super().__init__(f"interrupted by {signal.Signals(signal_number).name}: resumable checkpoint saved in {checkpoint}")
        self.signal_number = signal_number


# ---- building blocks -------------------------------------------------------------------------------------------------


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


def require_teachers(config: RunConfig) -> None:
    """Every model the recipe distils from is there, checked before any data is read: a missing run directory is named
    with its recipe key (a Hub id is looked up on the Hub)."""
    if config.distill.teacher is None:
        return
    for key, path in [("teacher", config.distill.teacher), *(("ensemble", path) for path in config.distill.ensemble)]:
        try:
            resolve_file(path, WEIGHTS_NAME, {})
        except FileNotFoundError as error:
            raise FileNotFoundError(f"distill.{key}: {error} (train that float model first)") from None


def prepare_streams(config: RunConfig, accelerator: Accelerator):
    """The tokenizer and one token stream per split; a split the tokenizer mostly cannot read is an error."""
    require_teachers(config)
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
    source = data.tokenizer or config.distill.teacher or "the training split"
    for split, stream in streams.items():
        rate = oov_rate(stream, tokenizer.unk_token_id)
        accelerator.print(f"{split}: {len(stream) - 1:,} tokens, {100 * rate:.1f}% <unk> under the vocabulary of {source}")
        if rate > data.max_oov_rate:
            raise ValueError(
                f"split {split!r}: {100 * rate:.1f}% of its tokens are <unk> under the vocabulary of {source} (limit: "
                f"data.max_oov_rate={data.max_oov_rate}); that vocabulary does not fit this text (a teacher trained "
                "on other text?). Raise data.max_oov_rate to train anyway."
            )
    for split in ("train", "validation"):
        if split not in streams:
            raise ValueError(f"the data need a {split} split (data.{split}_file or a Hub split)")
    return tokenizer, streams


def teacher_paths(config: RunConfig) -> list[str]:
    return [config.distill.teacher, *config.distill.ensemble]


def load_teacher(config: RunConfig, student: SoftBinLSTMForCausalLM, tokenizer, device) -> Teacher:
    """The teacher (and its ensemble), checked against the student: one vocabulary, and for the hidden-state loss
    the same LSTM layers; the student starts from the first teacher's weights when the recipe says so."""
    models = []
    for path in teacher_paths(config):
        model = AutoModelForCausalLM.from_pretrained(path)
        if model.config.vocab_size != student.config.vocab_size:
            raise ValueError(f"teacher {path} has a vocabulary of {model.config.vocab_size} words, the student "
                             f"{student.config.vocab_size}: they must share one vocabulary")
        if path != config.distill.teacher:
            check_same_vocabulary(AutoTokenizer.from_pretrained(path), tokenizer, path)
        models.append(model)
    teacher = Teacher(models)
    if config.distill.hidden_weight:
        shapes = [(c.num_hidden_layers, c.hidden_size) for c in (teacher.first.config, student.config)]
        if shapes[0] != shapes[1]:
            raise ValueError(f"distill.hidden_weight compares LSTM layer outputs, but the teacher {config.distill.teacher} "
                             f"has {shapes[0][0]} layers of {shapes[0][1]} units and the student {shapes[1][0]} of "
                             f"{shapes[1][1]}: set distill.hidden_weight to 0 or use a teacher of the student's shape")
    if config.distill.init_from_teacher:
        init_student_from_teacher(student, teacher.first)
    return teacher.to(device)


def add_sampled_text(config: RunConfig, accelerator: Accelerator, teacher: Teacher, tokenizer,
                     train_stream: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The real training stream followed by text sampled from the teacher (`distill.sampled_text_ratio` times as
    many tokens, cached beside the teacher); and what was added, for metrics.json."""
    distill = config.distill
    num_tokens = round(distill.sampled_text_ratio * (len(train_stream) - 1))
    with accelerator.main_process_first():
        path = cached_sample(teacher, teacher_paths(config), tokenizer, num_tokens, distill.sampled_text_seed,
                             config.output_dir, progress=accelerator.is_main_process)
        sampled = token_stream(tokenize_splits(load_text_splits(train_file=path), tokenizer, "text")["train"],
                               tokenizer.eos_token_id)
    accelerator.print(f"sampled text: {len(sampled) - 1:,} tokens from the teacher ({path})")
    return torch.cat([train_stream, sampled[1:]]), {"path": path, "tokens": len(sampled) - 1}


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


def segment_loss(model, teacher: Teacher | None, x, y, state, teacher_states, config: RunConfig,
                 accelerator: Accelerator):
    """Loss of one BPTT segment (cross-entropy, or the distillation loss with a teacher), the cross-entropy alone,
    and the carried states of student and teacher."""
    distill = config.distill
    layers = teacher is not None and distill.hidden_weight > 0
    output = model(input_ids=x, cache=state, output_hidden_states=layers)
    state = output.cache.detach()
    if teacher is None:
        loss = F.cross_entropy(output.logits.reshape(-1, output.logits.shape[-1]).float(), y.reshape(-1))
        return loss, loss, state, None
    with torch.no_grad(), accelerator.autocast():
        teacher_output = teacher(x, teacher_states, layers=layers)
    loss, ce = distillation_loss(output.logits, teacher_output.logits, y, distill.kd_lambda, distill.temperature)
    if layers:
        loss = loss + distill.hidden_weight * hidden_state_loss(output.hidden_states[1:], teacher_output.layers)
    return loss, ce, state, teacher_output.states


def train_step(model, teacher: Teacher | None, batch, states, config: RunConfig, accelerator: Accelerator, optimizer):
    """One BPTT segment of training, as the loop and the benchmark take it: the loss (distilled with a teacher),
    backward, clipping and the optimizer step (after every `gradient_accumulation_steps` segments). `batch` is
    `(inputs, targets)` and `states` the carried `(student, teacher)` states; returns the loss, the cross-entropy and
    the new states. A loss that is not finite raises `TrainingDiverged` before anything is updated."""
    x, y = batch
    with accelerator.accumulate(model):
        loss, ce, state, teacher_state = segment_loss(model, teacher, x, y, *states, config, accelerator)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()}")
        accelerator.backward(loss)
        if accelerator.sync_gradients and config.training.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), config.training.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
    return loss, ce, state, teacher_state


@torch.no_grad()
def update_average(average, model):
    """One step of the moving average of the parameters; buffers (PQ codes) are copied as they are."""
    average.update_parameters(model)
    for averaged, current in zip(average.module.buffers(), model.buffers()):
        averaged.copy_(current)


def weights_fingerprint(model) -> int:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return int(digest.hexdigest()[:15], 16)


def replicas_identical(model, accelerator: Accelerator) -> bool:
    fingerprints = accelerator.gather(torch.tensor([weights_fingerprint(model)], device=accelerator.device))
    return bool((fingerprints == fingerprints[0]).all())


def file_size(directory: str) -> int:
    return os.path.getsize(os.path.join(directory, WEIGHTS_NAME))


# ---- the run -------------------------------------------------------------------------------------------------------


class TrainingRun:
    """One run of a recipe: everything is built (and checked) in the constructor, `run()` trains and saves."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.training = training = config.training
        self.accelerator = accelerator = build_accelerator(config)
        set_seed(training.seed)
        resume = resolve_resume(config.resume_from_checkpoint, config.output_dir)
        self.tokenizer, self.streams = prepare_streams(config, accelerator)
        model = SoftBinLSTMForCausalLM(config.model_config(self.tokenizer))
        self.teacher = (load_teacher(config, model, self.tokenizer, accelerator.device) if config.distill.teacher
                        else None)
        train_stream, self.sampled_text = self.streams["train"], None
        if config.distill.sampled_text_ratio:
            train_stream, self.sampled_text = add_sampled_text(config, accelerator, self.teacher, self.tokenizer,
                                                               train_stream)
        self.train_rows = self.rows_of(train_stream)
        self.segments = range(0, self.train_rows.shape[1] - 1, training.bptt)
        steps_per_epoch = self.steps_for(len(self.segments))
        # Evaluation and the binarization ramp count in passes over the real text, so that sampled text added to it
        # does not stretch the interval between evaluations; each epoch's end is evaluated as well, unless
        # `eval_at_epoch_end` is false.
        real_steps = self.steps_for(math.ceil((self.rows_of(self.streams["train"]).shape[1] - 1) / training.bptt))
        self.total_steps = training.max_steps or steps_per_epoch * training.max_epochs
        self.eval_every = training.eval_every or real_steps
        self.ramp = (BinarizationRamp(model, round(training.binarize_ramp_epochs * real_steps))
                     if training.binarize_ramp_epochs else None)
        learn_pq_codes(model, training.pq_code_temperature)
        optimizer = build_optimizer(config, model)
        register_latent_clipping(optimizer, model)
        self.schedule = build_schedule(config, optimizer, self.total_steps)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.raw_model = accelerator.unwrap_model(self.model)
        self.average = weight_average(config, self.raw_model)
        self.progress = Progress()
        accelerator.register_for_checkpointing(self.schedule, self.progress, *filter(None, [self.average]))
        if resume is not None:
            accelerator.load_state(resume)
            accelerator.print(f"resumed from {resume} at epoch {self.progress.epoch}, step {self.progress.step}")
        os.makedirs(config.output_dir, exist_ok=True)  # only now: a run that fails its checks leaves nothing behind
        accelerator.init_trackers("hf-softbin", config=_flat_hparams(config))

    def rows_of(self, stream: torch.Tensor) -> torch.Tensor:
        return batchify(stream, self.training.batch_size, self.accelerator.process_index,
                        self.accelerator.num_processes)

    def steps_for(self, segments: int) -> int:
        return math.ceil(segments / self.training.gradient_accumulation_steps)

    @property
    def evaluated_model(self):
        """The model evaluated and kept: the moving average of the weights when the recipe asks for one."""
        return self.raw_model if self.average is None else self.average.module

    def finished(self) -> bool:
        progress = self.progress
        return (progress.epoch >= self.training.max_epochs or progress.step >= self.total_steps
                or progress.converged(self.training.early_stopping_patience))

    def run(self) -> dict:
        progress, accelerator = self.progress, self.accelerator
        self.bar = tqdm(total=self.total_steps, initial=progress.step, disable=not accelerator.is_main_process,
                        desc="training", dynamic_ncols=True)
        with StopSignal(accelerator) as stop:
            self.model.train()
            while not self.finished():
                self.train_epoch(stop)
                if progress.segment >= len(self.segments):
                    progress.epoch += 1
                    progress.segment = 0
                    progress.carried = {}
                    if self.evaluates_epoch_end():
                        self.evaluate_and_checkpoint()
        self.bar.close()
        return self.finish()

    def evaluates_epoch_end(self) -> bool:
        """Every epoch's end is evaluated, or with `eval_at_epoch_end: false` only one on the `eval_every` schedule
        (the epoch's last step is evaluated here, not inside it) or one that ends the run."""
        progress, training = self.progress, self.training
        return (training.eval_at_epoch_end or progress.step % self.eval_every == 0
                or progress.epoch >= training.max_epochs or progress.step >= self.total_steps)

    def train_epoch(self, stop: StopSignal):
        """Train from the current segment to the end of the epoch (or until the step budget or a signal)."""
        progress, accelerator = self.progress, self.accelerator
        state = unstack_state(accelerator, progress.carried.get("student", {}))
        teacher_state = [unstack_state(accelerator, stacked) for stacked in progress.carried.get("teacher", [])] or None
        while progress.segment < len(self.segments) and progress.step < self.total_steps:
            state, teacher_state, stepped = self.train_segment(state, teacher_state)
            if not stepped:
                continue
            if progress.step % self.eval_every == 0 and progress.segment < len(self.segments):
                self.carry(state, teacher_state)
                self.evaluate_and_checkpoint()
                if self.finished():
                    return
            if stop.requested():
                self.carry(state, teacher_state)
                checkpoint = save_checkpoint(accelerator, self.config.output_dir)
                self.bar.close()
                accelerator.end_training()
                raise TrainingInterrupted(stop.received or signal.SIGTERM, checkpoint)
        if progress.segment < len(self.segments):  # stopped by the step budget: a resumed run continues these states
            self.carry(state, teacher_state)

    def carry(self, state, teacher_state):
        self.progress.carried = {"student": stack_states(self.accelerator, state),
                                 "teacher": [stack_states(self.accelerator, one) for one in teacher_state or []]}

    def train_segment(self, state, teacher_state):
        """One BPTT segment; returns the carried states and whether an optimizer step was taken."""
        progress, accelerator, training = self.progress, self.accelerator, self.training
        x, y = (part.to(accelerator.device)
                for part in get_batch(self.train_rows, self.segments[progress.segment], training.bptt))
        began = time.perf_counter()
        if self.ramp is not None:
            self.ramp.update(progress.step)
        try:
            _, ce, state, teacher_state = train_step(self.model, self.teacher, (x, y), (state, teacher_state),
                                                     self.config, accelerator, self.optimizer)
        except TrainingDiverged as err:
            raise TrainingDiverged(
                f"{err} at epoch {progress.epoch}, step {progress.step}: stopped; the last good checkpoint is "
                f"{os.path.join(self.config.output_dir, CHECKPOINT_DIR)}. Try a lower training.lr or a tighter "
                "training.grad_clip."
            ) from None
        progress.segment += 1
        progress.tokens += x.numel() * accelerator.num_processes
        progress.train_seconds += time.perf_counter() - began
        if not accelerator.sync_gradients:
            return state, teacher_state, False
        progress.step += 1
        if self.average is not None:
            update_average(self.average, self.raw_model)
        if training.schedule != "plateau":
            self.schedule.step()
        if training.pq_reassign_every and progress.step % training.pq_reassign_every == 0:
            changed = reassign_pq_codes_(self.raw_model)
            accelerator.log({f"pq/codes_changed/{name}": value for name, value in changed.items()}, step=progress.step)
        self.bar.update(1)
        if progress.step % training.log_every == 0 or progress.step == 1:
            tokens_per_second = progress.tokens / max(progress.train_seconds, 1e-9)
            self.bar.set_postfix(loss=f"{ce.item():.3f}", ppl=f"{math.exp(min(ce.item(), 50)):.1f}",
                                 tok_s=f"{tokens_per_second:,.0f}")
            accelerator.log({"train/loss": ce.item(), "train/tokens_per_second": tokens_per_second}, step=progress.step)
            accelerator.print(f"step {progress.step}: train loss {ce.item():.4f}", file=sys.stdout, flush=True)
        return state, teacher_state, True

    def evaluate_and_checkpoint(self):
        progress, training = self.progress, self.training
        loss, _ = evaluate(self.evaluated_model, self.streams["validation"], self.accelerator, training.eval_batch_size,
                           training.bptt)
        point = {"step": progress.step, "epoch": progress.epoch + progress.segment / len(self.segments),
                 "valid_loss": loss, "valid_ppl": math.exp(loss), "lr": self.optimizer.param_groups[0]["lr"]}
        progress.record(point, self.evaluated_model.state_dict())
        if training.schedule == "plateau":
            self.schedule.step(loss)
        self.accelerator.log({"valid/ppl": point["valid_ppl"], "valid/loss": loss, "lr": point["lr"]}, step=progress.step)
        self.accelerator.print(f"step {progress.step}: valid ppl {point['valid_ppl']:.2f} (lr {point['lr']:.3g})")
        save_checkpoint(self.accelerator, self.config.output_dir)

    def finish(self) -> dict:
        """Save the training state, restore the best weights, evaluate, save model, master, tokenizer, metrics, curve.

        The checkpoint is saved before the best weights are restored, so resuming it with a larger `max_epochs`
        continues the run exactly where it stopped.
        """
        config, accelerator, progress, raw_model = self.config, self.accelerator, self.progress, self.raw_model
        training = config.training
        save_checkpoint(accelerator, config.output_dir)
        if progress.best_weights is not None:
            raw_model.load_state_dict(progress.best_weights)
        elif self.average is not None:
            raw_model.load_state_dict(self.average.module.state_dict())
        valid_loss, _ = evaluate(raw_model, self.streams["validation"], accelerator, training.eval_batch_size,
                                 training.bptt)
        test_loss, test_tokens = (evaluate(raw_model, self.streams["test"], accelerator, training.eval_batch_size,
                                           training.bptt) if "test" in self.streams else (None, 0))
        identical = replicas_identical(raw_model, accelerator)
        metrics = None
        if accelerator.is_main_process:
            output_dir = config.output_dir
            raw_model.save_pretrained(output_dir)
            save_tokenizer(self.tokenizer, output_dir)
            if raw_model.config.is_quantized:
                master = os.path.join(output_dir, MASTER_DIR)
                raw_model.save_pretrained(master, packed=False)
                save_tokenizer(self.tokenizer, master)
            compression = summarize(output_dir).file_ratio or 1.0
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
                "best_epoch": progress.best_epoch,
                "stopped_early": progress.converged(training.early_stopping_patience),
                "world_size": accelerator.num_processes,
                "sampled_text": self.sampled_text,
                "replicas_identical": identical,
                "history": progress.history,
                "config": config.to_dict(),
            }
            write_bytes_atomic(os.path.join(output_dir, METRICS_FILE), json.dumps(metrics, indent=2).encode())
            if progress.history:
                plot_curve(progress.history, os.path.join(output_dir, CURVE_FILE),
                           os.path.basename(os.path.abspath(output_dir)))
            accelerator.print(f"valid ppl {metrics['valid_ppl']:.2f}, test ppl {metrics['test_ppl'] or float('nan'):.2f}, "
                              f"compression {compression:.2f}x; saved to {output_dir}")
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return metrics


def train(config: RunConfig) -> dict:
    """Train as `config` says and leave a run directory; returns the metrics written to metrics.json."""
    return TrainingRun(config).run()


def _flat_hparams(config: RunConfig) -> dict:
    flat = {}
    for section, values in config.to_dict().items():
        items = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in items:
            name = section if key is None else f"{section}.{key}"
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
