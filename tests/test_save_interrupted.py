"""A save killed at any step leaves a directory that still loads one whole model, and no debris after the next save.

Each step of a save is killed in turn, deterministically: a forked child saves the second model over the first and
dies (`os._exit`, no cleanup, as under SIGKILL) when it reaches the k-th file move of the staged save, for every k,
and once after the last move, before the directory is flushed.
"""

import multiprocessing
import os

import torch

from hf_softbin import SoftBinLSTMConfig, SoftBinLSTMForCausalLM
from hf_softbin.models.softbin_lstm.checkpoint import STAGING_PREFIX

IDS = torch.tensor([[1, 2, 3, 4, 5]])
KILLED = 99  # the exit status of a child that died where it was told to


def two_models():
    """Two models whose configs differ, so a directory mixing their files could not load."""
    models = []
    for seed, hidden in ((0, 16), (1, 24)):
        torch.manual_seed(seed)
        config = SoftBinLSTMConfig(vocab_size=30, embedding_size=8, hidden_size=hidden, num_hidden_layers=1,
                                   dropout=0.0)
        models.append(SoftBinLSTMForCausalLM(config).eval())
    return models


def moves_of_a_save(model, directory) -> int:
    """How many files a save moves into place (every os.replace of the staged save)."""
    calls = []
    real_replace = os.replace
    os.replace = lambda *args: calls.append(args) or real_replace(*args)
    try:
        model.save_pretrained(directory)
    finally:
        os.replace = real_replace
    return len(calls)


def save_and_die_at(model, directory: str, step: int):
    """In the child: save, and die just before the `step`-th move (or, past the last one, before the flush)."""
    real_replace, real_fsync = os.replace, os.fsync
    moves = []

    def replace(*args):
        if len(moves) == step:
            os._exit(KILLED)
        moves.append(args)
        real_replace(*args)

    def fsync(fd):
        if len(moves) == step:
            os._exit(KILLED)
        real_fsync(fd)

    os.replace, os.fsync = replace, fsync
    model.save_pretrained(directory)
    os._exit(0)


def test_a_save_killed_at_each_step_leaves_one_whole_model_and_the_next_save_cleans_up(tmp_path):
    models = two_models()
    with torch.no_grad():
        expected = [model(IDS).logits for model in models]
    steps = moves_of_a_save(models[1], tmp_path / "count")
    assert steps >= 3  # config.json, the remote code, the weights at least
    context = multiprocessing.get_context("fork")
    survivors = []
    for step in range(steps + 1):
        directory = tmp_path / f"killed-at-{step}"
        models[0].save_pretrained(directory)
        child = context.Process(target=save_and_die_at, args=(models[1], str(directory), step))
        child.start()
        child.join()
        assert child.exitcode == KILLED, (step, child.exitcode)
        assert any(name.startswith(STAGING_PREFIX) for name in os.listdir(directory))  # the kill left its staging
        loaded = SoftBinLSTMForCausalLM.from_pretrained(directory)
        with torch.no_grad():
            got = loaded(IDS).logits
        matches = [index for index, logits in enumerate(expected)
                   if logits.shape == got.shape and torch.equal(logits, got)]
        assert matches, f"killed before move {step}: the directory no longer loads either model"
        survivors.append(matches[0])
        models[1].save_pretrained(directory)
        assert not [name for name in os.listdir(directory) if name.startswith((STAGING_PREFIX, ".tmp-"))]
    # The weights move last: every kill before it leaves the first model, the kill after it the second.
    assert survivors == [0] * steps + [1]
