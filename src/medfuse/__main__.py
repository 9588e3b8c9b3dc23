"""``python -m medfuse`` runs the ``medfuse`` command."""

import sys

from .cli.main import main

sys.exit(main())
