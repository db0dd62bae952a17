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
