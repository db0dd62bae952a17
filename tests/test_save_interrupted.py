"""A save killed at any moment leaves a directory that still loads one whole model, and no debris after the next."""

import multiprocessing
import os
import random
import time

import pytest
import torch

from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
from hf_softbin.models.softbin_lstm.checkpoint import STAGING_PREFIX

IDS = torch.tensor([[1, 2, 3, 4, 5]])


def two_models():
    """Two models whose configs differ, so a directory mixing their files could not load."""
    models = []
    for seed, hidden in ((0, 16), (1, 24)):
        torch.manual_seed(seed)
        config = SoftBinLSTMConfig(vocab_size=30, embedding_size=8, hidden_size=hidden, num_hidden_layers=1,
                                   dropout=0.0)
        models.append(SoftBinLSTMForCausalLM(config).eval())
    return models


def save_forever(directory):
    torch.set_num_threads(1)
    models = two_models()
    while True:
        for model in models:
            model.save_pretrained(directory)


def test_killed_saves_leave_one_whole_model_and_the_next_save_cleans_up(tmp_path):
    models = two_models()
    with torch.no_grad():
        expected = [model(IDS).logits for model in models]
    directory = tmp_path / "model"
    models[0].save_pretrained(directory)
    rng = random.Random(0)
    context = multiprocessing.get_context("fork")
    survivors = set()
    for _ in range(12):
        saver = context.Process(target=save_forever, args=(str(directory),), daemon=True)
        saver.start()
        time.sleep(rng.uniform(0.05, 0.6))
        saver.kill()
        saver.join()
        loaded = SoftBinLSTMForCausalLM.from_pretrained(directory)
        with torch.no_grad():
            got = loaded(IDS).logits
        matches = [index for index, logits in enumerate(expected) if logits.shape == got.shape and torch.equal(logits, got)]
        assert matches, "the directory no longer loads either model"
        survivors.add(matches[0])
    models[1].save_pretrained(directory)
    assert not [name for name in os.listdir(directory) if name.startswith((STAGING_PREFIX, ".tmp-"))]
    if len(survivors) < 2:
        pytest.fail(f"every kill left model {survivors}: the saves were not interrupted at different points")
