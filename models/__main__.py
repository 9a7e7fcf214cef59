"""``python -m models schema``: print the job contract's JSON Schema."""

from __future__ import annotations

import argparse
import sys

from models.contract import json_schema_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    parser.add_argument("command", choices=["schema"])
    parser.parse_args(argv)
    sys.stdout.write(json_schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
