"""Distillation text: sentences sampled from the teacher, so a student can learn its distribution on more text than
the real corpus holds.

A student distilled on the real text alone is at its best after one or two epochs and then fits that text rather
than the teacher. Text sampled from the teacher (plain ancestral sampling at temperature 1) is new at every token,
and on it the KL term asks the student exactly what the teacher would say. The sample is drawn once per teacher,
size and seed, and cached beside the teacher's run (`sampled_text/` in its directory, or the student's run directory
for a Hub teacher) with the digest of the teacher's weights, so every student of that teacher reuses it.

Sampling runs `streams` parallel streams, each started from `<eos>` with a fresh state and carrying its state from
sentence to sentence, as the teacher was trained; each stream's unfinished last sentence is dropped.
"""

import hashlib
import json
import math
import os

import torch
from tqdm.auto import tqdm

from ..atomic import write_text_atomic
from ..models.softbin_lstm.checkpoint import DIGEST_KEY, WEIGHTS_NAME, resolve_file
from .distill import Teacher

CACHE_DIR = "sampled_text"
STREAMS = 256


@torch.no_grad()
def sample_token_rows(teacher: Teacher, num_tokens: int, seed: int, start_id: int, streams: int = STREAMS,
                      progress: bool = True) -> torch.Tensor:
    """(streams, ceil(num_tokens / streams)) token ids drawn from the teacher, each row starting after `start_id`."""
    if num_tokens < 1:
        raise ValueError(f"sampling needs a positive number of tokens, got {num_tokens}")
    streams = min(streams, num_tokens)
    length = math.ceil(num_tokens / streams)
    device = teacher.first.lm_head_bias.device
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = torch.empty(streams, length, dtype=torch.long)
    current = torch.full((streams, 1), start_id, dtype=torch.long, device=device)
    states = None
    for step in tqdm(range(length), desc="sampling from the teacher", disable=not progress, dynamic_ncols=True):
        output = teacher(current, states)
        states = output.states
        probabilities = torch.softmax(output.logits[:, -1].float(), dim=-1)
        current = torch.multinomial(probabilities, 1, generator=generator)
        tokens[:, step] = current[:, 0].cpu()
    return tokens


def rows_to_lines(rows: torch.Tensor, tokenizer) -> list[str]:
    """Sentences of sampled rows as text lines (words joined by spaces), each row's unfinished sentence dropped."""
    eos = tokenizer.eos_token_id
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    lines = []
    for row in rows.tolist():
        words: list[str] = []
        for token in row:
            if token == eos:
                if words:
                    lines.append(" ".join(words))
                words = []
            else:
                words.append(vocabulary[token])
    return lines


def teacher_digest(paths: list[str]) -> str:
    """One digest for the teacher's weights files (the digest each file records, or its bytes' hash)."""
    from safetensors import safe_open

    combined = hashlib.sha256()
    for path in paths:
        weights = resolve_file(path, WEIGHTS_NAME, {})
        with safe_open(weights, "pt") as handle:
            recorded = (handle.metadata() or {}).get(DIGEST_KEY)
        if recorded is None:
            with open(weights, "rb") as data:
                recorded = hashlib.sha256(data.read()).hexdigest()
        combined.update(recorded.encode())
    return combined.hexdigest()


def cached_sample(teacher: Teacher, teacher_paths: list[str], tokenizer, num_tokens: int, seed: int,
                  fallback_dir: str, progress: bool = True) -> str:
    """The path of a text file of about `num_tokens` tokens sampled from the teacher; drawn on the first call, then
    read from the cache (a cached file from other teacher weights is drawn again)."""
    first = os.fspath(teacher_paths[0])
    cache_root = first if os.path.isdir(first) and os.access(first, os.W_OK) else fallback_dir
    directory = os.path.join(cache_root, CACHE_DIR)
    name = f"{num_tokens}-tokens-seed{seed}" + ("" if len(teacher_paths) == 1 else f"-ensemble{len(teacher_paths)}")
    text_path, info_path = os.path.join(directory, name + ".txt"), os.path.join(directory, name + ".json")
    info = {"teacher": [os.fspath(path) for path in teacher_paths], "teacher_digest": teacher_digest(teacher_paths),
            "tokens_requested": num_tokens, "seed": seed, "streams": min(STREAMS, num_tokens), "temperature": 1.0}
    if os.path.isfile(text_path) and os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if {key: cached.get(key) for key in info if key != "teacher"} == {k: v for k, v in info.items() if k != "teacher"}:
            return text_path
    os.makedirs(directory, exist_ok=True)
    lines = draw_lines(teacher, tokenizer, num_tokens, seed, progress)
    write_text_atomic(text_path, "\n".join(lines) + "\n")
    write_text_atomic(info_path, json.dumps({**info, "lines": len(lines)}, indent=1) + "\n")
    return text_path


def draw_lines(teacher: Teacher, tokenizer, num_tokens: int, seed: int, progress: bool = True) -> list[str]:
    rows = sample_token_rows(teacher, num_tokens, seed, tokenizer.eos_token_id, progress=progress)
    return rows_to_lines(rows, tokenizer)


def sample_command(teacher_paths: list[str], num_tokens: int, seed: int, output: str | None) -> str:
    """`hf-softbin sample`: draw text from trained float models (one, or an ensemble) into `output`, or into the
    cache a training run would read (beside the first model); returns the file's path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for path in teacher_paths:
        resolve_file(path, WEIGHTS_NAME, {})  # a missing model is named before anything loads
    teacher = Teacher([AutoModelForCausalLM.from_pretrained(path) for path in teacher_paths])
    tokenizer = AutoTokenizer.from_pretrained(teacher_paths[0])
    if output is None:
        return cached_sample(teacher, teacher_paths, tokenizer, num_tokens, seed, fallback_dir=os.getcwd())
    write_text_atomic(output, "\n".join(draw_lines(teacher, tokenizer, num_tokens, seed)) + "\n")
    return output
