"""``python -m models``: the operator's command line (see ``models.cli``)."""

import sys

from models.cli import main

sys.exit(main())
