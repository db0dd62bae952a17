#!/usr/bin/env python
"""The recipe search on wt2-mini: settings chosen on validation perplexity only, then trained to convergence.

    python benchmarks/search.py                       # all families, in order (many hours on 2 CPU cores)
    python benchmarks/search.py --family teacher      # one family (students need the teacher's winner first)

Every family (float teacher, BLLM, soft, soft + KD) is searched the same way:

1. screening: each setting trains for `--screen-epochs` epochs (early stopping on), starting from the family's recipe
   in configs/wt2-mini with the setting's overrides: the optimizers first, then one change at a time to the best
   of them, then, where the best setting's validation perplexity peaked inside its screen, that setting at a half
   and a quarter of its learning rate;
2. the best settings by screening validation perplexity (`FINALISTS` of them) continue from their screening
   checkpoint (`--resume_from_checkpoint latest`) until validation stops improving (`--max-epochs` cap);
3. the winner is the finalist with the lowest validation perplexity. Test perplexity is recorded for the report
   and never read by this script to choose anything.

Each run is saved as it finishes (`--results`, JSON, and benchmarks/results.json); a second invocation skips what is
done and continues an interrupted screen from its last checkpoint, so the search can be stopped at any time and
continued. Without its results file, a search starts from what benchmarks/results.json records. The winners are
copied into the recipes by hand, with the table this writes.

The `quality` family studies changes to the training method of soft + KD (not its hyper-parameters): which text to
distil on (the real text, or the real text with text sampled from the teacher), then one method at a time on the
best text (hidden-state loss, row and column scalars, progressive binarization, weight averaging, slower latent
weights, Bop, an ensemble teacher), then the best of those with each other one that also beat the text alone;
separately, which part of the model costs the most when it alone is binarized (`--family parts`), product-quantized
layouts of 50x or more on that text and with the study's winner (`--family pq`), the fair row beside them: a
float model distilled the same way (`--family float-kd`), and a stronger teacher for the shipped ensemble recipe: a
wider float model joining its ensemble (`--family wider-teacher --wider-teacher RUN_DIR`). These settings all train
for the same number of optimizer steps (`--screen-epochs` passes' worth of the real text) and are evaluated once per
pass over the real text, whatever text they train on.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (benchmarks/report.py, beside this script)

from hf_softbin.atomic import write_text_atomic  # noqa: E402
from hf_softbin.training.run_files import CHECKPOINT_DIR  # noqa: E402

RECIPES = os.path.join("configs", "wt2-mini")
# Settings trained to convergence after screening, per family.
FINALISTS = {"teacher": 1, "bllm": 2, "soft": 1, "soft-kd": 2, "pq-soft-kd": 1, "quality": 1, "parts": 0, "pq": 1,
             "float-kd": 1, "wider-teacher": 1}
# Product quantization (5 codes a row): codes fixed or re-assigned from the latent rows every 200 steps, codebooks in
# float16 or soft-binarized. Trained with the soft + KD winner's settings.
PQ_VARIANTS = {
    "fixed-codes+fp16-codebooks": {"training.pq_reassign_every": 0, "model.pq_codebook_storage": "float16"},
    "reassign+fp16-codebooks": {"training.pq_reassign_every": 200, "model.pq_codebook_storage": "float16"},
    "fixed-codes+binary-codebooks": {"training.pq_reassign_every": 0, "model.pq_codebook_storage": "binary"},
    "reassign+binary-codebooks": {"training.pq_reassign_every": 200, "model.pq_codebook_storage": "binary"},
}
PROTOCOL = ("Each setting trains for a few epochs (screening); the best by validation perplexity then continues from "
            "its screening checkpoint until validation stops improving or the epoch cap; the winner is the finalist "
            "with the lowest validation perplexity (where no finalist was trained, the best screened setting; PQ variants "
            "compete only at the smallest file). Test perplexity is shown, never used to choose.")
FAMILIES = ("teacher", "bllm", "soft", "soft-kd", "pq-soft-kd", "quality", "parts", "pq", "float-kd", "wider-teacher")
# changes of method, reported in their own section
STUDY_FAMILIES = ("quality", "parts", "pq", "float-kd", "wider-teacher")
QUALITY_PROTOCOL = ("Every setting starts from the soft + KD recipe as the recipe search left it "
                    "(configs/wt2-mini/soft-kd.yaml with kd_lambda 0.5 on the real text; the study's winner has since"
                    " replaced it) and its teacher, changes one thing, and trains for the same number of optimizer "
                    "steps; validation perplexity is measured after every pass over the real training text's worth of"
                    " steps and at the end of each pass over the text it trains on (the real text, or the real text "
                    "with sampled text). Minutes of training add up every session a run took, most of them with two "
                    "runs sharing the 2 cores. The best text is chosen first, then each method is tried on it, then "
                    "the best method with each other method that also beat the text alone (`TEXT+BEST+OTHER`), and, "
                    "while the best stack beats the one it grew from, that stack with each remaining such method; the"
                    " best setting continues to early stopping. The parts family binarizes one part at a time; the pq "
                    "family starts from the shipped PQ recipe (pq-soft-kd.yaml) on the best text and changes its "
                    "layout, tries each layout with the quality family's winner too, and the recipe's layout on "
                    "soft + KD's former text. The float-kd family is the "
                    "fair row: the same recipe with every part float, distilled from the same teacher. The "
                    "wider-teacher family starts from the shipped ensemble recipe (soft-kd-ensemble.yaml) and "
                    "changes who teaches: its float ensemble, that ensemble with a wider float model as one more "
                    "member, or the teacher with the wider model alone (the student always starts from the teacher); "
                    "beside them, a float student taught by the ensemble with the wider model. Test "
                    "perplexity is shown, never used to choose.")
# Quality study, first stage: the text the student distils on. Its base (`recipe`) is the soft + KD recipe as the
# hyper-parameter search left it, which mixes cross-entropy on the real text with the KL term (kd_lambda 0.5); on
# sampled text only the teacher's distribution means anything, so KL only. (The shipped recipe is now the winner.)
TEXT_VARIANTS = {
    "recipe": {},
    "kl-only": {"distill.kd_lambda": 1.0},
    **{f"sampled{ratio}x": {"distill.kd_lambda": 1.0, "distill.sampled_text_ratio": ratio} for ratio in (1, 3, 7)},
}


# The output layer costs the most (the parts family): a second sign plane for the most frequent three quarters of the
# words, paid for by product-quantizing the embedding, whose binarization cost nothing (5 codes a row, binary
# codebooks): 28.9x on wt2-mini, and at least the one-plane layout's ratio at any vocabulary size.
TWO_PLANE_OUTPUT = {"model.quantization": "{embedding: pq, lstm: binary, output: binary}", "model.pq_subvectors": 5,
                    "model.pq_codebook_storage": "binary", "model.output_residual_rows": 0.75}


def method_variants(text: str, ensemble: list[str]) -> dict[str, dict]:
    """Quality study, second stage: one change of method at a time on the best text."""
    variants = {
        f"{text}+hidden0.1": {"distill.hidden_weight": 0.1},
        f"{text}+row-col": {"model.scaling": "row_col"},
        f"{text}+ramp1": {"training.binarize_ramp_epochs": 1.0},
        f"{text}+ema0.995": {"training.ema_decay": 0.995},
        f"{text}+latent-lr0.25x": {"training.lr": 0.00025, "training.scale_lr": 0.001},
        # Gradients of the latent weights are about 1e-6 here: Larq's threshold 1e-8 would flip signs on noise.
        f"{text}+bop": {"training.optimizer": "bop", "training.bop_threshold": 1e-7},
        f"{text}+two-plane-output": TWO_PLANE_OUTPUT,
    }
    if ensemble:
        variants[f"{text}+ensemble{len(ensemble) + 1}"] = {"distill.ensemble": "[" + ",".join(ensemble) + "]"}
    return variants


# The quality study's best text (sampled 3x beat the real text alone, 1x and the recipe's mix): the text of the PQ
# layouts and of the float student.
BEST_TEXT = "sampled3x"
# Product quantization on the best text: layouts of 50x or more on wt2-mini 2x200, from the most bytes to the fewest.
# A scalar per word costs 2 bytes a row: m=8 with it is the size of m=10 without (58.2x / 58.1x); m=5 float16
# codebooks with it would be 47.3x.
PQ_LAYOUTS = {
    "m5-fp16-codebooks": {"model.pq_codebook_storage": "float16"},  # 52.9x
    "m10-binary-codebooks": {"model.pq_subvectors": 10},  # 58.1x
    "m8-binary-codebooks+row-scale": {"model.pq_subvectors": 8, "model.pq_row_scale": True},  # 58.2x
    # codes learned end to end (differentiable PQ) instead of fixed after k-means
    "m10-binary-codebooks+learned-codes": {"model.pq_subvectors": 10, "training.pq_code_temperature": 0.1},
    "m5-binary-codebooks+row-scale": {"model.pq_row_scale": True},  # 73.7x
    "m5-binary-codebooks+learned-codes": {"training.pq_code_temperature": 0.1},  # 88.3x
    "m5-binary-codebooks": {},  # 88.3x, the recipe's layout
}
# The recipe's layout on soft + KD's former text (kd_lambda 0.5 on the real text alone), which pq-soft-kd.yaml trained
# on until these screens: what the layouts on the best text are compared with.
PQ_FORMER_TEXT = "m5-binary-codebooks+former-text"

# Which part costs the most: the soft + KD recipe on the real text with one part binarized, the others float.
PART_VARIANTS = {f"{part}-only": {"model.quantization": "{" + ", ".join(
    f"{other}: {'binary' if other == part else 'float'}" for other in ("embedding", "lstm", "output")) + "}"}
    for part in ("embedding", "lstm", "output")}


def float_student_variants(ensemble: list[str]) -> dict[str, dict]:
    """The fair row beside the 1-bit student: the float 2x200 model distilled by the same recipe from the same
    teacher(s), on the real text and on the study's best text. Whatever distillation gives the 1-bit student it may
    give a float model too, and the best float row is the one the student is measured against."""
    variants = {"float-student": {}, f"float-student+{BEST_TEXT}": TEXT_VARIANTS[BEST_TEXT]}
    if ensemble:
        variants[f"float-student+{BEST_TEXT}+ensemble{len(ensemble) + 1}"] = {
            **TEXT_VARIANTS[BEST_TEXT], "distill.ensemble": "[" + ",".join(ensemble) + "]"}
    return variants


FLOAT_STUDENT = {"model.quantization": "{embedding: float, lstm: float, output: float}"}


def wider_teacher_variants(ensemble: list[str], wider: str) -> dict[str, dict]:
    """Who teaches the shipped ensemble recipe: its ensemble of float models of the student's shape (the teacher and
    `ensemble`), that ensemble with a wider float model as one more member, and the teacher with the wider model
    alone; and the fair row, a float student taught by the ensemble with the wider model. Every member counts
    the same in the mean of probabilities; the student starts from the teacher, which has its shape."""
    members = f"ensemble{len(ensemble) + 1}"
    with_wider = "[" + ",".join([*ensemble, wider]) + "]"
    return {members: {"distill.ensemble": "[" + ",".join(ensemble) + "]"},
            f"{members}+wider": {"distill.ensemble": with_wider},
            "teacher+wider": {"distill.ensemble": f"[{wider}]"},
            f"float-student+{members}+wider": {**FLOAT_STUDENT, "distill.ensemble": with_wider}}


OPTIMIZERS = {
    "sgd-lr10": {"training.optimizer": "sgd", "training.lr": 10},
    "sgd-lr20": {"training.optimizer": "sgd", "training.lr": 20},
    "sgd-lr40": {"training.optimizer": "sgd", "training.lr": 40},
    "adam-lr1e-3": {"training.optimizer": "adam", "training.lr": 0.001},
    "adam-lr2e-3": {"training.optimizer": "adam", "training.lr": 0.002},
}
# Every run: the classic schedule (divide the learning rate by 4 when validation stops improving), clip 0.25.
COMMON = {"training.schedule": "plateau", "training.plateau_factor": 0.25, "training.grad_clip": 0.25,
          "training.log_with": None, "training.log_every": 100}
# Binarized models converge more slowly: wait 3 epochs without improvement before cutting the learning rate.
FLOAT_PATIENCE = {"training.plateau_patience": 0, "training.early_stopping_patience": 3}
BINARY_PATIENCE = {"training.plateau_patience": 2, "training.early_stopping_patience": 5}


def stage_b(family: str, optimizer: str) -> dict[str, dict]:
    """Settings tried with the family's best screening optimizer, one change each: dropout and the schedule's
    patience for BLLM; dropout, scalars, initialization, KD weight and temperature for soft + KD."""
    if family == "bllm":
        return {f"{optimizer}+dropout0.3": {"model.dropout": 0.3}, f"{optimizer}+dropout0.4": {"model.dropout": 0.4},
                f"{optimizer}+plateau0": {"training.plateau_patience": 0},
                f"{optimizer}+plateau4": {"training.plateau_patience": 4, "training.early_stopping_patience": 7}}
    if family == "soft":
        return {f"{optimizer}+analytic": {"model.learnable_scale": False}}
    if family == "soft-kd":
        return {f"{optimizer}+dropout0.3": {"model.dropout": 0.3},
                f"{optimizer}+analytic": {"model.learnable_scale": False},
                f"{optimizer}+no-init": {"distill.init_from_teacher": False},
                f"{optimizer}+lambda0.8": {"distill.kd_lambda": 0.8},
                f"{optimizer}+T2": {"distill.temperature": 2.0}}
    return {}


def lower_rates(setting: str, entry: dict) -> dict[str, dict]:
    """A setting whose validation perplexity peaked before the end of its screen learns too fast for its family:
    the same setting at a half and a quarter of its learning rate. None for a setting still improving."""
    screen = entry["screen"]
    if screen["best_epoch"] >= screen["epochs"]:
        return {}
    rate = entry["overrides"]["training.lr"]
    return {f"{setting}+lr{rate / divisor:g}": {"training.lr": rate / divisor} for divisor in (2, 4)}


def family_base(family: str, teacher_dir: str | None) -> tuple[str, dict]:
    """The recipe file and the overrides every setting of the family shares."""
    if family == "teacher":
        return "teacher.yaml", {**COMMON, **FLOAT_PATIENCE}
    if family == "bllm":
        return "bllm.yaml", {**COMMON, **BINARY_PATIENCE}
    if family == "soft":
        return "soft.yaml", {**COMMON, **BINARY_PATIENCE, "model.learnable_scale": True}
    return "soft-kd.yaml", {**COMMON, **BINARY_PATIENCE, "distill.teacher": teacher_dir,
                            "model.learnable_scale": True, "distill.init_from_teacher": True,
                            "distill.kd_lambda": 0.5, "distill.temperature": 1.0, "distill.sampled_text_ratio": 0}


def pq_base(winners: dict) -> tuple[str, dict]:
    """The PQ recipe with the soft + KD settings: the search's winner when it is known, else the soft + KD family's
    starting point (the variants are compared with each other, under the same settings)."""
    if "soft-kd" in winners:
        return "pq-soft-kd.yaml", dict(winners["soft-kd"]["overrides"])
    return "pq-soft-kd.yaml", family_base("soft-kd", winners["teacher"]["run_dir"])[1] | OPTIMIZERS["adam-lr2e-3"]


def real_text_steps(recipe: str) -> int:
    """Optimizer steps in one pass over the real training text of a wt2-mini recipe (the words of its non-blank
    lines and one `<eos>` each, cut into batch_size rows and bptt segments)."""
    from hf_softbin.training.recipe import load_run_config

    config = load_run_config(os.path.join(RECIPES, recipe))
    with open(config.data.train_file, encoding="utf-8") as handle:
        tokens = 1 + sum(len(line.split()) + 1 for line in handle if line.strip())
    training = config.training
    return -(-(tokens // training.batch_size - 1) // training.bptt)


def train(recipe: str, output_dir: str, overrides: dict, resume: bool, log_path: str) -> dict:
    command = [sys.executable, "-m", "hf_softbin.cli", "train", os.path.join(RECIPES, recipe),
               "--output_dir", output_dir]
    for key, value in overrides.items():
        command += [f"--{key}", "null" if value is None else str(value)]
    if resume:
        command += ["--resume_from_checkpoint", "latest"]
    began = time.time()
    # Passive OpenMP waiting: on a shared machine, spinning threads slow a run down many times over.
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, env=environment)
    with open(os.path.join(output_dir, "metrics.json")) as handle:
        metrics = json.load(handle)
    history = metrics["history"]
    return {"valid_ppl": metrics["valid_ppl"], "test_ppl": metrics["test_ppl"], "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"], "stopped_early": metrics["stopped_early"],
            "compression_ratio": metrics["compression_ratio"], "model_bytes": metrics["model_bytes"],
            "train_seconds": metrics["train_seconds"],
            "wall_seconds": time.time() - began,
            "valid_curve": [round(point["valid_ppl"], 2) for point in history],
            "sampled_tokens": (metrics.get("sampled_text") or {}).get("tokens", 0)}


def recorded_results(results_dir: str) -> dict:
    """What benchmarks/results.json records of the searches, as a results file holds it: a search whose results
    file was lost with its run directories continues from the record (finished settings are not trained again)."""
    record = report.load(results_dir)
    results = {}
    for key in ("search", "quality"):
        section = record.get(key, {})
        results.update(section.get("families", {}))
        for part in ("commands", "winners", "teachers"):
            results.setdefault(part, {}).update(section.get(part, {}))
    return results


def same_teacher(recorded: dict | None, current: dict | None) -> bool:
    """Whether two records of a study's teacher are one run (a teacher trained again, or on another machine, gives
    other perplexities: its students cannot be compared with the first teacher's)."""
    if recorded is None or current is None:
        return True
    return (recorded["run_dir"], recorded["valid_ppl"]) == (current["run_dir"], current["valid_ppl"])


class Search:
    def __init__(self, args):
        self.args = args
        if os.path.exists(args.results):
            with open(args.results, encoding="utf-8") as handle:
                self.results = json.load(handle)
        else:
            self.results = recorded_results(args.results_dir)

    def save(self):
        """Write the results file, and the search's and the quality study's sections of benchmarks/results.json.

        A section keeps what other results files put there (the quality study's families, and settings of one
        family, may run as separate commands at the same time) and adds this file's: its families' settings, each
        family's commands."""
        write_text_atomic(self.args.results, json.dumps(self.results, indent=1) + "\n")
        families = {name: entries for name, entries in self.results.items()
                    if name not in ("winners", "commands", "teachers", "earlier")}
        mine = {"commands": self.results.get("commands", {}), "families": families,
                "winners": self.results.get("winners", {}), "teachers": self.results.get("teachers", {})}
        existing = report.load(self.args.results_dir)
        sections = {}
        for key, names in (("search", [name for name in FAMILIES if name not in STUDY_FAMILIES]),
                           ("quality", STUDY_FAMILIES)):
            if not any(name in names for name in families):
                continue
            section = {part: dict(existing.get(key, {}).get(part, {})) for part in mine}
            for study in self.results.get("earlier", []):  # a study started again leaves the record's families
                if section["teachers"].get(study["family"]) == study["teacher"]:
                    for part in section.values():
                        part.pop(study["family"], None)
            if key == "quality":
                earlier = existing.get(key, {}).get("earlier", []) + self.results.get("earlier", [])
                section["earlier"] = [study for index, study in enumerate(earlier) if study not in earlier[:index]]
            for part, values in mine.items():
                for name, value in values.items():
                    if name not in names:
                        continue
                    if part == "families":  # two commands may screen settings of one family at the same time
                        recorded = section[part].get(name, {})
                        value = {**recorded, **{setting: {**recorded.get(setting, {}), **entry}
                                                for setting, entry in value.items()}}
                    elif part == "commands":
                        value = list(dict.fromkeys(section[part].get(name, []) + value))
                    section[part][name] = value
            section["protocol"] = PROTOCOL if key == "search" else QUALITY_PROTOCOL
            section["not_searched"] = [name for name in names if name not in section["winners"]]
            sections[key] = section
        report.update(sections, self.args.results_dir)

    def run_dir(self, family: str, setting: str) -> str:
        return os.path.join(self.args.runs_dir, family, setting)

    def screen(self, family: str, settings: dict[str, dict], recipe: str, base: dict):
        entries = self.results.setdefault(family, {})
        # `--first` settings lead, in the order given, and `--later` ones wait for another invocation, so a short
        # working session spends its time where it chooses
        first = self.args.first
        lead = {name: first.index(name) if name in first else len(first) for name in settings}
        for setting, overrides in sorted(settings.items(), key=lambda item: lead[item[0]]):
            if setting in self.args.later or (setting in entries and "screen" in entries[setting]):
                continue
            merged = {**base, **overrides, **self.screen_budget(family), **self.args.extra}
            run_dir = self.run_dir(family, setting)
            # a screen stopped with its session continues from its last evaluation's checkpoint
            interrupted = os.path.isdir(os.path.join(run_dir, CHECKPOINT_DIR))
            print(f"[{family}] {'continuing' if interrupted else 'screening'} {setting}", flush=True)
            outcome = train(recipe, run_dir, merged, interrupted, self.args.log)
            entries[setting] = {"overrides": {**base, **overrides}, "changes": overrides, "screen": outcome}
            self.save()
            print(f"[{family}] {setting}: valid ppl {outcome['valid_ppl']:.2f}, the best of "
                  f"{len(outcome['valid_curve'])} evaluations", flush=True)

    def screen_budget(self, family: str) -> dict:
        """Screening epochs; for the quality study, the same number of optimizer steps for every setting."""
        if family in STUDY_FAMILIES:
            return {"training.max_steps": self.args.screen_epochs * real_text_steps("soft-kd.yaml")}
        return {"training.max_epochs": self.args.screen_epochs}

    def screen_lower_rates(self, family: str, recipe: str):
        best = self.best_screened(family, 1)[0]
        entry = self.results[family][best]
        self.screen(family, lower_rates(best, entry), recipe, entry["overrides"])

    def best_screened(self, family: str, count: int) -> list[str]:
        """The settings with the lowest screening validation perplexity. PQ variants compete only at the smallest
        file: codebook storage trades bytes for quality, and the PQ recipe is there for its size."""
        entries = self.results[family]
        names = list(entries)
        if family == "wider-teacher":  # the float student is the fair row beside the 1-bit ones, not a contender
            names = [name for name in names if not name.startswith("float-student")]
        if family == "pq-soft-kd":
            size = {name: round(entries[name]["screen"]["compression_ratio"], 1) for name in names}
            names = [name for name in names if size[name] == max(size.values())]
        return sorted(names, key=lambda name: entries[name]["screen"]["valid_ppl"])[:count]

    def finish(self, family: str, recipe: str):
        """Train the finalists to convergence; with none (`--finalists 0`), the best screened setting wins."""
        entries = self.results[family]
        count = FINALISTS[family] if self.args.finalists is None else self.args.finalists
        for setting in self.best_screened(family, count):
            entry = entries[setting]
            if "final" in entry:
                continue
            overrides = {**entry["overrides"], **self.args.extra, "training.max_epochs": self.args.max_epochs}
            run_dir = self.run_dir(family, setting)
            # from the screen's checkpoint; where that run directory was lost, the same run again from the start
            resume = os.path.isdir(os.path.join(run_dir, CHECKPOINT_DIR))
            print(f"[{family}] training {setting} to convergence{'' if resume else ' (from the start)'}", flush=True)
            entry["final"] = train(recipe, run_dir, overrides, resume, self.args.log)
            self.save()
        finalists = [name for name in entries if "final" in entries[name]]
        if finalists:
            winner = min(finalists, key=lambda name: entries[name]["final"]["valid_ppl"])
        else:
            winner = self.best_screened(family, 1)[0]
        self.results.setdefault("winners", {})[family] = {"setting": winner, "run_dir": self.run_dir(family, winner),
                                                          "overrides": entries[winner]["overrides"]}
        self.save()
        shown = entries[winner].get("final", entries[winner]["screen"])
        print(f"[{family}] winner {winner}: valid ppl {shown['valid_ppl']:.2f}", flush=True)

    def start_study(self, family: str):
        """Record the study's teacher. A study distils from one teacher: with another one, the family starts again,
        and what it measured with the earlier teacher is kept as it was (`earlier`; the teacher's record names the
        machine the study ran on)."""
        teacher = self.teacher_dir(family)
        with open(os.path.join(teacher, "metrics.json")) as handle:
            metrics = json.load(handle)
        current = {"run_dir": teacher, "valid_ppl": metrics["valid_ppl"], "test_ppl": metrics["test_ppl"],
                   "epochs": metrics["epochs"], "train_seconds": metrics["train_seconds"], "machine": report.machine()}
        teachers = self.results.setdefault("teachers", {})
        for name, recorded in list(teachers.items()):
            # this family with another teacher, or any family whose teacher's directory was trained again since
            replaced = name == family and not same_teacher(recorded, current)
            retrained = recorded["run_dir"] == teacher and not same_teacher(recorded, current)
            if name not in self.results or not (replaced or retrained):
                continue
            print(f"[{name}] recorded with the teacher {recorded['run_dir']} at validation perplexity "
                  f"{recorded['valid_ppl']:.2f}; {teacher} is at {current['valid_ppl']:.2f}: the study starts again "
                  "(the record keeps the earlier one)", flush=True)
            self.results.setdefault("earlier", []).append({
                "family": name, "teacher": teachers.pop(name), "settings": self.results.pop(name),
                "winner": self.results.get("winners", {}).pop(name, {}).get("setting"),
                "commands": self.results.get("commands", {}).pop(name, [])})
        teachers[family] = current

    def quality(self, family: str):
        """The quality study (see the module docstring): text first, then methods on the best text; or the parts."""
        teacher = self.teacher_dir(family)
        base = family_base("soft-kd", teacher)[1]  # the shipped soft + KD recipe
        if family == "parts":
            self.screen(family, PART_VARIANTS, "soft-kd.yaml", base)
            return
        if family == "float-kd":
            self.screen(family, float_student_variants(self.args.ensemble), "soft-kd.yaml", {**base, **FLOAT_STUDENT})
            self.finish(family, "soft-kd.yaml")
            return
        if family == "wider-teacher":
            if not (self.args.ensemble and self.args.wider_teacher):
                raise SystemExit("the wider-teacher study needs the shipped ensemble (--ensemble RUN_DIR, once per "
                                 "member besides --teacher) and the wider float model (--wider-teacher RUN_DIR)")
            self.screen(family, wider_teacher_variants(self.args.ensemble, self.args.wider_teacher),
                        "soft-kd-ensemble.yaml", {**COMMON, **BINARY_PATIENCE, "distill.teacher": teacher})
            self.finish(family, "soft-kd-ensemble.yaml")
            return
        if family == "pq":
            former_text = {key: base[key] for key in TEXT_VARIANTS[BEST_TEXT]}
            self.screen(family, {**PQ_LAYOUTS, PQ_FORMER_TEXT: former_text, **self.layouts_with_quality_winner()},
                        "pq-soft-kd.yaml", {**base, **TEXT_VARIANTS[BEST_TEXT]})
            self.finish(family, "pq-soft-kd.yaml")
            return
        self.screen(family, TEXT_VARIANTS, "soft-kd.yaml", base)
        if self.args.stop_after == "text":
            return
        text = min((name for name in TEXT_VARIANTS if name in self.results[family]),
                   key=lambda name: self.results[family][name]["screen"]["valid_ppl"])
        self.screen(family, method_variants(text, self.args.ensemble), "soft-kd.yaml",
                    {**base, **TEXT_VARIANTS[text]})
        if self.args.stop_after == "methods":
            return
        while True:  # each screened stack may make the next one
            stacks = self.stacked_variants(family, text)
            self.screen(family, stacks, "soft-kd.yaml", {**base, **TEXT_VARIANTS[text]})
            if self.stacked_variants(family, text).keys() == stacks.keys():
                break
        if self.args.stop_after == "stacked":
            return
        self.finish(family, "soft-kd.yaml")

    def stacked_variants(self, family: str, text: str) -> dict[str, dict]:
        """Quality study, third stage, greedy: the best change of method together with each other change that also
        beat the text alone (`TEXT+BEST+OTHER`); then, while the best stack screened beats the one it grew from,
        that stack with each remaining such change (`TEXT+BEST+OTHER+THIRD`). Every stack so far, screened or not;
        none while fewer than two changes helped."""
        entries = self.results[family]

        def valid(name: str) -> float:
            return entries[name]["screen"]["valid_ppl"]

        alone = valid(text)
        helped = sorted((name for name in method_variants(text, self.args.ensemble)
                         if name in entries and valid(name) < alone), key=valid)
        variants, stack = {}, [helped[0]] if helped else []
        while len(helped) >= 2:
            level = {}
            for other in helped:
                if other in stack:
                    continue
                parts = stack + [other]
                name = text + "".join(part[len(text):] for part in parts)
                level[name] = (other, {key: value for part in parts for key, value in entries[part]["changes"].items()})
            variants |= {name: changes for name, (_, changes) in level.items()}
            screened = [name for name in level if name in entries]
            grown_from = text + "".join(part[len(text):] for part in stack)
            if not screened or valid(min(screened, key=valid)) >= valid(grown_from):
                break
            stack.append(level[min(screened, key=valid)][0])
        return variants

    def layouts_with_quality_winner(self) -> dict[str, dict]:
        """Every PQ layout with the quality family's winner applied (its text and its change of method), once that
        family has one: `LAYOUT+WINNER`. None while the winner is the best text the layouts already train on."""
        winner = self.results.get("winners", {}).get("quality", {}).get("setting")
        if winner is None or winner == BEST_TEXT:
            return {}
        text = winner.split("+")[0]
        changes = {**TEXT_VARIANTS[text], **self.results["quality"][winner]["changes"]}
        return {f"{layout}+{winner}": {**overrides, **changes} for layout, overrides in PQ_LAYOUTS.items()}

    def teacher_dir(self, family: str) -> str:
        """The teacher students distil from: `--teacher`, or the teacher family's winner."""
        if self.args.teacher:
            return self.args.teacher
        if "teacher" not in self.results.get("winners", {}):
            raise SystemExit(f"{family} distils from a teacher: search the teacher family first, or give --teacher")
        return self.results["winners"]["teacher"]["run_dir"]

    def family(self, family: str):
        if family in STUDY_FAMILIES:
            self.start_study(family)
        commands = self.results.setdefault("commands", {}).setdefault(family, [])
        if self.args.command not in commands:
            commands.append(self.args.command)
        if family in STUDY_FAMILIES:
            self.quality(family)
            return
        if family == "pq-soft-kd":
            if "teacher" not in self.results.get("winners", {}):
                raise SystemExit("search the teacher family first: the PQ student distils from its winner")
            recipe, base = pq_base(self.results["winners"])
            self.screen(family, PQ_VARIANTS, recipe, base)
            self.screen_lower_rates(family, recipe)
            self.finish(family, recipe)
            return
        teacher_dir = self.teacher_dir(family) if family == "soft-kd" else None
        recipe, base = family_base(family, teacher_dir)
        self.screen(family, OPTIMIZERS, recipe, base)
        if family != "teacher":
            best_optimizer = self.best_screened(family, 1)[0].split("+")[0]
            self.screen(family, stage_b(family, best_optimizer), recipe, {**base, **OPTIMIZERS[best_optimizer]})
            self.screen_lower_rates(family, recipe)
        self.finish(family, recipe)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=FAMILIES, action="append", help="search only these (default: all)")
    parser.add_argument("--screen-epochs", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--finalists", type=int, default=None,
                        help="settings trained to convergence per family (default: FINALISTS); 0: screening only")
    parser.add_argument("--runs-dir", default=os.path.join("runs", "search", "wt2-mini"))
    parser.add_argument("--results", default=os.path.join("benchmarks", "search_results.json"))
    parser.add_argument("--results-dir", default=report.HERE, help="where results.json and RESULTS.md go")
    parser.add_argument("--log", default=os.path.join("runs", "search", "search.log"))
    parser.add_argument("--teacher", help="students distil from this run directory (default: the teacher winner)")
    parser.add_argument("--ensemble", action="append", default=[], metavar="RUN_DIR",
                        help="quality study: a float model trained like the teacher with another seed, averaged with it")
    parser.add_argument("--wider-teacher", metavar="RUN_DIR",
                        help="wider-teacher study: a float model wider than the student, added to the ensemble")
    parser.add_argument("--first", nargs="+", default=[], metavar="SETTING",
                        help="screen these settings of a stage before the others (the rest follow in their order)")
    parser.add_argument("--later", nargs="+", default=[], metavar="SETTING",
                        help="leave these settings out of this invocation (one without the flag screens them); a "
                             "stage then builds on the best of those screened")
    parser.add_argument("--stop-after", choices=("text", "methods", "stacked"),
                        help="quality study: stop after this stage (a later run continues where it stopped)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every run (for a smoke test: --set training.max_steps=3)")
    args = parser.parse_args(argv)
    args.extra = dict(item.split("=", 1) for item in args.set)
    args.command = " ".join(["python benchmarks/search.py", *(sys.argv[1:] if argv is None else argv)])
    os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
    search = Search(args)
    for family in args.family or FAMILIES:
        search.family(family)
    return 0


if __name__ == "__main__":
    sys.exit(main())
