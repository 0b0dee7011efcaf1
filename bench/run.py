"""Run the Sluice benchmark: ``.venv/bin/python bench/run.py [--smoke] [--out DIR]``.

See bench/README.md. Never imported by the gateway; the harness lives in bench/sluice_bench/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sluice_bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
