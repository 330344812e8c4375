"""``python -m sdekit``: the command line of :mod:`sdekit.cli`."""

import sys

from sdekit.cli import main

sys.exit(main())
