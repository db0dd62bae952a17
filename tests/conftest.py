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
