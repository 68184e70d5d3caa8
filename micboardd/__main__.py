"""``python -m micboardd`` is the same as the ``micboardd`` command."""

import sys

from .cli import main

sys.exit(main())
