"""The offline main job: teacher, then a soft-binarized distilled student, on the corpus the package generates."""

import os

from .corpus import perplexity_floor, write_default_corpus
from .training.loop import train
from .training.recipe import load_run_config

SHAPE = {"model.embedding_size": 128, "model.hidden_size": 128, "model.num_hidden_layers": 2, "model.dropout": 0.1}
TRAINING = {"training.max_epochs": 6, "training.batch_size": 16, "training.eval_batch_size": 8, "training.bptt": 35,
            "training.optimizer": "adam", "training.lr": 0.003, "training.log_every": 100, "training.log_with": None}


def demo_recipes(output_dir: str, corpus: dict) -> tuple[dict, dict]:
    data = {"data.train_file": str(corpus["train"]), "data.validation_file": str(corpus["valid"]),
            "data.test_file": str(corpus["test"])}
    teacher = {"output_dir": os.path.join(output_dir, "teacher"), **data, **SHAPE, **TRAINING, "model.binarize": False}
    student = {"output_dir": os.path.join(output_dir, "student"), **data, **SHAPE, **TRAINING,
               "model.binarize": True, "model.scaling": "row", "distill.teacher": teacher["output_dir"],
               "distill.kd_lambda": 0.5, "distill.temperature": 1.0, "distill.init_from_teacher": True}
    return teacher, student


def run_demo(output_dir: str = "demo-output", seed: int = 0) -> str:
    """Train both models and return the comparison table."""
    corpus = write_default_corpus(os.path.join(output_dir, "corpus"), seed=seed)
    teacher_recipe, student_recipe = demo_recipes(output_dir, corpus)
    print(f"[1/2] training the full-precision teacher on {corpus['train']} ...", flush=True)
    teacher = train(load_run_config(None, teacher_recipe))
    print("[2/2] training the 1-bit student (row scaling, distilled from the teacher) ...", flush=True)
    student = train(load_run_config(None, student_recipe))
    return format_table(teacher, student, perplexity_floor(seed))


def format_table(teacher: dict, student: dict, floor: float) -> str:
    rows = [
        ("model", "test ppl", "size on disk", "compression"),
        ("teacher (float32)", f"{teacher['test_ppl']:.1f}", f"{teacher['model_bytes'] / 1024:,.0f} KiB", "1.0x"),
        ("student (1-bit + KD)", f"{student['test_ppl']:.1f}", f"{student['model_bytes'] / 1024:,.0f} KiB",
         f"{teacher['model_bytes'] / student['model_bytes']:.1f}x"),
        ("perplexity floor", f"{floor:.1f}", "", ""),
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"student/teacher perplexity: {student['test_ppl'] / teacher['test_ppl']:.3f}; the floor is the "
                 "entropy rate of the generated language, the best any model can do.")
    return "\n".join(lines)
