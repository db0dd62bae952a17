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
        model.clip_latent_weights_()
    return model.eval()


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
                     "packed_products.py", "checkpoint.py", "pipeline_text_scoring.py")

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
