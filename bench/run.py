#!/usr/bin/env python3
"""grimOS services benchmark: `just bench` (full) and `just bench-quick` (CI smoke).

The entry point the Justfile runs; the harness itself is the `harness` package beside this
file (see its `__init__.py`): `.venv/bin/python bench/run.py [--quick] [--postgres URL] ...`.
"""

import sys

from harness.main import main

if __name__ == "__main__":
    sys.exit(main())
