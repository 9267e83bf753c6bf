"""``python -m volunteer`` is the ``volunteer`` command."""

import sys

from volunteer.cli import main

sys.exit(main())
