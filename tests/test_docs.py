"""README.md and the model card say what the code does: every code snippet runs (on a demo run built small here),
every command line parses and the runnable ones run, and the troubleshooting table quotes the messages Transformers
really gives."""

import contextlib
import io
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from hf_softbin.cli import build_parser
from hf_softbin.cli import main as cli_main
from hf_softbin.corpus import write_default_corpus
from hf_softbin.demo import demo_recipes, format_table
from hf_softbin.model_card import render_model_card
from hf_softbin.scoring.nbest_io import read_nbest_jsonl, write_nbest_jsonl
from hf_softbin.scoring.synthetic_nbest import make_corrupted_nbest
from hf_softbin.training.loop import train
from hf_softbin.training.recipe import load_run_config, parse_overrides

from conftest import BLOCK_HF_SOFTBIN, REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
TINY = {"model.embedding_size": 16, "model.hidden_size": 16, "training.max_steps": 3, "training.batch_size": 8,
        "training.eval_batch_size": 8, "training.bptt": 20}


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block."""
    return [(match.group(1), match.group(2)) for match in re.finditer(r"```(\w*)\n(.*?)```", markdown, re.S)]


def command_lines(code: str) -> list[str]:
    """The commands of a shell block: comments dropped, `&&` chains split."""
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in code.splitlines()]
    return [part.strip() for line in lines if line and not line.startswith("#") for part in line.split("&&")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working directory as the README assumes one: the repository's scripts, configs and benchmarks, and a
    `demo-output/` made by the demo's own recipes, only with a tiny model and three steps."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("scripts", "configs", "benchmarks"):
        (root / name).symlink_to(REPO_ROOT / name)
    output = root / "demo-output"
    corpus = write_default_corpus(output / "corpus")
    for recipe in demo_recipes(str(output), corpus):
        train(load_run_config(None, {**recipe, **TINY}))
    return root


def run_python(snippets: list[str], cwd: Path, *, without_package: bool = False) -> None:
    """Run code snippets one after the other in one fresh process (each in its own namespace)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(cwd / "modules"))
    runner = (BLOCK_HF_SOFTBIN if without_package else "") + textwrap.dedent("""
        import json, sys
        for code in json.loads(sys.argv[1]):
            print("---- running:\\n" + code, file=sys.stderr, flush=True)
            exec(compile(code, "<snippet>", "exec"), {"__name__": "__main__"})
    """)
    result = subprocess.run([sys.executable, "-c", runner, json.dumps(snippets)], cwd=cwd, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]


def run_command(command: str) -> None:
    """Run an `hf-softbin` or `python scripts/...` command line in this process (`> file` redirects its output)."""
    words = shlex.split(command)
    target = None
    if ">" in words:
        words, target = words[:words.index(">")], words[words.index(">") + 1]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        if words[0] == "hf-softbin":
            status = cli_main(words[1:])
        else:
            status = run_script(words[1], words[2:])
    assert status in (0, None), command
    if target:
        Path(target).write_text(output.getvalue())


def run_script(path: str, argv: list[str]):
    old_argv = sys.argv
    sys.argv = [path, *argv]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        return stop.code
    finally:
        sys.argv = old_argv


def check_command(command: str, cwd: Path) -> None:
    """Run a command of the docs where it can run here (offline, in seconds); otherwise check everything short of
    running it: the CLI parses its arguments, a recipe and its overrides load, a script exists and has its flags."""
    words = shlex.split(command.split(" > ")[0])  # the command's own arguments, not the shell's redirection
    words = [word for word in words if not (word.startswith("[") and word.endswith("]"))]  # [optional] flags
    program, args = words[0], words[1:]
    if program in ("python3", ".") or command in ("python -m pytest -q", "pip install torch==2.13.0"):
        return  # setting up the environment the tests run in
    if program == "pip":
        extras = re.findall(r"\[(\w+)\]", command)
        pyproject = (REPO_ROOT / "pyproject.toml").read_text()
        assert all(re.search(rf"^{extra} = \[", pyproject, re.M) for extra in extras), command
        return
    if program in ("accelerate", "torchrun"):
        load_run_config(str(cwd / args[args.index("train") + 1]))
        return
    if program == "bash":
        assert (REPO_ROOT / args[0]).is_file(), command
        return
    if program == "python":
        script = REPO_ROOT / args[0]
        assert script.is_file(), command
        if script.name == "make_corrupted_nbest.py":
            run_command(command)
        else:  # hours of training or tools to install: its flags must at least be there
            flags = [word for word in args if word.startswith("--")]
            assert all(f'"{flag}"' in script.read_text() for flag in flags), command
        return
    assert program == "hf-softbin", f"a command the docs test does not know how to check: {command}"
    parsed, extra = build_parser().parse_known_args(args)
    if parsed.command == "train":  # hours, or a Hub dataset: the recipe and its overrides load
        load_run_config(str(cwd / args[1]), parse_overrides(args[2:]))
        return
    assert not extra, command
    runnable_here = parsed.command in ("score", "rescore", "summary") or getattr(parsed, "dry_run", None)
    if runnable_here and (cwd / getattr(parsed, "model", getattr(parsed, "directory", ""))).exists():
        run_command(command)


def test_every_readme_snippet_and_command_works(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    snippets = [code for language, code in code_blocks(README) if language == "python"]
    assert len(snippets) >= 4
    run_python(snippets, workdir)
    commands = [line for language, code in code_blocks(README) if language == "bash" for line in command_lines(code)]
    assert len(commands) >= 20
    for command in commands:
        check_command(command, workdir)
    assert (workdir / "best.jsonl").is_file() and (workdir / "scores.tsv").is_file()
    assert (workdir / "upload-preview" / "README.md").is_file()
    for language, code in code_blocks(README):
        if language == "json":
            (workdir / "example.jsonl").write_text(json.dumps(json.loads(code)) + "\n")
            assert read_nbest_jsonl(workdir / "example.jsonl")[0].hyps
    assert {language for language, _ in code_blocks(README)} <= {"python", "bash", "json", "text"}


def test_the_readme_demo_table_is_what_the_demo_prints():
    shown = next(code for language, code in code_blocks(README) if language == "text" and "test ppl" in code)
    teacher = {"test_ppl": 69.6, "model_bytes": 3267 * 1024}
    student = {"test_ppl": 70.0, "model_bytes": round(3267 * 1024 / 26.0)}
    assert format_table(teacher, student, 46.4) == shown.strip()


def test_every_model_card_snippet_and_command_works(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    student = workdir / "demo-output" / "student"
    card = render_model_card(student, repo_id=str(student))
    lines = (workdir / "demo-output" / "corpus" / "test.txt").read_text().splitlines()
    (workdir / "sentences.txt").write_text("\n".join(lines[:20]) + "\n")
    write_nbest_jsonl(make_corrupted_nbest(lines[20:40], 4, 1), workdir / "nbest.jsonl")
    write_nbest_jsonl(make_corrupted_nbest(lines[40:60], 4, 2), workdir / "dev_nbest.jsonl")
    blocks = code_blocks(card)
    snippets = [code for language, code in blocks if language == "python"]
    assert len(snippets) == 2
    # The card promises remote code: what does not import hf_softbin runs without it.
    run_python([code for code in snippets if "hf_softbin" not in code], workdir, without_package=True)
    run_python([code for code in snippets if "hf_softbin" in code], workdir)
    commands = [line for language, code in blocks if language == "bash" for line in command_lines(code)]
    assert [command.split()[1] for command in commands] == ["score", "rescore"]
    for command in commands:
        run_command(command)
    assert (workdir / "best.jsonl").is_file()


# ---- the troubleshooting table -----------------------------------------------------------------------------------


def troubleshooting() -> str:
    return README.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]


def error_of(load) -> str:
    with pytest.raises(Exception) as raised:
        load()
    return str(raised.value)


def test_the_troubleshooting_table_quotes_what_transformers_says(workdir, tmp_path, monkeypatch):
    student = workdir / "demo-output" / "student"
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    for path in student.iterdir():
        if path.is_file() and path.name != "config.json":
            (no_config / path.name).write_bytes(path.read_bytes())
    half_tokenizer = tmp_path / "half-tokenizer"
    half_tokenizer.mkdir()
    for path in student.iterdir():
        if path.is_file() and path.name != "tokenizer.json":
            (half_tokenizer / path.name).write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(student)
    roads = {  # what the table quotes: how to make Transformers say it
        "Should have a `model_type` key in its config.json": lambda: AutoModelForCausalLM.from_pretrained(no_config),
        "Repo id must be in the form 'repo_name' or 'namespace/repo_name'":
            lambda: AutoModelForCausalLM.from_pretrained(str(tmp_path / "missing")),
        "Repo id must use alphanumeric chars": lambda: AutoTokenizer.from_pretrained("./missing"),
        "We couldn't connect to 'https://huggingface.co' to load the files":
            lambda: pipeline("text-scoring", model="runs/missing"),
        "You need to have sentencepiece or tiktoken installed": lambda: AutoTokenizer.from_pretrained(half_tokenizer),
        "Impossible to guess which tokenizer to use": lambda: pipeline("text-generation", model=model),
    }
    table = troubleshooting()
    for quoted, road in roads.items():
        assert quoted in error_of(road), quoted
        assert quoted in table, quoted
    # without hf_softbin imported, in a fresh process
    script = BLOCK_HF_SOFTBIN + textwrap.dedent(f"""
        from transformers import pipeline
        try:
            pipeline("text-scoring", model={str(student)!r})
        except ValueError as err:
            print(err)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    for quoted in ("Do you wish to run the custom code?", "contains custom code which must be executed to correctly "
                   "load the model"):
        assert quoted in result.stdout + result.stderr, result.stderr[-2000:]
        assert quoted in table, quoted

