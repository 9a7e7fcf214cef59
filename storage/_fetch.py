"""Input media in: https (SSRF-safe), s3:// and data: URIs, size-capped.

Every fetch writes a process-unique temp file in ``dest_dir`` and renames it to
``<field><ext>`` only when complete and within the cap; on any failure the temp file
is removed, so a file named after the field is always a whole, accepted input.

SSRF protection is RunPod's ``rp_ssrf.safe_get`` (public IPs only, pinned connection,
each redirect hop re-validated, Content-Length cap) plus ``iter_content_capped`` for
bodies that lie about or omit their length. We add no checks of our own there.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import logging
import mimetypes
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import config
from errors import FetchFailed, InvalidInput, StorageFailed, UnsupportedMedia
from runtime import atomic

from . import _s3
from ._refs import MediaRef, _without_query
from ._s3 import S3Settings
from ._scratch import current_job_id

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024

# What an input's declared content type may be. Absent is accepted too: the runner
# decodes the bytes and reports unsupported media itself.
# image/: a restore job's `video` may be a still image (png, jpeg, webp).
_ACCEPTED_PREFIXES = ("audio/", "video/", "image/")
_ACCEPTED_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/ogg"})
# mimetypes' answers depend on the host's /etc/mime.types (audio/wav is missing from
# Python's own table), so the common media types are spelled out here first.
_EXTENSIONS = {
    "audio/wav": ".wav",
    "audio/wave": ".wav",
    "audio/x-wav": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/ogg": ".ogg",
    "application/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "audio/webm": ".webm",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
}
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


def fetch(
    ref: MediaRef,
    dest_dir: Path,
    *,
    s3: S3Settings | None,
    max_bytes: int | None = None,
    timeout_s: float | None = None,
) -> Path:
    """Fetch one input into ``dest_dir``.

    Args:
        ref: from :func:`storage.parse_media_ref`.
        dest_dir: the job's scratch directory.
        s3: credentials for ``s3://`` references (the job's :func:`storage.s3_settings`).
        max_bytes: size cap; default ``config.MAX_MEDIA_BYTES`` (read now).
        timeout_s: connect/read timeout of a URL fetch, also the overall deadline of
            its body (enforced on every read, see :class:`_Watchdog`); default
            ``config.FETCH_TIMEOUT_S`` (read now).

    Returns:
        The fetched file, ``dest_dir/<field><ext>``.

    Raises:
        FetchFailed: refused by the SSRF checks (never retried), over the size cap,
            HTTP error status, missing s3 object, network failure, timeout.
        UnsupportedMedia: the declared content type is not audio/video/octet-stream.
        InvalidInput: an ``s3://`` reference without storage credentials.
        StorageFailed: the scratch disk filled up (names ``MEDIA_WORKER_SCRATCH_DIR``).
    """
    max_bytes = config.MAX_MEDIA_BYTES.get() if max_bytes is None else max_bytes
    timeout_s = config.FETCH_TIMEOUT_S.get() if timeout_s is None else timeout_s
    dest_dir = Path(dest_dir)
    start = time.monotonic()
    if ref.kind == "https":
        path = _fetch_url(
            ref.url, dest_dir, field=ref.field, max_bytes=max_bytes, timeout_s=timeout_s
        )
    elif ref.kind == "s3":
        if s3 is None:
            raise InvalidInput(
                f"{ref.field}: {ref.describe()} needs storage credentials; send s3Config "
                "with the request or set the worker's BUCKET_* variables",
                field=ref.field,
            )
        path = _fetch_s3(ref, dest_dir, settings=s3, max_bytes=max_bytes)
    elif ref.kind == "data":
        path = _fetch_data(ref, dest_dir, max_bytes=max_bytes)
    elif ref.kind == "file":
        path = _copy_file(ref, dest_dir, max_bytes=max_bytes)
    else:  # pragma: no cover - MediaRef.kind is a closed set
        raise ValueError(f"unknown media kind {ref.kind!r}")
    with path.open("rb") as head:
        reason = not_media(head.read(SNIFF_BYTES), path.stat().st_size)
    if reason:
        path.unlink(missing_ok=True)
        raise UnsupportedMedia(
            f"{ref.field}: {ref.describe()} {reason}; send an audio, video or image file",
            field=ref.field,
        )
    logger.info(
        "job=%s fetch ok kind=%s field=%s bytes=%d s=%.2f",
        current_job_id(),
        ref.kind,
        ref.field,
        path.stat().st_size,
        time.monotonic() - start,
    )
    return path


def _fetch_url(
    url: str,
    dest_dir: Path,
    *,
    # what
    field: str,
    # limits
    max_bytes: int,
    timeout_s: float,
) -> Path:
    """GET ``url`` through ``rp_ssrf.safe_get`` into ``dest_dir``.

    Takes http:// as well as https:// (whatever safe_get allows); the https-only rule
    for job input lives in ``parse_media_ref``. Tests use this with a loopback http
    origin, since no public https host is reachable there.
    """
    # Imported here: runpod pulls in aiohttp and more; the handler imports it anyway,
    # but `import storage` stays cheap for tools and tests that never fetch a URL.
    from requests import RequestException
    from runpod.serverless.utils.rp_ssrf import SSRFError, iter_content_capped, safe_get

    shown = _without_query(url)
    started = time.monotonic()
    try:
        response = safe_get(url, stream=True, timeout=timeout_s, max_bytes=max_bytes)
    except SSRFError as exc:
        raise _refused(field, shown, exc) from None
    except RequestException as exc:
        raise FetchFailed(f"{field}: could not fetch {shown}: {_short(exc)}", field=field) from None
    with response:
        if urlsplit(url).scheme == "https" and urlsplit(response.url or url).scheme != "https":
            # safe_get follows redirects to any public http(s) URL; an https input
            # that lands on plain http could have been altered on the way. The hop was
            # made already (it passed the SSRF checks), but its bytes are not used.
            raise FetchFailed(
                f"{field}: {shown} redirected to plain http ({_without_query(response.url)}); "
                "only https sources are accepted",
                field=field,
            )
        if response.status_code != 200:
            raise FetchFailed(
                f"{field}: {shown} answered HTTP {response.status_code}; expected 200",
                field=field,
            )
        content_type = _check_content_type(response.headers.get("Content-Type"), field=field)
        name = _file_name(field, suffix_from=response.url or url, content_type=content_type)

        def too_slow() -> FetchFailed:
            return FetchFailed(
                f"{field}: fetching {shown} took longer than the {timeout_s:g} s limit "
                f"({config.FETCH_TIMEOUT_S.name})",
                field=field,
            )

        watchdog = _Watchdog(response, timeout_s - (time.monotonic() - started))

        def chunks() -> Iterable[bytes]:
            for chunk in iter_content_capped(response, CHUNK_BYTES, max_bytes):
                if watchdog.fired.is_set():
                    raise too_slow()
                yield chunk
            if watchdog.fired.is_set():  # a body without a length just ends at the shutdown
                raise too_slow()

        try:
            with watchdog:
                return _write_atomically(
                    dest_dir, name, lambda out: _copy_chunks(chunks(), out), field=field
                )
        except SSRFError as exc:  # the body ran past the cap
            raise _refused(field, shown, exc) from None
        except (RequestException, OSError) as exc:
            if watchdog.fired.is_set():
                raise too_slow() from None
            if isinstance(exc, RequestException):
                raise FetchFailed(
                    f"{field}: download of {shown} broke off: {_short(exc)}", field=field
                ) from None
            raise


class _Watchdog:
    """Ends a download at its deadline, however the server sends the body.

    requests' timeout bounds each socket read, not the download, and one urllib3 read
    of a Content-Length body loops over ``recv`` until its whole chunk arrived: a
    server dripping a byte a second holds that read for as long as it likes. Neither
    library offers an overall deadline (requests documents that its timeout is not
    one), hence this timer: at the deadline it shuts the socket down, which wakes the
    blocked read (it fails, or a length-less body ends early), and ``fired`` tells the
    caller that the deadline, not the server, ended it.
    """

    def __init__(self, response: Any, seconds: float) -> None:
        self.fired = threading.Event()
        # urllib3 keeps the connection on a streamed response (``HTTPResponse.connection``).
        self._sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired.set()
        if self._sock is not None:
            # socket.socket's own shutdown, also for an SSLSocket: its override would
            # drop the TLS object under the reading thread instead of waking it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _fetch_s3(ref: MediaRef, dest_dir: Path, *, settings: S3Settings, max_bytes: int) -> Path:
    from botocore.exceptions import BotoCoreError, ClientError

    client = _s3.make_client(settings)
    try:
        head = client.head_object(Bucket=ref.bucket, Key=ref.key)
    except (ClientError, BotoCoreError) as exc:
        _s3.raise_fetch_error(exc, field=ref.field, bucket=ref.bucket, key=ref.key)
    size = int(head.get("ContentLength") or 0)
    if size > max_bytes:
        raise FetchFailed(
            f"{ref.field}: {ref.describe()} is {size} bytes, over the {max_bytes} byte cap "
            f"({config.MAX_MEDIA_BYTES.name})",
            field=ref.field,
        )
    content_type = _check_content_type(head.get("ContentType"), field=ref.field)
    name = _file_name(ref.field, suffix_from=ref.key, content_type=content_type)

    def download(out: IO[bytes]) -> None:
        client.download_fileobj(ref.bucket, ref.key, out, Config=_s3.transfer_config())
        # The object may have been replaced between head and get.
        if out.tell() > max_bytes:
            raise FetchFailed(
                f"{ref.field}: {ref.describe()} grew past the {max_bytes} byte cap "
                "while it was read",
                field=ref.field,
            )

    try:
        return _write_atomically(dest_dir, name, download, field=ref.field)
    except (ClientError, BotoCoreError) as exc:
        _s3.raise_fetch_error(exc, field=ref.field, bucket=ref.bucket, key=ref.key)


def _fetch_data(ref: MediaRef, dest_dir: Path, *, max_bytes: int) -> Path:
    # Check the cap on the encoded length first: decoding a huge payload to learn
    # that it is too big would cost the very memory the cap protects.
    max_encoded = 4 * -(-max_bytes // 3)
    if len(ref.data) > max_encoded:
        raise FetchFailed(
            f"{ref.field}: data: URI holds about {len(ref.data) * 3 // 4} bytes, over the "
            f"{max_bytes} byte cap; upload large media and pass an https:// or s3:// URL",
            field=ref.field,
        )
    content_type = _check_content_type(ref.media_type or None, field=ref.field)
    try:
        payload = base64.b64decode(ref.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(
            f"{ref.field}: data: URI payload is not valid base64 ({exc})", field=ref.field
        ) from None
    if len(payload) > max_bytes:
        raise FetchFailed(
            f"{ref.field}: data: URI holds {len(payload)} bytes, over the {max_bytes} byte cap",
            field=ref.field,
        )
    name = _file_name(ref.field, suffix_from="", content_type=content_type)
    return _write_atomically(dest_dir, name, lambda out: out.write(payload), field=ref.field)


SNIFF_BYTES = 512
# Under this no audio, video or image container has room for its header (a WAV
# header alone is 44 bytes, the smallest PNG 67).
MIN_MEDIA_BYTES = 16


def not_media(head: bytes, size: int) -> str | None:
    """Why a fetched input is certainly not media, from its size and first bytes, or
    None. Pure.

    Only the certain cases: an input this rejects would fail in the runner anyway,
    after an environment build and a model load; anything else, an unknown binary
    format included, is left to the runner's decoder.
    """
    if size < MIN_MEDIA_BYTES:
        return f"holds {size} bytes, too few for any audio, video or image file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not a character cut at the sniff's end
            return None
        text = head[: exc.start].decode("utf-8")
    if "\x00" in text or not all(c.isprintable() or c in "\t\r\n" for c in text):
        return None
    first = text.lstrip("\ufeff \t\r\n")[:1]
    kind = "HTML or XML" if first == "<" else "JSON" if first in "{[" else "text"
    return f"is {kind}, not media"


def _copy_file(ref: MediaRef, dest_dir: Path, *, max_bytes: int) -> Path:
    """A local run's own file, copied into scratch like any other input (the runner
    may write beside its inputs; the user's file is never touched)."""
    source = Path(ref.path)
    if not source.is_file():
        raise InvalidInput(f"{ref.field}: no such file {source}", field=ref.field)
    size = source.stat().st_size
    if size > max_bytes:
        raise FetchFailed(
            f"{ref.field}: {source} holds {size} bytes, over the {max_bytes} byte cap "
            "(MEDIA_WORKER_MAX_MEDIA_BYTES)",
            field=ref.field,
        )
    name = _file_name(ref.field, suffix_from=source.name, content_type=None)

    def copy(out: IO[bytes]) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, out)

    return _write_atomically(dest_dir, name, copy, field=ref.field)


def _check_content_type(raw: str | None, *, field: str) -> str | None:
    """The bare media type if acceptable (``None`` when absent), else UnsupportedMedia."""
    if not raw or not raw.strip():
        return None
    media_type = raw.split(";", 1)[0].strip().lower()
    if media_type.startswith(_ACCEPTED_PREFIXES) or media_type in _ACCEPTED_TYPES:
        return media_type
    raise UnsupportedMedia(
        f"{field}: content type {media_type!r} is not audio, video or an image; point the "
        "field at the media file itself (audio/*, video/*, image/* or application/octet-stream)",
        field=field,
    )


def _file_name(field: str, *, suffix_from: str, content_type: str | None) -> str:
    stem = _UNSAFE_NAME.sub("_", field)[:64] or "input"
    suffix = Path(_without_query(suffix_from).rsplit("/", 1)[-1]).suffix if suffix_from else ""
    if not _SAFE_SUFFIX.fullmatch(suffix):
        guessed = (
            _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type)
            if content_type
            else None
        )
        suffix = guessed if guessed and _SAFE_SUFFIX.fullmatch(guessed) else ".bin"
    return stem + suffix.lower()


def _write_atomically(
    dest_dir: Path, name: str, write: Callable[[IO[bytes]], Any], *, field: str
) -> Path:
    """Run ``write(file)`` on a unique temp file, then rename it to ``dest_dir/name``.

    Raises:
        StorageFailed: the disk is full (named, with the setting that moves it).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / name
    try:
        with atomic.atomic_path(final) as tmp, tmp.open("wb") as out:
            write(out)
        return final
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Before: a full scratch disk during a fetch surfaced as `internal`.
        raise StorageFailed(
            f"{field}: no space left on device while fetching it into the job's scratch "
            f"directory {dest_dir}; free space there, or set {config.SCRATCH_DIR.name} to "
            "a larger disk",
            field=field,
        ) from None


def _copy_chunks(chunks: Iterable[bytes], out: IO[bytes]) -> None:
    for chunk in chunks:
        out.write(chunk)


def _refused(field: str, shown: str, exc: Exception) -> FetchFailed:
    # SSRFError messages name the offending URL; drop query strings (tokens).
    reason = re.sub(r"\?\S*", "", str(exc))
    if reason.startswith("could not resolve host"):
        # The SDK raises its SSRF error for a name that does not resolve too; that is
        # a typo or a DNS problem, not the guard refusing an address.
        return FetchFailed(
            f"{field}: could not fetch {shown}: {reason}; check the URL's host name, "
            "and that the worker can resolve names",
            field=field,
        )
    return FetchFailed(f"{field}: refused to fetch {shown}: {reason}", field=field)


def _short(exc: BaseException) -> str:
    text = re.sub(r"\?\S*", "", str(exc)) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
