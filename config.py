"""Every environment variable the worker reads, declared once, and how to declare one.

Each setting has a name, a default, a parser and a one-line doc. Read a value at
call time (``config.JOB_TIMEOUT_S.get()``), never at import, so tests and
subprocesses can change the environment.

Where a setting lives: one the worker (or several runners) reads is declared here;
one that a single runner reads is declared by that runner's module with
:func:`declare` (``runners.upscale.TILE``), and its readers use that object. Every
declaration lands in :data:`SETTINGS`. This module imports no project module (it is
the ground the others stand on), so it cannot list the runners' settings itself:
``models.registry`` imports every runner module when it collects their ``SPECS``,
and its ``SETTINGS`` is the whole list. The handler parses that list at start (a bad
value exits 2 naming it), and ``python -m models settings`` prints it as the tables
docs/reference/configuration.md carries (a test keeps them in sync).

Derived paths come from :func:`resolve_paths`, a pure function of the environment.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE | _FALSE:
        return value in _TRUE
    raise ValueError(f"expected one of {', '.join(sorted(_TRUE | _FALSE))}, got {raw!r}")


def parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


# The longest any time setting may be: a week, longer than RunPod lets a job run, and
# far below threading's TIMEOUT_MAX (a larger wait raises OverflowError mid-job).
MAX_SETTING_SECONDS = 7 * 24 * 3600.0


def parse_seconds(raw: str) -> float:
    """A finite number of seconds in (0, a week].

    NaN must be refused by name: every comparison with NaN is false, so
    ``MAX_AUDIO_S=nan`` would switch its cap off instead of failing (issue 20).
    """
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("must be a finite number of seconds")
    if not 0 < value <= MAX_SETTING_SECONDS:
        raise ValueError(f"must be > 0 and at most {MAX_SETTING_SECONDS:.0f} (a week)")
    return value


def parse_revision(raw: str) -> str:
    """A full 40-character commit hash: weights are pinned, never a branch or tag."""
    value = raw.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{40}", value):
        raise ValueError("must be a full commit hash (40 hex characters), not a branch or tag")
    return value


def parse_directory(raw: str) -> str:
    """An absolute directory path (``~`` expanded); whether it is usable is checked
    on disk at start by :func:`check_directories`, so parsing stays pure."""
    value = os.path.expanduser(raw.strip())
    if not os.path.isabs(value):
        raise ValueError("must be an absolute path (a relative one depends on the cwd)")
    return value


def parse_flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("use 1/true/yes/on or 0/false/no/off")


def parse_artifact_overrides(raw: str) -> tuple[tuple[str, str, str], ...]:
    """``(file name, url, sha256)`` per comma-separated ``<file name>=<url>#sha256=<hex>``."""
    out = []
    for entry in parse_list(raw):
        name, sep, rest = entry.partition("=")
        url, sep2, digest = rest.partition("#sha256=")
        if not (sep and sep2 and name.strip() and url.strip()):
            raise ValueError(f"{entry!r} is not <file name>=<url>#sha256=<hex>")
        if not re.fullmatch(r"[0-9a-f]{64}", digest.strip()):
            raise ValueError(f"{entry!r}: sha256 must be 64 lowercase hex characters")
        if not url.strip().startswith(("https://", "http://", "file://")):
            raise ValueError(f"{entry!r}: the url must be https://, http:// or file://")
        out.append((name.strip(), url.strip(), digest.strip()))
    return tuple(out)


def _in_range(parse: Callable[[str], T], low: T, high: T) -> Callable[[str], T]:
    def parse_in_range(raw: str) -> T:
        value = parse(raw)
        if not low <= value <= high:  # type: ignore[operator]
            raise ValueError(f"must be in {low}..{high}")
        return value

    return parse_in_range


def count(low: int, high: int) -> Callable[[str], int]:
    """A parser for an integer in ``low..high``: every count and size has a ceiling,
    so a typo of a few digits stops the worker instead of switching a cap off."""
    return _in_range(int, low, high)


def _one_of(*choices: str, fold: Callable[[str], str] = str.lower) -> Callable[[str], str]:
    """A parser that accepts one of ``choices``, compared after ``fold``."""

    def parse_choice(raw: str) -> str:
        value = fold(raw.strip())
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse_choice


def _url(*schemes: str) -> Callable[[str], str]:
    """A parser for a URL with one of ``schemes`` and a location."""

    def parse_url(raw: str) -> str:
        parts = urlsplit(raw.strip())
        if parts.scheme not in schemes:
            raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)} URL")
        if not (parts.hostname if parts.scheme != "file" else parts.path):
            raise ValueError("the URL names no location")
        return raw.strip()

    return parse_url


def _url_list(*schemes: str) -> Callable[[str], tuple[str, ...]]:
    parse_url = _url(*schemes)
    return lambda raw: tuple(parse_url(item) for item in parse_list(raw))


_INDEX_SCHEMES = ("https", "http", "file")  # what uv accepts as an index URL
# user:password@ in a URL (index URLs may carry credentials): never quoted in a message.
_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")


class ConfigError(ValueError):
    """An environment variable holds a value its parser rejects."""


@dataclass(frozen=True)
class Setting(Generic[T]):
    name: str
    default: T
    parse: Callable[[str], T]
    doc: str
    owner: str = "config"  # the module that declared it
    secret: bool = False

    def get(self, env: Mapping[str, str] | None = None) -> T:
        """The value from ``env`` (default ``os.environ``), else the default.

        Raises:
            ConfigError: the variable is set to something the parser rejects.
        """
        env = os.environ if env is None else env
        raw = env.get(self.name)
        if raw is None or (raw.strip() == "" and self.parse is not str):
            return self.default
        try:
            return self.parse(raw)
        except (ValueError, TypeError) as exc:
            if self.secret:  # the parser's message may quote the value
                raise ConfigError(f"{self.name}=<redacted> is invalid") from None
            shown = _USERINFO.sub("<redacted>@", raw)
            raise ConfigError(f"{self.name}={shown!r} is invalid: {exc}") from None


# Every setting declared so far, in declaration order: this module's below, then each
# runner module's as it is imported (complete once models.registry has imported them).
SETTINGS: list[Setting[Any]] = []


def declare(
    name: str,
    default: T,
    parse: Callable[[str], T],
    doc: str,
    *,
    owner: str = "config",
    secret: bool = False,
) -> Setting[T]:
    """Declare the setting ``name`` and add it to :data:`SETTINGS`.

    Call it at a module's top level, once: a runner module declares the settings
    only it reads with ``owner=__name__`` (the settings table groups them under
    that module).

    Raises:
        ValueError: ``name`` is declared already (one variable, one owner).
    """
    if any(s.name == name for s in SETTINGS):
        raise ValueError(f"{owner}: setting {name} is declared already")
    setting = Setting(name, default, parse, doc, owner, secret)
    SETTINGS.append(setting)
    return setting


# --- Volume and local disk -------------------------------------------------------
HOME = declare(
    "MEDIA_WORKER_HOME",
    "",
    parse_directory,
    "Worker state root. Default: /runpod-volume/media-worker when /runpod-volume is "
    "mounted, else ~/.cache/media-worker.",
)
ENVS_DIR = declare(
    "MEDIA_WORKER_ENVS_DIR",
    "",
    parse_directory,
    "Local-disk directory for unpacked profile environments. Default: "
    "/opt/media-worker/envs when writable, else <home>/local-envs.",
)
OUTPUT_DIR = declare(
    "MEDIA_WORKER_OUTPUT_DIR",
    "",
    parse_directory,
    "Local output store (used when no S3 bucket is configured). Default: <home>/outputs "
    "on a volume, else ./outputs.",
)
SCRATCH_DIR = declare(
    "MEDIA_WORKER_SCRATCH_DIR",
    "",
    parse_directory,
    "Where per-job scratch directories are made (removed when the job ends). "
    "Default: the system temp dir.",
)
PREPARE_PROFILES = declare(
    "MEDIA_WORKER_PREPARE",
    (),
    parse_list,
    "Comma-separated profiles to prepare in the background right after start.",
)

# --- Profile builds ----------------------------------------------------------------
INDEX_URL = declare(
    "MEDIA_WORKER_INDEX_URL",
    "",
    _url(*_INDEX_SCHEMES),
    "Replaces every profile's main package index (a PyPI mirror). Part of the spec hash.",
)
EXTRA_INDEX_URLS = declare(
    "MEDIA_WORKER_EXTRA_INDEX_URLS",
    (),
    _url_list(*_INDEX_SCHEMES),
    "Comma-separated; replaces every profile's extra indexes (e.g. https://pypi.org/simple "
    "on a machine with no GPU: PyPI's torch runs on a CPU, and PyPI's torchaudio and "
    "torchcodec load only beside it, not beside a +cpu torch). Part of the spec hash.",
)
ARTIFACT_OVERRIDES = declare(
    "MEDIA_WORKER_ARTIFACT_OVERRIDES",
    (),
    parse_artifact_overrides,
    "Comma-separated <file name>=<url>#sha256=<hex>: fetch a profile artifact (e.g. "
    "en_core_web_sm-3.8.0-py3-none-any.whl) from an internal mirror or a rebuilt copy. "
    "A new sha256 is part of the spec hash.",
)
BUILD_WAIT_S = declare(
    "MEDIA_WORKER_BUILD_WAIT_S",
    3600.0,
    parse_seconds,
    "Longest a worker waits for another worker's build of the same profile (seconds).",
)
CUDA_BUILD = declare(
    "MEDIA_WORKER_CUDA_BUILD",
    "auto",
    _one_of("auto", "cu126", "cu130"),
    "CUDA build of torch for the torch profiles. auto: chosen from the GPU and its driver "
    "(Blackwell and drivers 580+ get cu130, older drivers cu126; `python -m models "
    "doctor` says which and why). cu126/cu130: prepare for another kind of machine from a "
    "Pod without a GPU. Part of the spec hash.",
)
IMAGE_WEIGHTS_DIR = declare(
    "MEDIA_WORKER_IMAGE_WEIGHTS_DIR",
    "/opt/media-worker/hf",
    parse_directory,
    "HF home baked into the image (BAKE_PROFILES); weights verified there are used "
    "before the volume's, read only.",
)
IN_PLACE = declare(
    "MEDIA_WORKER_IN_PLACE",
    False,
    parse_flag,
    "1: run every profile in the worker's own interpreter (an image that bakes everything "
    "in, a GPU machine that has torch): no profile environment is built or restored, and "
    "a pin it does not meet is logged as a warning, not refused. Weights are still fetched.",
)
CACHED_MODELS_DIR = declare(
    "MEDIA_WORKER_CACHED_MODELS_DIR",
    "/runpod-volume/huggingface-cache/hub",
    parse_directory,
    "RunPod's cached-models directory; weights found there are used without download.",
)

# --- Jobs and runners --------------------------------------------------------------
DEFAULT_TTS_MODEL = declare(
    "MEDIA_WORKER_DEFAULT_TTS_MODEL",
    "",
    str,
    "Model used when a tts job names none. Unset: kokoro when the worker sees a CUDA GPU, "
    "else piper (decided once at start, and logged).",
)
MAX_TEXT_CHARS = declare(
    "MEDIA_WORKER_MAX_TEXT_CHARS",
    20_000,
    count(1, 20_000),
    "Longest text one tts job may ask for (characters); long text is spoken piece by "
    "piece, this bounds the whole job.",
)
DEFAULT_TRANSCRIBE_MODEL = declare(
    "MEDIA_WORKER_DEFAULT_TRANSCRIBE_MODEL",
    "",
    str,
    "Whisper model used when a transcribe job names none. Default: large-v3-turbo "
    "when a GPU is visible, else small.",
)
RUNNER_PACKAGES = declare(
    "MEDIA_WORKER_RUNNER_PACKAGES",
    (),
    parse_list,
    "Python packages (comma-separated, importable) whose modules declare more runners, "
    "tasks and profiles, read after models.tasks and runners.",
)
MAX_AUDIO_S = declare(
    "MEDIA_WORKER_MAX_AUDIO_S",
    4 * 3600.0,
    parse_seconds,
    "Longest audio a transcribe job accepts (seconds); longer input is invalid_input.",
)
STREAMING = declare(
    "MEDIA_WORKER_STREAMING",
    False,
    parse_flag,
    "1: a streaming endpoint (generator handler, return_aggregate_stream): jobs with "
    '"stream": true yield audio chunks, and every job\'s output is a list ending with '
    'its result. 0: plain results; "stream": true is invalid_input.',
)
ALLOW_NONCOMMERCIAL = declare(
    "MEDIA_WORKER_ALLOW_NONCOMMERCIAL",
    False,
    parse_flag,
    "1: serve models whose weights forbid commercial use (f5tts, CC-BY-NC-4.0).",
)
VOICES_CACHE_ITEMS = declare(
    "MEDIA_WORKER_VOICES_CACHE_ITEMS",
    16,
    count(1, 1024),
    "Speaker conditionings each cloning runner keeps in memory (least recently used go).",
)
JOB_TIMEOUT_S = declare(
    "MEDIA_WORKER_JOB_TIMEOUT_S",
    600.0,
    parse_seconds,
    "Longest one job may run inside a runner before it is killed (seconds).",
)
RUNNER_START_TIMEOUT_S = declare(
    "MEDIA_WORKER_RUNNER_START_TIMEOUT_S",
    300.0,
    parse_seconds,
    "Longest a runner may take to start and load its model (seconds).",
)
MAX_RUNNERS = declare(
    "MEDIA_WORKER_MAX_RUNNERS",
    2,
    count(1, 64),
    "Most models kept loaded (a model's pool of runner processes counts once); the least "
    "recently used idle one is stopped first.",
)
CONCURRENCY_CEILING = 64
MAX_CONCURRENCY = declare(
    "MEDIA_WORKER_MAX_CONCURRENCY",
    1,
    count(1, CONCURRENCY_CEILING),
    "Most jobs one worker serves at once. Above 1, a model that declares it (kokoro) gets a "
    "pool of runner processes, one job each, as far as free GPU memory allows.",
)

# --- Inputs -------------------------------------------------------------------------
MAX_MEDIA_BYTES = declare(
    "MEDIA_WORKER_MAX_MEDIA_BYTES",
    200 * 1024 * 1024,
    count(1, 1 << 40),
    "Largest input media accepted from a URL, s3:// object or data: URI (bytes).",
)
FETCH_TIMEOUT_S = declare(
    "MEDIA_WORKER_FETCH_TIMEOUT_S",
    30.0,
    parse_seconds,
    "Limit for fetching one input URL: connect, each read, and the whole body (seconds).",
)

# --- Restore (video upscaling) -------------------------------------------------------
RESTORE_MAX_INPUT_BYTES = declare(
    "MEDIA_WORKER_RESTORE_MAX_INPUT_BYTES",
    2 * 1024 * 1024 * 1024,
    count(1, 1 << 40),
    "Largest restore input (bytes); MEDIA_WORKER_MAX_MEDIA_BYTES also caps the fetch.",
)
RESTORE_MAX_DURATION_S = declare(
    "MEDIA_WORKER_RESTORE_MAX_DURATION_S",
    600.0,
    parse_seconds,
    "Longest restore input (seconds).",
)
RESTORE_MAX_SOURCE_SIDE = declare(
    "MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE",
    3840,
    count(16, 16_384),
    "Longest side of a restore input (pixels).",
)
RESTORE_MAX_TARGET_SIDE = declare(
    "MEDIA_WORKER_RESTORE_MAX_TARGET_SIDE",
    3840,
    count(16, 16_384),
    "Longest side of a restore output (pixels).",
)
RESTORE_MAX_FRAMES = declare(
    "MEDIA_WORKER_RESTORE_MAX_FRAMES",
    36_000,
    count(1, 10_000_000),
    "Most frames in a restore input.",
)
RESTORE_CRF = declare(
    "MEDIA_WORKER_RESTORE_CRF",
    18,
    count(0, 51),
    "H.264 quality of restored videos when a job sets no crf (0 best .. 51 worst).",
)
RESTORE_ENCODER = declare(
    "MEDIA_WORKER_RESTORE_ENCODER",
    "",
    _one_of("libx264", "h264_nvenc"),
    "Force the H.264 encoder (libx264 or h264_nvenc); empty: NVENC on an NVIDIA GPU "
    "when it opens, else libx264.",
)

# --- Output storage (RunPod's BUCKET_* convention) -------------------------------
BUCKET_ENDPOINT_URL = declare(
    "BUCKET_ENDPOINT_URL",
    "",
    _url("https", "http"),
    "S3-compatible endpoint, e.g. https://s3.us-east-1.amazonaws.com. Unset: local store.",
)
BUCKET_ACCESS_KEY_ID = declare("BUCKET_ACCESS_KEY_ID", "", str, "S3 access key id.")
BUCKET_SECRET_ACCESS_KEY = declare(
    "BUCKET_SECRET_ACCESS_KEY", "", str, "S3 secret key (never logged).", secret=True
)
BUCKET_NAME = declare("BUCKET_NAME", "", str, "Bucket that receives outputs.")
BUCKET_REGION = declare(
    "BUCKET_REGION",
    "us-east-1",
    str,
    "Region used for signing (R2: auto; B2: e.g. us-west-004).",
)
BUCKET_ADDRESSING_STYLE = declare(
    "BUCKET_ADDRESSING_STYLE",
    "path",
    _one_of("path", "virtual", "auto"),
    "S3 addressing style: path, virtual or auto.",
)
ALLOW_PRIVATE_S3_ENDPOINTS = declare(
    "MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS",
    False,
    parse_bool,
    "Let a request's s3Config.endpointUrl reach loopback/private/link-local addresses "
    "(off: refused, as media URLs are). BUCKET_ENDPOINT_URL is always trusted.",
)
PRESIGN_SECONDS = declare(
    "MEDIA_WORKER_PRESIGN_SECONDS",
    3600,
    # SigV4's limits; storage's MIN/MAX_PRESIGN_S are the same (a test checks).
    _in_range(int, 60, 604_800),
    "Default lifetime of presigned output URLs (seconds, 60..604800).",
)

# --- Hugging Face ---------------------------------------------------------------------
HUB_TIMEOUT_S = declare(
    "MEDIA_WORKER_HUB_TIMEOUT_S",
    10.0,
    parse_seconds,
    "How long a weights download waits for the Hugging Face hub (HF_ENDPOINT) to answer "
    "before it fails (seconds); the hub client's own retries take 23 s.",
)
HF_TOKEN = declare(
    "HF_TOKEN", "", str, "Token for gated Hugging Face repos (never logged).", secret=True
)

# --- Logging ------------------------------------------------------------------------
LOG_LEVEL = declare(
    "MEDIA_WORKER_LOG_LEVEL",
    "INFO",
    _one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", fold=str.upper),
    "Log level of the worker's logs: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
)
LOG_STORAGE_DEBUG = declare(
    "MEDIA_WORKER_LOG_STORAGE_DEBUG",
    False,
    parse_flag,
    "1: at LOG_LEVEL DEBUG, also log the S3 client's requests (botocore, boto3, s3transfer, "
    "urllib3), credentials redacted. 0: those loggers stay at INFO.",
)


# Directories the worker writes into, and directories it only reads.
_WRITTEN_DIRECTORIES = (HOME, ENVS_DIR, OUTPUT_DIR, SCRATCH_DIR)
_READ_DIRECTORIES = (IMAGE_WEIGHTS_DIR, CACHED_MODELS_DIR)


def check_directories(env: Mapping[str, str] | None = None) -> None:
    """Refuse directory settings the worker could not use (called once, at start).

    A written directory must be a writable directory, or not exist yet below a
    writable one (the worker creates it); a read one, where it exists, must be a
    directory. ``SCRATCH_DIR=/etc/passwd`` used to make every job ``internal``.

    Raises:
        ConfigError: naming the variable, its value and what is wrong with it.
    """
    env = os.environ if env is None else env
    for setting in (*_WRITTEN_DIRECTORIES, *_READ_DIRECTORIES):
        if not (value := setting.get(env)):
            continue
        path = Path(value)
        problem = _unwritable(path) if setting in _WRITTEN_DIRECTORIES else _not_a_directory(path)
        if problem:
            raise ConfigError(f"{setting.name}={value!r} is invalid: {problem}")


def _not_a_directory(path: Path) -> str | None:
    if path.exists() and not path.is_dir():
        return "it is a file, not a directory"
    return None


def _unwritable(path: Path) -> str | None:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


@dataclass(frozen=True)
class Paths:
    """Where the worker keeps its state; see :func:`resolve_paths`."""

    home: Path
    envs: Path
    outputs: Path
    on_volume: bool


RUNPOD_VOLUME = Path("/runpod-volume")
IMAGE_ENVS_DIR = Path("/opt/media-worker/envs")


def resolve_paths(
    env: Mapping[str, str] | None = None,
    *,
    volume_mounted: bool | None = None,
    image_envs_writable: bool | None = None,
) -> Paths:
    """Resolve the worker's directories. Later wins:

    1. built-in: ``~/.cache/media-worker``, ``./outputs``;
    2. a mounted RunPod volume: ``/runpod-volume/media-worker`` and its ``outputs/``;
    3. ``MEDIA_WORKER_HOME`` / ``MEDIA_WORKER_ENVS_DIR`` / ``MEDIA_WORKER_OUTPUT_DIR``.

    ``volume_mounted`` and ``image_envs_writable`` default to looking at the disk;
    tests pass them to keep this pure.
    """
    env = os.environ if env is None else env
    if volume_mounted is None:
        volume_mounted = RUNPOD_VOLUME.is_dir()
    if image_envs_writable is None:
        image_envs_writable = os.access(IMAGE_ENVS_DIR, os.W_OK)

    home = Path("~/.cache/media-worker").expanduser()
    outputs = Path.cwd() / "outputs"
    on_volume = False
    if volume_mounted:
        home = RUNPOD_VOLUME / "media-worker"
        outputs = home / "outputs"
        on_volume = True
    if explicit_home := HOME.get(env):
        home = Path(explicit_home).expanduser()
        outputs = home / "outputs"
        on_volume = True
    envs = IMAGE_ENVS_DIR if image_envs_writable else home / "local-envs"
    if explicit_envs := ENVS_DIR.get(env):
        envs = Path(explicit_envs).expanduser()
    if explicit_outputs := OUTPUT_DIR.get(env):
        outputs = Path(explicit_outputs).expanduser()
    return Paths(home=home, envs=envs, outputs=outputs, on_volume=on_volume)


def markdown_table(settings: Iterable[Setting[Any]]) -> str:
    """The settings tables as docs/reference/configuration.md carries them: the
    worker's own (this module's) first, then one per module that declares its own,
    by module name, each in declaration order."""
    by_owner: dict[str, list[Setting[Any]]] = {}
    for s in settings:
        by_owner.setdefault(s.owner, []).append(s)
    owners = sorted(by_owner, key=lambda owner: (owner != "config", owner))
    sections = []
    for owner in owners:
        path = owner.replace(".", "/") + ".py"
        title = "The worker" if owner == "config" else f"Runner `{owner.rpartition('.')[2]}`"
        rows = [
            f"## {title} (`{path}`)",
            "",
            "| variable | default | meaning |",
            "| --- | --- | --- |",
        ]
        for s in by_owner[owner]:
            default = ",".join(s.default) if isinstance(s.default, tuple) else s.default
            shown = f"`{default}`" if default not in ("", ()) else "(unset)"
            rows.append(f"| `{s.name}` | {shown} | {s.doc} |")
        sections.append("\n".join(rows))
    return "\n\n".join(sections)


# --- What child processes see ----------------------------------------------------------
# Runner processes and build subprocesses get an allow-listed environment, not the
# worker's: S3 credentials (BUCKET_*, AWS_*), HF_TOKEN (weights are fetched by the
# worker before a runner starts), RunPod's API key and anything else a deployment
# sets stay in the handler process. A model library that dumps its environment
# into a log or a crash report then has nothing secret to dump.
_CHILD_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "LD_LIBRARY_PATH",  # CUDA base images put the driver's libraries here
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "HF_HUB_DISABLE_TELEMETRY",
        "PYTHONPATH",
    }
)
_CHILD_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "PYTORCH_", "TORCH_", "XDG_")
# Builds also need uv's own settings (UV_CACHE_DIR, UV_FIND_LINKS, UV_INDEX_URL...),
# pip's index settings and a proxy: these may carry index credentials, which is
# where they are needed.
_BUILD_NAMES = frozenset(
    {
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "PIP_CERT",
        "PIP_TRUSTED_HOST",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)
_BUILD_PREFIXES = ("UV_",)
# Worker settings that may hold credentials (an index URL can embed user:password).
_CHILD_WITHHELD_SETTINGS = frozenset({"MEDIA_WORKER_INDEX_URL", "MEDIA_WORKER_EXTRA_INDEX_URLS"})


def child_environ(env: Mapping[str, str] | None = None, *, build: bool = False) -> dict[str, str]:
    """The environment a runner process (or, with ``build``, a build step) gets.

    Pure over ``env`` (default ``os.environ``): the allow-listed system variables,
    the worker's own non-secret ``MEDIA_WORKER_*`` settings, and for builds uv's
    and pip's index settings. Everything else is left out.
    """
    env = os.environ if env is None else env
    secret = {s.name for s in SETTINGS if s.secret} | _CHILD_WITHHELD_SETTINGS
    names = _CHILD_NAMES | (_BUILD_NAMES if build else frozenset())
    prefixes = _CHILD_PREFIXES + (_BUILD_PREFIXES if build else ())
    return {
        name: value
        for name, value in env.items()
        if name in names
        or name.startswith(prefixes)
        or (name.startswith("MEDIA_WORKER_") and name not in secret)
    }
