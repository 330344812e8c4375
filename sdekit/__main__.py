"""``python -m sdekit``: the command line of :mod:`sdekit.app.cli`."""

import sys

from sdekit.app.cli import main

sys.exit(main())
