# syntax=docker/dockerfile:1
#
# media-worker: a slim image. Only the handler and its small locked dependencies
# live here; torch, model libraries and weights are prepared per profile on the
# network volume (python -m models prepare ...) or, when BAKE_PROFILES is set,
# baked into the image at build time.
#
# Rules this file keeps (tests/image/ checks each one without a Docker engine):
# - a -base- CUDA image: the CUDA/cuDNN libraries come inside each profile's torch
#   wheels, so no toolkit, no -devel image, no nvcc, no flash-attn build here;
# - every COPY source exists and survives .dockerignore; CMD's target exists;
# - the dependency install is docker/install.sh, the same script the image smoke
#   test replays, from the same lockfile (requirements.lock, with hashes).
#
#   docker buildx build --platform linux/amd64 -t media-worker .
#   docker buildx build --platform linux/amd64 --build-arg BAKE_PROFILES=piper -t media-worker:piper .

# The CUDA floor (12.6) is what the profiles' torch wheels need from the driver;
# hub.json's allowedCudaVersions must not go below it.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04
# Keep equal to the uv version in requirements.lock (a test checks).
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# --- build: Python and the handler's venv; uv itself stays behind ---------------
FROM ${CUDA_IMAGE} AS build

ARG PYTHON_VERSION=3.11.18
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_PYTHON=${PYTHON_VERSION} \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

COPY --from=uv /uv /usr/local/bin/uv
COPY docker/install.sh requirements.lock /tmp/build/

# A uv-managed CPython (python-build-standalone): one pinned, relocatable
# interpreter, no PPA. Its test suite is dead weight in a worker image.
RUN uv python install "${PYTHON_VERSION}" \
    && rm -rf /opt/python/cpython-*/lib/python3.*/test \
    && sh /tmp/build/install.sh /opt/venv /tmp/build/requirements.lock

# --- final ---------------------------------------------------------------------
FROM ${CUDA_IMAGE}

LABEL org.opencontainers.image.title="media-worker" \
      org.opencontainers.image.description="RunPod serverless worker: TTS, voice cloning, video restoration" \
      org.opencontainers.image.licenses="MIT"

# Same paths as in the build stage: the venv points at the interpreter by path.
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv

# PATH: `python` and `uv` are the venv's (uv comes from the lockfile).
# UV_PYTHON_INSTALL_DIR: the bootstrapper's uv finds the image's interpreter
# when it builds a profile environment.
ENV PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_LINK_MODE=copy \
    MEDIA_WORKER_ENVS_DIR=/opt/media-worker/envs \
    HF_HUB_DISABLE_TELEMETRY=1

WORKDIR /app
COPY handler.py config.py errors.py pyproject.toml test_input.json ./
COPY bootstrap/ bootstrap/
COPY media/ media/
COPY models/ models/
COPY runners/ runners/
COPY runtime/ runtime/
COPY storage/ storage/

# Bake profiles into the image for endpoints without a network volume, e.g.
#   --build-arg BAKE_PROFILES="piper"
# Empty (the default) keeps the image slim: profiles are then prepared on the volume.
# The unpacked environments land in /opt/media-worker/envs, which ensure() checks
# before any volume. prepare runs with a throw-away home: its packed archives would
# only duplicate the unpacked environments, so they are removed; its weights (an HF
# cache with records) move to /opt/media-worker/hf (MEDIA_WORKER_IMAGE_WEIGHTS_DIR),
# which ensure() checks before the volume's cache, so a worker with a volume mounted
# does not download them again.
ARG BAKE_PROFILES=""
# Word splitting of BAKE_PROFILES is intended: one argument per profile.
# hadolint ignore=SC2086
RUN mkdir -p /opt/media-worker/envs \
    && if [ -n "${BAKE_PROFILES}" ]; then \
        MEDIA_WORKER_HOME=/tmp/media-worker-bake python -m models prepare ${BAKE_PROFILES} \
        && if [ -d /tmp/media-worker-bake/hf ]; then \
            mv /tmp/media-worker-bake/hf /opt/media-worker/hf; fi \
        && rm -rf /tmp/media-worker-bake; \
    fi

CMD ["python", "-u", "handler.py"]
