"""``python -m models``: the operator's command line (see ``models.cli``)."""

import sys

from config import ConfigError

try:
    from models.cli import main

    code = main()
except ConfigError as exc:
    # A setting the worker would refuse at start (handler.py exits 2 naming it): the
    # same line here, not a traceback. Settings are read as commands need them.
    print(f"configuration: {exc.args[0]}", file=sys.stderr)
    code = 2
sys.exit(code)
