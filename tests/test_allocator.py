"""The command line keeps freed memory for the next step instead of faulting it in again."""

import json
import subprocess
import sys

import pytest

from hf_softbin import cli

# In a fresh process (this one may have taken the setting already): page faults of three steps that each allocate
# and free one training step's logits, 700 tokens x wt2-mini's 13,778 words (39 MB, above glibc's mmap threshold),
# before and after reuse_freed_memory().
FAULTS_OF_STEPS = """
import json, resource, torch
from hf_softbin.allocator import reuse_freed_memory

def faults():
    torch.ones(700, 13_778).sum()  # the first allocation of that size may fault in any case
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        torch.ones(700, 13_778).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
print(json.dumps({"default": default, "taken": reuse_freed_memory(), "kept": faults()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_a_large_buffer_freed_in_one_step_is_reused_in_the_next_without_page_faults():
    result = json.loads(subprocess.run([sys.executable, "-c", FAULTS_OF_STEPS], capture_output=True, text=True,
                                       check=True).stdout)
    pages = 3 * 700 * 13_778 * 4 // 4096
    assert result["default"] > pages  # glibc by default: a fresh mmap each step, every page faulted in again
    assert result["taken"] and result["kept"] < pages // 20


def test_every_command_runs_with_freed_memory_kept(monkeypatch, tmp_path):
    taken = []
    monkeypatch.setattr(cli, "reuse_freed_memory", lambda: taken.append(True))
    assert cli.main(["summary", str(tmp_path / "absent")]) == 2  # any command, even one that fails
    assert taken == [True]
