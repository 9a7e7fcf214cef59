#!/bin/sh
# Create the handler's virtual environment from the lockfile, and nothing else.
#
# usage: docker/install.sh VENV_DIR LOCKFILE
#
# The Dockerfile runs this script, and tests/image/test_image_smoke.py replays it
# in a fresh venv, so the image's install step and its test cannot drift apart.
# `uv pip sync` makes the venv exactly the lockfile: every package pinned, every
# wheel checked against its sha256, no resolver run at build time.
# `--only-binary :all:` because the slim image has no compiler: a package that
# only ships an sdist must fail here, not half-build inside a RUN step.
# Which Python: $UV_PYTHON when set (the Dockerfile sets it), else any 3.11.
set -eu

venv="${1:?usage: docker/install.sh VENV_DIR LOCKFILE}"
lock="${2:?usage: docker/install.sh VENV_DIR LOCKFILE}"

uv venv --python "${UV_PYTHON:-3.11}" "$venv"
uv pip sync --python "$venv/bin/python" --require-hashes --only-binary :all: "$lock"
