"""``python -m sluice.cli``: the same commands as the ``sluice`` script."""

import sys

from sluice.cli import main

sys.exit(main())
