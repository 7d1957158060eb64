"""``python -m switchyard_local.chaos`` (``make chaos``): see ``cli``."""

import sys

from switchyard_local.chaos.cli import main

sys.exit(main())
