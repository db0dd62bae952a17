import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
WT2_MINI = REPO_ROOT.parent / "shared" / "data" / "wt2-mini"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


# ---- text ---------------------------------------------------------------------------------------------------------

# A few fixed sentences and their words, for tokenizers and tiny models.
WORDS = "the a cat dog bird sat ran sang on under over mat tree roof today again".split()
SENTENCES = ["the cat sat on the mat", "a dog ran under the tree", "the bird sang over the roof today",
             "a cat sat again", "the dog sang on a mat today again"]

# A tiny grammar, NP VP [PP], for as many sentences as a test wants: word order is all a bigram model can learn, and all
# it needs to.
DET = ["the", "a", "every", "some"]
ADJ = ["small", "red", "quiet", "old", "clever"]
NOUN = ["cat", "dog", "bird", "child", "teacher", "river", "house", "garden"]
VERB = ["sees", "likes", "follows", "finds", "chases"]
PREP = ["near", "behind", "under", "in"]


def toy_sentences(count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)

    def noun_phrase():
        return [rng.choice(DET)] + ([rng.choice(ADJ)] if rng.random() < 0.5 else []) + [rng.choice(NOUN)]

    sentences = []
    for _ in range(count):
        words = noun_phrase() + [rng.choice(VERB)] + noun_phrase()
        if rng.random() < 0.4:
            words += [rng.choice(PREP)] + noun_phrase()
        sentences.append(" ".join(words))
    return sentences


@pytest.fixture
def tiny_config():
    from hf_softbin import SoftBinLSTMConfig

    def make(**overrides):
        values = dict(vocab_size=40, embedding_size=12, hidden_size=16, num_hidden_layers=2, dropout=0.0)
        values.update(overrides)
        return SoftBinLSTMConfig(**values)

    return make


def train_a_little(model, stream: torch.Tensor | None = None, steps: int = 3, lr: float = 0.05, seed: int = 0):
    """A few Adam steps (latent weights clipped), so scalars and biases leave their initial values and predictions
    depend on the context: on random windows of a token `stream`, or on random ids without one."""
    from hf_softbin.training.hooks import clip_latent_weights_

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        if stream is None:
            ids = torch.randint(0, model.config.vocab_size, (4, 10), generator=generator)
        else:
            width = min(24, len(stream) - 1)
            starts = torch.randint(0, len(stream) - width, (16,), generator=generator)
            ids = torch.stack([stream[start:start + width] for start in starts])
        optimizer.zero_grad()
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        clip_latent_weights_(model)
    return model.eval()


def stream_of(tokenizer, lines: list[str]) -> torch.Tensor:
    """The training stream of `lines` (`[eos, w.., eos, w.., eos]`), built as a training run builds it."""
    import datasets

    from hf_softbin.training.data import token_stream, tokenize_splits

    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": list(lines)})})
    return token_stream(tokenize_splits(splits, tokenizer, "text")["train"], tokenizer.eos_token_id)


@pytest.fixture
def wt2_mini():
    if not (WT2_MINI / "train.txt").exists():
        pytest.skip(f"wt2-mini corpus not found at {WT2_MINI}")
    return WT2_MINI


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and much faster than on two when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def packed_kernel():
    """The compiled kernel for keep-packed products, built here when a compiler is present (a failed build fails)."""
    from hf_softbin import kernels

    problem = kernels.build_problem()
    if problem:
        pytest.skip(f"the kernel for keep-packed products cannot be built on this machine: {problem}")
    ops = kernels.load()
    assert ops is not None, "a compiler and ninja are present but the kernel did not build: see the log above"
    return ops


@pytest.fixture(params=["kernel", "torch"])
def product_path(request, monkeypatch):
    """Run a test with keep-packed products from the compiled kernel, then again with the pure-torch ones."""
    from hf_softbin.models.softbin_lstm import packed_products

    ops = request.getfixturevalue("packed_kernel") if request.param == "kernel" else None
    monkeypatch.setattr(packed_products, "_kernel_loaded", True)
    monkeypatch.setattr(packed_products, "_kernel", ops)
    return request.param


# The files a saved checkpoint carries as remote code.
REMOTE_CODE_FILES = ("configuration_softbin_lstm.py", "modeling_softbin_lstm.py", "matrices.py", "quantizers.py",
                     "packed_products.py", "checkpoint.py", "resizing.py", "pipeline_text_scoring.py")

# Python source that makes `import hf_softbin` fail, for the remote-code tests' subprocesses.
BLOCK_HF_SOFTBIN = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_softbin" or name.startswith("hf_softbin."):
            raise ImportError("hf_softbin is blocked in this process")
sys.meta_path.insert(0, Block())
try:
    import hf_softbin
    raise SystemExit("hf_softbin was importable")
except ImportError:
    pass
"""


# ---- training runs: a small generated corpus, recipes for it, and a float teacher trained on it ----------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from hf_softbin.corpus import generate_corpus

    directory = tmp_path_factory.mktemp("corpus")
    lines = generate_corpus(700, seed=3)
    for name, part in (("train", lines[:500]), ("valid", lines[500:600]), ("test", lines[600:])):
        (directory / f"{name}.txt").write_text("\n".join(part) + "\n")
    return directory


def recipe(corpus, output_dir, **sections):
    """A recipe for a tiny model on `corpus`; `sections` update its sections (`model={...}`, `training={...}`)."""
    values = {
        "output_dir": str(output_dir),
        "data": {"train_file": str(corpus / "train.txt"), "validation_file": str(corpus / "valid.txt"),
                 "test_file": str(corpus / "test.txt"), "max_vocab_size": 300},
        "model": {"embedding_size": 16, "hidden_size": 16, "num_hidden_layers": 1, "dropout": 0.1, "binarize": False},
        "training": {"max_epochs": 2, "batch_size": 8, "eval_batch_size": 4, "bptt": 10, "optimizer": "adam", "lr": 0.01,
                     "log_every": 1, "log_with": None},
    }
    for section, overrides in sections.items():
        values.setdefault(section, {}).update(overrides)
    return values


def write_recipe(path, values):
    import yaml

    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def teacher_run(corpus, tmp_path_factory):
    """A float teacher trained for two epochs on `corpus`: its run directory and metrics."""
    from hf_softbin.training.loop import train
    from hf_softbin.training.recipe import load_run_config

    output = tmp_path_factory.mktemp("teacher")
    path = write_recipe(output / "teacher.yaml", recipe(corpus, output / "run"))
    metrics = train(load_run_config(str(path)))
    return output / "run", metrics
