"""Outputs out: upload to S3 with presigned URLs, or copy into the local store.

Object keys: ``[<prefix>/]jobs/<job id>/<file name>``, the same in S3 and in the
local store. The runpod SDK's local runs all share the id ``local_test``; theirs
get a per-run key (``jobs/local_test-<utc time>-<4 hex>/``), so a second run keeps
the first one's outputs. A runner's :class:`~runtime.protocol.OutputFile` goes in, a
:class:`Published` comes out (the worker makes it the contract's ``Output``). If an
S3 upload still fails after botocore's retries, every file of the job is copied to
the local store and :class:`errors.StorageFailed` names where each one is: nothing
the worker produced is lost.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import config
from errors import InvalidInput, StorageFailed
from runtime.protocol import OutputFile

from . import _local, _s3
from ._refs import validate_prefix
from ._s3 import S3Settings
from ._scratch import safe_job_id

logger = logging.getLogger(__name__)

# The id the runpod SDK gives a local run that names none (`python handler.py` with
# test_input.json, `--test_input`; runpod/serverless/modules/rp_local.py).
LOCAL_TEST_JOB_ID = "local_test"

# SigV4 presigned URLs live at most 7 days; below a minute a URL is useless. The
# contract's output.presign_seconds bounds and MEDIA_WORKER_PRESIGN_SECONDS's range
# are these (a test checks the setting's).
MIN_PRESIGN_S, MAX_PRESIGN_S = 60, 604_800


@dataclass(frozen=True)
class Published:
    """One published file: the runner's ``OutputFile`` plus where it went.

    The fields are the contract's ``Output`` (``models.contract``), which the worker
    builds from this; storage knows nothing of the contract.
    """

    url: str  # presigned https URL, or file:// for the local store
    key: str
    content_type: str
    bytes: int
    sha256: str  # hex
    duration_s: float | None = None


def key_job_id(job_id: str, *, now: float, token: str) -> str:
    """The job id segment of output keys.

    The sanitised id (:func:`safe_job_id`), except for the SDK's one local id: every
    local run would write over the last one's files, so it becomes
    ``local_test-<YYYYmmddTHHMMSSZ>-<token>`` (``now``: epoch seconds).
    """
    clean = safe_job_id(job_id)
    if job_id != LOCAL_TEST_JOB_ID:
        return clean
    return f"{clean}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{token}"


def publish(
    job_id: str,
    files: Sequence[OutputFile],
    *,
    s3: S3Settings | None,
    prefix: str | None = None,
    presign_seconds: int | None = None,
) -> list[Published]:
    """Publish a job's output files.

    Args:
        job_id: the job's id (untrusted; sanitised for the key).
        files: what the runner wrote, each with its content type; file names must differ.
        s3: the bucket (:func:`storage.s3_settings`), or ``None`` for the local store.
        prefix: optional key prefix (``output.prefix``), checked by :func:`validate_prefix`.
        presign_seconds: presigned URL lifetime, ``MIN_PRESIGN_S..MAX_PRESIGN_S``; default
            ``config.PRESIGN_SECONDS`` (read now).

    Returns:
        One :class:`Published` per file, in order: a presigned https URL
        (S3) or a ``file://`` URI (local store).

    Raises:
        InvalidInput: a bad ``output.prefix`` or ``output.presign_seconds``.
        StorageFailed: the S3 upload failed after retries (the outputs were kept in
            the local store; ``details`` give each ``local_path``), or the local store
            could not be written.
    """
    clean_prefix = validate_prefix(prefix) if prefix else ""
    lifetime = _checked_presign_seconds(presign_seconds)
    key_id = key_job_id(job_id, now=time.time(), token=secrets.token_hex(2))
    base = "/".join(p for p in (clean_prefix, "jobs", key_id) if p)
    items = [(file, f"{base}/{_file_name(file, files)}") for file in files]
    start = time.monotonic()
    sums = {key: _size_and_sha256(Path(file.path)) for file, key in items}
    if s3 is None:
        outputs = _publish_local(items, sums, job_id=job_id)
        store = "local"
    else:
        outputs = _publish_s3(items, sums, job_id=job_id, settings=s3, lifetime=lifetime)
        store = "s3"
    logger.info(
        "job=%s publish ok store=%s files=%d bytes=%d s=%.2f",
        job_id,
        store,
        len(outputs),
        sum(o.bytes for o in outputs),
        time.monotonic() - start,
    )
    return outputs


def _publish_local(
    items: list[tuple[OutputFile, str]], sums: dict[str, tuple[int, str]], *, job_id: str
) -> list[Published]:
    outputs = []
    root = _local.outputs_root()
    for file, key in items:
        if (root / key).exists():  # a caller that reuses a job id; S3 keys behave alike
            logger.warning("job=%s output %s replaces an earlier file of that key", job_id, key)
        try:
            path = _local.store_copy(Path(file.path), key, root=root)
        except OSError as exc:
            raise StorageFailed(
                f"could not write output {key!r} to the local store "
                f"{_local.outputs_root()}: {exc.strerror or exc}",
                field="output",
            ) from None
        outputs.append(_output(file, key, sums[key], url=path.as_uri()))
    return outputs


def _publish_s3(
    items: list[tuple[OutputFile, str]],
    sums: dict[str, tuple[int, str]],
    *,
    job_id: str,
    settings: S3Settings,
    lifetime: int,
) -> list[Published]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    client = _s3.make_client(settings)
    transfer = _s3.transfer_config()
    outputs = []
    for file, key in items:
        size, sha256 = sums[key]
        try:
            client.upload_file(
                file.path,
                settings.bucket,
                key,
                ExtraArgs={"ContentType": file.content_type, "Metadata": {"sha256": sha256}},
                Config=transfer,
            )
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            _keep_locally_and_raise(items, job_id=job_id, settings=settings, exc=exc, key=key)
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": settings.bucket, "Key": key}, ExpiresIn=lifetime
        )
        logger.debug("job=%s upload ok key=%s bytes=%d", job_id, key, size)
        outputs.append(_output(file, key, sums[key], url=url))
    return outputs


def _keep_locally_and_raise(
    items: list[tuple[OutputFile, str]],
    *,
    job_id: str,
    settings: S3Settings,
    exc: BaseException,
    key: str,
) -> NoReturn:
    code = _s3.error_code(exc)
    where = f"bucket {settings.bucket!r} at {settings.endpoint_host}"
    logger.warning(
        "job=%s upload failed key=%s %s code=%s; keeping outputs locally",
        job_id,
        key,
        where,
        code,
    )
    details = []
    kept = 0
    for file, item_key in items:
        try:
            local = _local.store_copy(Path(file.path), item_key)
        except (OSError, ValueError) as copy_exc:
            message = f"upload failed ({code}) and the local copy failed too: {copy_exc}"
            details.append({"field": "output", "message": message, "local_path": None})
            continue
        kept += 1
        message = f"upload to {where} failed ({code}); kept at {local}"
        details.append({"field": "output", "message": message, "local_path": str(local)})
    root = _local.outputs_root()
    raise StorageFailed(
        f"upload of {key!r} to {where} failed after {_s3.MAX_ATTEMPTS} attempts ({code}); "
        f"kept {kept} of {len(items)} output(s) in the local store {root}. "
        "Check the endpoint, bucket and credentials (s3Config or BUCKET_*).",
        field="output",
        details=details,
    ) from None


def _checked_presign_seconds(value: int | None) -> int:
    if value is None:
        try:
            return config.PRESIGN_SECONDS.get()  # range-checked by its parser, at start too
        except config.ConfigError as exc:
            raise StorageFailed(exc.args[0]) from None
    field = "output.presign_seconds"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field}: expected an integer number of seconds", field=field)
    if not MIN_PRESIGN_S <= value <= MAX_PRESIGN_S:
        raise InvalidInput(
            f"{field}: {value} is out of range {MIN_PRESIGN_S}..{MAX_PRESIGN_S} "
            "(presigned URLs live at most 7 days)",
            field=field,
        )
    return value


def _file_name(file: OutputFile, files: Sequence[OutputFile]) -> str:
    name = Path(file.path).name
    if name in ("", ".", "..") or any(ord(c) < 32 or c == "\\" for c in name):
        raise ValueError(f"output file name {name!r} cannot be an output key")
    if sum(1 for other in files if Path(other.path).name == name) > 1:
        raise ValueError(f"two outputs are named {name!r}; output names must differ")
    return name


def _size_and_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _output(file: OutputFile, key: str, size_sha: tuple[int, str], *, url: str) -> Published:
    return Published(
        url=url,
        key=key,
        content_type=file.content_type,
        bytes=size_sha[0],
        sha256=size_sha[1],
        duration_s=file.duration_s,
    )
