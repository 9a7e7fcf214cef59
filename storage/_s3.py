"""S3-compatible storage: settings, the boto3 client, and error triage.

Settings come from :func:`s3_settings`. Later wins:

1. nothing configured: ``None`` (outputs go to the local store);
2. the worker's ``BUCKET_*`` environment (RunPod's convention);
3. the request's ``s3Config`` object (``accessId``, ``accessSecret``, ``bucketName``,
   ``endpointUrl``, optional ``region``), which replaces the environment as a whole.

A request's endpoint is the caller's choice, and the worker PUTs outputs (and GETs
``s3://`` inputs) there: it must resolve to public addresses only, by the same test
media URLs pass (``rp_ssrf.is_safe_address``), unless the operator sets
``MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS``. The ``BUCKET_*`` endpoint is the
operator's own and is trusted. Residual: boto3 resolves the host again when it
connects, so a name whose DNS answer changes in between (rebinding) can still reach
a private address; botocore offers no hook to dial a pinned address while keeping
TLS and the SigV4 host. Operators who need that closed use IP-literal endpoints or
an egress firewall.

The region used for signing is, later wins: ``BUCKET_REGION``'s default, the region
named in a well-known endpoint host (``s3.eu-west-1.amazonaws.com``,
``*.r2.cloudflarestorage.com``), an explicit ``BUCKET_REGION`` / ``s3Config.region``.
A wrong region is how uploads "silently go to the wrong place" or fail with
SignatureDoesNotMatch, hence the inference.

boto3 is imported lazily: the handler must reach ``runpod.serverless.start()`` fast.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from pydantic import SecretStr

import config
from errors import FetchFailed, InvalidInput, StorageFailed

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig

logger = logging.getLogger(__name__)

MiB = 1024 * 1024

# Multipart settings for uploads and downloads. Tests lower them (monkeypatch these
# names) to see a small file go multipart; s3transfer never goes below 5 MiB parts.
MULTIPART_THRESHOLD_BYTES = 16 * MiB
MULTIPART_CHUNK_BYTES = 16 * MiB
MAX_CONCURRENCY = 4

MAX_ATTEMPTS = 3
"""botocore "standard" retry mode: total attempts per request, backoff with jitter."""
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0

# s3Config key -> what it holds, in the order errors report them.
_REQUEST_KEYS = ("endpointUrl", "bucketName", "accessId", "accessSecret")
_ENV_REQUIRED = (
    config.BUCKET_ENDPOINT_URL,
    config.BUCKET_NAME,
    config.BUCKET_ACCESS_KEY_ID,
    config.BUCKET_SECRET_ACCESS_KEY,
)
# Region from the endpoint host: AWS (s3.<r>., s3-<r>., s3.dualstack.<r>.), Backblaze
# B2 (s3.<r>.backblazeb2.com), DigitalOcean (<r>.digitaloceanspaces.com), R2 ("auto").
_REGION_IN_HOST = (
    re.compile(r"(?:^|\.)s3[.-](?:dualstack\.)?(?P<r>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com$"),
    re.compile(r"(?:^|\.)s3\.(?P<r>[a-z]{2}-[a-z]+-\d+)\.backblazeb2\.com$"),
    re.compile(r"(?:^|\.)(?P<r>[a-z]{3}\d)\.digitaloceanspaces\.com$"),
)


@dataclass(frozen=True)
class S3Settings:
    """Where and how to reach an S3-compatible bucket.

    ``secret_access_key`` is a :class:`pydantic.SecretStr`: its ``repr``/``str`` show
    ``**********``; read it with ``.get_secret_value()`` only to build a client.
    """

    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: SecretStr
    region: str
    addressing_style: str = "path"
    source: str = "env"
    """``"request"`` (s3Config) or ``"env"`` (BUCKET_*), for messages."""

    @property
    def endpoint_host(self) -> str:
        """``host[:port]`` of the endpoint, safe to show in messages."""
        return urlsplit(self.endpoint_url).netloc.rpartition("@")[2]


def s3_settings(
    s3_config: Mapping[str, Any] | None, env: Mapping[str, str] | None = None
) -> S3Settings | None:
    """Resolve the bucket for a job (see the module docstring for precedence).

    Args:
        s3_config: the request's ``s3Config`` object, or ``None``.
        env: environment to read ``BUCKET_*`` from (default ``os.environ``).

    Returns:
        The settings, or ``None`` when neither the request nor the environment
        configures a bucket (outputs then go to the local store).

    Raises:
        InvalidInput: ``s3Config`` is given but incomplete or malformed, or its
            endpoint is not public (see the module docstring); the field names the
            key, e.g. ``s3Config.bucketName``.
        StorageFailed: the ``BUCKET_*`` environment is half set; the message names
            the missing variables.
    """
    env = os.environ if env is None else env
    try:
        style = config.BUCKET_ADDRESSING_STYLE.get(env)  # checked at start, too
    except config.ConfigError as exc:
        raise StorageFailed(exc.args[0]) from None
    if s3_config is not None:
        return _settings_from_request(s3_config, env=env, style=style)
    return _settings_from_env(env, style=style)


def _settings_from_request(
    s3_config: Mapping[str, Any], *, env: Mapping[str, str], style: str
) -> S3Settings:
    if not isinstance(s3_config, Mapping):
        raise InvalidInput("s3Config: expected an object", field="s3Config")
    values: dict[str, str] = {}
    for key in (*_REQUEST_KEYS, "region"):
        raw = s3_config.get(key)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if key == "region":
                continue
            raise InvalidInput(f"s3Config.{key}: required", field=f"s3Config.{key}")
        if not isinstance(raw, str):
            raise InvalidInput(f"s3Config.{key}: expected a string", field=f"s3Config.{key}")
        values[key] = raw.strip()
    endpoint = _checked_endpoint(values["endpointUrl"], field="s3Config.endpointUrl")
    if not config.ALLOW_PRIVATE_S3_ENDPOINTS.get(env):
        _require_public(endpoint, field="s3Config.endpointUrl")
    region = values.get("region") or _region_for(endpoint, env)
    return S3Settings(
        endpoint_url=endpoint,
        bucket=values["bucketName"],
        access_key_id=values["accessId"],
        secret_access_key=SecretStr(values["accessSecret"]),
        region=region,
        addressing_style=style,
        source="request",
    )


def _settings_from_env(env: Mapping[str, str], *, style: str) -> S3Settings | None:
    values = {s.name: s.get(env).strip() for s in _ENV_REQUIRED}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        set_names = [name for name, value in values.items() if value]
        raise StorageFailed(
            f"output storage is half configured: {', '.join(set_names)} set but "
            f"{', '.join(missing)} not. Set all of {', '.join(values)}, or none of them "
            "to keep outputs in the local store"
        )
    try:
        endpoint = _checked_endpoint(values[config.BUCKET_ENDPOINT_URL.name], field=None)
    except InvalidInput as exc:
        raise StorageFailed(f"{config.BUCKET_ENDPOINT_URL.name}: {exc.message}") from None
    return S3Settings(
        endpoint_url=endpoint,
        bucket=values[config.BUCKET_NAME.name],
        access_key_id=values[config.BUCKET_ACCESS_KEY_ID.name],
        secret_access_key=SecretStr(values[config.BUCKET_SECRET_ACCESS_KEY.name]),
        region=_region_for(endpoint, env),
        addressing_style=style,
        source="env",
    )


def _checked_endpoint(url: str, *, field: str | None) -> str:
    name = field or "endpoint URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidInput(f"{name}: malformed URL ({exc})", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"{name}: expected http(s)://host[:port], e.g. https://s3.us-east-1.amazonaws.com",
            field=field,
        )
    if parts.username or parts.password:
        raise InvalidInput(f"{name}: must not carry credentials", field=field)
    return url.rstrip("/")


def endpoint_refusal(host: str, addresses: list[str]) -> str | None:
    """Why an endpoint resolving to ``addresses`` may not be used, or None (pure).

    Every address must be public: a name answering with one public and one private
    address is treated as hostile, as ``rp_ssrf.resolve_and_validate`` does.
    """
    from runpod.serverless.utils.rp_ssrf import is_safe_address

    if not addresses:
        return f"host {host!r} resolves to no address"
    for address in addresses:
        if not is_safe_address(address):
            return (
                f"host {host!r} resolves to the non-public address {address}; the worker "
                f"sends outputs only to public endpoints unless the operator sets "
                f"{config.ALLOW_PRIVATE_S3_ENDPOINTS.name}=1"
            )
    return None


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _require_public(
    endpoint: str, *, field: str, resolve: Callable[[str, int], list[str]] = _resolve
) -> None:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        raise InvalidInput(
            f"{field}: could not resolve host {host!r} ({exc.strerror or exc})", field=field
        ) from None
    if reason := endpoint_refusal(host, addresses):
        raise InvalidInput(f"{field}: {reason}", field=field)


def _region_for(endpoint_url: str, env: Mapping[str, str]) -> str:
    if env.get(config.BUCKET_REGION.name, "").strip():
        return config.BUCKET_REGION.get(env).strip()
    return region_from_endpoint(endpoint_url) or config.BUCKET_REGION.get(env)


def region_from_endpoint(endpoint_url: str) -> str | None:
    """The signing region a well-known endpoint host implies, else ``None``."""
    host = (urlsplit(endpoint_url).hostname or "").lower()
    if host.endswith(".r2.cloudflarestorage.com"):
        return "auto"
    for pattern in _REGION_IN_HOST:
        if match := pattern.search(host):
            return match.group("r")
    return None


_session_lock = threading.Lock()
_session: Any = None


def make_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for ``settings``: SigV4, explicit region, standard retries."""
    global _session
    from botocore.config import Config

    # One shared Session: a new one reloads botocore's service models (~0.1 s per
    # client). Sessions are not thread-safe, so clients are made under a lock;
    # the clients themselves are.
    with _session_lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        return _session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key.get_secret_value(),
            region_name=settings.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": settings.addressing_style},
                retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                # botocore >= 1.36 adds CRC checksums to every upload by default; many
                # S3-compatible stores (older MinIO, B2, some R2 paths) reject them.
                # Only send/verify checksums where the API requires it.
                # https://github.com/boto/boto3/issues/4392
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )


def transfer_config() -> TransferConfig:
    """s3transfer settings, read at call time from the module constants."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD_BYTES,
        multipart_chunksize=MULTIPART_CHUNK_BYTES,
        max_concurrency=MAX_CONCURRENCY,
        use_threads=True,
    )


def error_code(exc: BaseException) -> str:
    """The S3 error code behind ``exc`` (``NoSuchKey``, ``AccessDenied`` ...), else its
    botocore class name (``EndpointConnectionError`` ...). Walks the exception chain:
    s3transfer wraps the ClientError in ``S3UploadFailedError``."""
    from botocore.exceptions import ClientError

    seen: BaseException | None = exc
    fallback = type(exc).__name__
    while seen is not None:
        if isinstance(seen, ClientError):
            return str(seen.response.get("Error", {}).get("Code") or fallback)
        if type(seen).__module__.startswith("botocore"):
            fallback = type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return fallback


def raise_fetch_error(exc: BaseException, *, field: str, bucket: str, key: str) -> NoReturn:
    """Turn a boto3 error while reading ``s3://bucket/key`` into a contract error."""
    code = error_code(exc)
    where = f"s3://{bucket}/{key}"
    if code in ("NoSuchKey", "404", "NotFound"):
        reason = f"object {key!r} does not exist in bucket {bucket!r}"
    elif code == "NoSuchBucket":
        reason = f"bucket {bucket!r} does not exist"
    elif code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId"):
        reason = f"access denied ({code}); check the credentials can read {where}"
    elif code == "SignatureDoesNotMatch":
        reason = "the secret key or region does not match (SignatureDoesNotMatch)"
    else:
        reason = f"the storage answered {code}"
    raise FetchFailed(f"{field}: could not read {where}: {reason}", field=field) from None
