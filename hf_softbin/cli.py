"""The `hf-softbin` command line: one subcommand per job."""

import argparse
import sys

from .allocator import reuse_freed_memory
from .scoring.nbest_io import NBEST_FORMATS


def cmd_summary(args):
    from .summary import format_summary, summarize

    print(format_summary(summarize(args.directory)))


def cmd_train(args):
    """`hf-softbin train CONFIG.yaml [--section.key value ...]`: status 130/143 when a signal stopped it (a resumable
    checkpoint was saved), 1 when the loss diverged, 2 for bad input, as every command."""
    from .training import loop
    from .training.recipe import load_run_config, parse_overrides

    argv = args.extra
    if not argv or argv[0] in ("-h", "--help"):
        print(loop.__doc__)
        print("usage: hf-softbin train CONFIG.yaml [--section.key value ...]")
        return 0 if argv else 2
    path, tokens = (None, argv) if argv[0].startswith("--") else (argv[0], argv[1:])
    try:
        loop.train(load_run_config(path, parse_overrides(tokens)))
    except loop.TrainingInterrupted as stop:
        print(f"hf-softbin train: {stop}; resume with --resume_from_checkpoint latest", file=sys.stderr)
        return 128 + stop.signal_number
    except loop.TrainingDiverged as err:
        print(f"hf-softbin train: error: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args):
    from .demo import run_demo

    table = run_demo(args.output_dir)
    print()
    print(table)
    print(f"\nrun directories: {args.output_dir}/teacher and {args.output_dir}/student "
          f"(try: hf-softbin summary {args.output_dir}/student)")


def cmd_sample(args):
    from .training.sampled_text import sample_command

    path = sample_command([args.teacher, *args.ensemble], args.tokens, args.seed, args.output)
    with open(path, encoding="utf-8") as text:
        lines = text.read().splitlines()
    print(f"sampled text: {path} ({len(lines):,} sentences, {sum(len(line.split()) + 1 for line in lines):,} tokens)")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def load_language_model(args):
    import torch

    from .scoring.lm import LanguageModel

    if args.threads:
        torch.set_num_threads(args.threads)
    return LanguageModel.from_pretrained(args.model, device=args.device, batch_size=args.batch_size,
                                         trust_remote_code=args.trust_remote_code or None, keep_packed=args.keep_packed)


def cmd_score(args):
    from .scoring.lm import format_corpus, format_line, score_lines
    from .scoring.textio import read_lines

    lines = read_lines(args.file)  # bad input fails before the model loads
    lm = load_language_model(args)
    scored, corpus = score_lines(lm, lines, skip_empty=args.skip_empty, progress=not args.no_progress, source=args.file)
    output = [format_line(result) for _, result in scored] + [format_corpus(corpus)]  # all checked before printing
    print("\n".join(output))


def nbest_options(args, dev: bool = False) -> dict:
    """The `read_nbest` options the flags give for the test lists (or the dev lists), checked against the format:
    a flag that does not apply to it, or one it needs and lacks, is an error naming the flag."""
    from .scoring.nbest_io import FORMAT_OPTIONS

    prefix = "dev_" if dev else ""
    flags = {"scores": prefix + "scores", "refs": prefix + "refs", "costs": "costs", "beam_width": "beam_width"}
    options = {name: getattr(args, flag) for name, flag in flags.items()}
    required, optional = FORMAT_OPTIONS[args.format]
    for name, value in options.items():
        if value and name not in required + optional:
            raise ValueError(f"--{flags[name].replace('_', '-')} does not apply to --format {args.format}")
    for name in required:
        if options[name] is None:
            raise ValueError(f"--format {args.format} needs --{flags[name].replace('_', '-')}")
    return options


def cmd_rescore(args):
    from .scoring.nbest_io import format_choices, read_nbest, write_lines
    from .scoring.rescoring import format_rescore_summary, rescore

    utterances = read_nbest(args.nbest, args.format, **nbest_options(args))
    dev = read_nbest(args.tune_on, args.format, **nbest_options(args, dev=True)) if args.tune_on else None
    lm = load_language_model(args)
    score = lambda texts: lm.lm_logprob(texts, progress=not args.no_progress)  # noqa: E731
    result = rescore(utterances, score, args.lm_weight, dev=dev, word_insertion_penalty=args.penalty,
                     first_pass_weight=args.first_pass_weight, batch_size=None)
    write_lines(format_choices(result.utterances, result.chosen, result.scores, args.format), args.out)
    print(format_rescore_summary(result), file=sys.stderr)


def cmd_push(args):
    from .hub import prepare_upload_folder, push_to_hub

    if args.dry_run:
        folder = prepare_upload_folder(args.directory, args.dry_run, repo_id=args.repo_id, template=args.card_template,
                                       license=args.license)
        for path in sorted(folder.iterdir()):
            print(f"{path.stat().st_size:>12,}  {path.name}")
        print(f"prepared {folder} (not uploaded)")
        return
    url = push_to_hub(args.directory, args.repo_id, private=args.private, token=args.token,
                      template=args.card_template, license=args.license)
    print(f"uploaded {args.directory} to {args.repo_id}: {url}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-softbin", description="Soft-binarized (1-bit) LSTM language models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    summary = commands.add_parser("summary", help="per-layer parameters, bytes and compression ratio of a saved model")
    summary.add_argument("directory", help="a saved model directory (packed or master)")
    summary.set_defaults(func=cmd_summary)

    train = commands.add_parser("train", help="train a model from a YAML recipe", add_help=False,
                                description="hf-softbin train CONFIG.yaml [--section.key value ...]")
    train.set_defaults(func=cmd_train)

    demo = commands.add_parser("demo", help="offline: train a teacher and a 1-bit distilled student on a generated corpus")
    demo.add_argument("--output-dir", default="demo-output", help="where the corpus and both run directories go")
    demo.set_defaults(func=cmd_demo)

    sample = commands.add_parser(
        "sample", help="sample text from a trained float model (distillation text for a student)",
        description="Plain ancestral sampling at temperature 1 from a trained full-precision model (or the average of "
                    "an ensemble's probabilities): sentences of words, one a line. Without --output the text goes "
                    "where a training run with distill.sampled_text_ratio looks for it (TEACHER/sampled_text/).")
    sample.add_argument("teacher", help="a trained float model directory (with its tokenizer) or a Hub id")
    sample.add_argument("--tokens", type=int, required=True, help="how many tokens to draw (words and <eos>)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0, as distill.sampled_text_seed)")
    sample.add_argument("--ensemble", action="append", default=[], metavar="MODEL",
                        help="another float model whose probabilities are averaged with the teacher's (repeatable)")
    sample.add_argument("--output", help="write the text here instead of the teacher's cache")
    sample.set_defaults(func=cmd_sample)

    def model_options(command):
        command.add_argument("model", help="a model directory (with its tokenizer) or a Hub id")
        command.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
        command.add_argument("--batch-size", type=int, default=64, help="sentences scored at once (default 64)")
        command.add_argument("--trust-remote-code", action="store_true", help="run the code the checkpoint carries")
        command.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        command.add_argument("--keep-packed", action="store_true",
                             help="keep a packed model 1-bit in memory, at work too (products computed from the sign "
                                  "bits and codes; ~1/30 of the memory)")
        command.add_argument("--threads", type=positive_int, default=None,
                             help="CPU threads for the model (default: torch's, one a core); on cores busy with "
                                  "other jobs, 1 can be much faster")

    score = commands.add_parser(
        "score", help="score each line of a text file (TSV: log10 prob, tokens, OOVs, perplexity) and the corpus",
        description="Each line is scored on its own from a fresh state as `w1 ... wn <eos>`. Output: one TSV line per "
                    "input line (log10 probability, scored tokens = words + 1, OOV words, perplexity), then a corpus "
                    "summary on lines starting with '#'. An empty line is scored as `<eos>` alone unless --skip-empty "
                    "(skipped lines get no output line).")
    model_options(score)
    score.add_argument("file", help="UTF-8 text, one sentence a line, tokenized like the training text ('-': stdin)")
    score.add_argument("--skip-empty", action="store_true", help="leave empty lines out (no output line, not counted)")
    score.set_defaults(func=cmd_score)

    rescore = commands.add_parser(
        "rescore", help="rescore ASR n-best lists: am_score + W * LM log-prob (+ W0 * lm_score) + P * words",
        description="Reads n-best lists (JSON Lines, Kaldi text with --scores, or NeMo beam output with --beam-width), "
                    "picks the best hypothesis of each utterance after rescoring, writes the choices (--out, or "
                    "stdout) and prints WER before/after and the oracle WER (on stderr) when references exist.")
    model_options(rescore)
    rescore.add_argument("nbest", help="n-best lists: JSON Lines, Kaldi `UTT-ID-N words` text, or NeMo beam TSV")
    weight = rescore.add_mutually_exclusive_group()
    weight.add_argument("--lm-weight", type=float, default=None, help="weight W of the LM log-prob (default 1.0)")
    weight.add_argument("--tune-on", metavar="DEV_NBEST", help="grid-search W (and P unless --penalty) on these dev lists")
    rescore.add_argument("--penalty", type=float, default=None, help="word insertion penalty P (default 0, or tuned)")
    rescore.add_argument("--first-pass-weight", type=float, default=0.0, help="weight W0 of the first-pass lm_score")
    rescore.add_argument("--format", choices=NBEST_FORMATS, default="jsonl",
                         help="input format; the choices are written as JSON Lines (Kaldi text for kaldi)")
    rescore.add_argument("--beam-width", type=int, help="nemo: hypotheses per utterance in the beam output")
    rescore.add_argument("--scores", help="kaldi: the `UTT-ID-N score` file of NBEST")
    rescore.add_argument("--refs", help="kaldi: `UTT-ID words` references; nemo: one reference a line, or a manifest")
    rescore.add_argument("--dev-scores", help="kaldi: the score file of DEV_NBEST")
    rescore.add_argument("--dev-refs", help="kaldi: the references of DEV_NBEST (needed for tuning)")
    rescore.add_argument("--costs", action="store_true", help="kaldi: the scores are costs (negated log-likelihoods)")
    rescore.add_argument("--out", help="write the chosen hypotheses here (default: stdout)")
    rescore.set_defaults(func=cmd_rescore)

    push = commands.add_parser(
        "push", help="upload a trained model (packed weights, tokenizer, code, model card) to the Hugging Face Hub",
        description="Uploads the packed checkpoint, tokenizer, remote-code files, metrics, training curve and a "
                    "generated README.md model card; never the float master (DIRECTORY/master) or training state.")
    push.add_argument("directory", help="a training run directory or a saved model directory with its tokenizer")
    push.add_argument("repo_id", help="the Hub repository, e.g. me/softbin-lstm-wt2")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--token", help="a Hugging Face token with write access (default: HF_TOKEN or the saved login)")
    push.add_argument("--license", help="license id for the model card metadata, e.g. apache-2.0")
    push.add_argument("--card-template", help="a model card template to use instead of the packaged one")
    push.add_argument("--dry-run", metavar="FOLDER", help="only prepare the upload in FOLDER (a new folder), upload nothing")
    push.set_defaults(func=cmd_push)

    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command != "train" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # `train` parses its own options
    reuse_freed_memory()
    try:
        status = args.func(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"hf-softbin {args.command}: error: {err}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
