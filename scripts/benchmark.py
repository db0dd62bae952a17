#!/usr/bin/env python
"""Regenerate benchmarks/RESULTS.md: `python scripts/benchmark.py` (about an hour on 2 cores) or `--quick`."""

import sys

from hf_softbin.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
