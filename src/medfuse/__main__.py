"""``python -m medfuse`` runs the ``medfuse`` command."""

import sys

from .cli import main

sys.exit(main())
