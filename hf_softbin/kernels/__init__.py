"""The compiled kernel for keep-packed products (packed_products.cpp), built on first use.

The model code (the remote-code bundle, hf_softbin/models/softbin_lstm) computes products with packed matrices in
pure torch, and uses this kernel when `import hf_softbin` has registered `load` with it
(`packed_products.use_compiled_kernel`). The source and its loader live here, outside the bundle, because a saved
checkpoint carries only the bundle's Python files as remote code: remote code keeps the pure-torch path, and building
C++ stays a decision of the installed package.

The first keep-packed product in a process builds the kernel with `torch.utils.cpp_extension` (the system C++
compiler and ninja; about half a minute) into a per-user cache, where PyTorch keeps its JIT extensions
(`$TORCH_EXTENSIONS_DIR`, by default ~/.cache/torch_extensions), in a folder named by the torch version, Python,
machine and source; later processes load it from there. Flags: -O3 and OpenMP only, no instruction-set flags, so a
cache shared by machines of one architecture stays valid. Without a compiler, or when the build fails, one log line
says so and the pure-torch products are used.
"""

import hashlib
import os
import platform
import shutil
import sys

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "packed_products.cpp")
NAME = "hf_softbin_packed_products"
CFLAGS = ["-O3", "-fopenmp"]  # OpenMP: at::parallel_for splits rows across PyTorch's own OpenMP threads
DISABLE_VARIABLE = "HF_SOFTBIN_NO_KERNEL"


def build_directory() -> str:
    """Where the built kernel is cached: per user, per torch version, Python version, machine and source."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "torch_extensions")
    with open(SOURCE, "rb") as handle:
        source = hashlib.sha256(handle.read()).hexdigest()[:12]
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    version = f"torch{torch.__version__}-{python}-{platform.machine()}-{source}"
    return os.path.join(root, "hf_softbin", version.replace("+", "_"))


def build_problem() -> str | None:
    """Why the kernel cannot be built here (no compiler, no ninja), or None."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler found ({compiler!r}; set CXX to choose one)"
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    return None


def load():
    """Build (first use) or load the kernel; its ops (`torch.ops.hf_softbin`), or None after one log line.

    Setting the environment variable HF_SOFTBIN_NO_KERNEL=1 skips it (pure-torch products)."""
    if os.environ.get(DISABLE_VARIABLE, "") not in ("", "0"):
        logger.info(f"{DISABLE_VARIABLE} is set: keep-packed products use pure torch")
        return None
    problem = build_problem()
    if problem is None:
        try:
            return _build_and_load()
        except Exception as error:  # noqa: BLE001  (any failure of a build must leave a working model)
            lines = [line for line in str(error).strip().splitlines() if line.strip()]
            problem = f"the build failed: {type(error).__name__}: {lines[-1] if lines else ''}"
    logger.warning(f"hf-softbin: the kernel for keep-packed products is not available ({problem}); keep-packed "
                   "models use the slower pure-torch products")
    return None


def _build_and_load():
    from torch.utils.cpp_extension import load as load_extension

    directory = build_directory()
    os.makedirs(directory, exist_ok=True)
    if not os.path.exists(os.path.join(directory, NAME + ".so")):
        logger.warning(f"hf-softbin: building the kernel for keep-packed products once, into {directory} "
                       "(about half a minute)")
    load_extension(NAME, [SOURCE], extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"], build_directory=directory,
                   is_python_module=False)
    return torch.ops.hf_softbin
