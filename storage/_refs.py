"""Media references and output key prefixes: pure parsing, no I/O.

A media reference is what a job names as input media (contract: "A media reference is
one of ..."). :func:`parse_media_ref` turns the string into a :class:`MediaRef` or
raises :class:`errors.InvalidInput` naming the field; fetching happens in ``_fetch``.

::

    https://host/path?query      kind="https"  (SSRF checks happen when fetched)
    s3://bucket/some/key.wav     kind="s3"     (read with the configured credentials)
    data:audio/wav;base64,UklG.. kind="data"   (standard base64, no whitespace)
    file:///home/me/talk.wav     kind="file"   (local runs only: allow_local_files)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from errors import InvalidInput

MediaKind = Literal["https", "s3", "data", "file"]

# A local run (python handler.py with test_input.json or --test_input) reads media
# from the user's own disk; a deployed endpoint never does: a job there could read
# any file the worker can. The handler turns this on for local runs only.
_local_files = False


def allow_local_files(allowed: bool) -> None:
    """Accept local paths and ``file://`` URLs as media (local runs only)."""
    global _local_files
    _local_files = allowed


def local_file_uri(value: str) -> str | None:
    """``value`` as an absolute ``file://`` URI when it names a local file and local
    files are allowed; None when it is not local (a URL, s3://, data:). Pure but for
    the switch and the working directory a relative path is resolved against.

    Raises:
        ValueError: ``value`` is local but local files are not allowed here.
    """
    scheme = urlsplit(value).scheme.lower()
    if scheme and scheme != "file":
        return None  # a URL of some scheme: parse_media_ref judges it
    if not _local_files:
        raise ValueError(
            "a local file (a path or file://) is read only in a local run (python "
            "handler.py with test_input.json or --test_input); a deployed endpoint takes "
            "an https:// URL, an s3://bucket/key reference or a data: URI"
        )
    path = Path(unquote(urlsplit(value).path)) if scheme == "file" else Path(value)
    return (Path.cwd() / path.expanduser()).resolve().as_uri()


MAX_URL_CHARS = 8192
"""Longest https:// or s3:// reference accepted (a data: URI is capped by size at fetch)."""

MAX_PREFIX_BYTES = 512
"""Longest output key prefix (S3 keys may be 1024 bytes; the rest is jobs/<id>/<name>)."""
MAX_SEGMENT_BYTES = 255
"""Longest segment of a prefix: the local store makes each one a directory, and file
systems refuse longer names (ENAMETOOLONG), after the job's work was done."""

# Standard alphabet, padding only at the end, length a multiple of 4 (checked apart).
_BASE64_SHAPE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# RFC 2045 token: type "/" subtype, optional parameters (charset=..., codecs=...).
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")
# S3 bucket naming rules, loosely: 3..63 of lowercase letters, digits, dots, hyphens.
# (Legacy us-east-1 buckets may hold capitals and underscores; accepted too.)
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class MediaRef:
    """A parsed media reference.

    Attributes:
        kind: ``"https"``, ``"s3"`` or ``"data"``.
        field: the job input field it came from (for error messages).
        url: the https URL (kind ``https``).
        bucket: the bucket (kind ``s3``).
        key: the object key (kind ``s3``).
        media_type: the declared media type of a data: URI, ``""`` when absent.
        data: the base64 payload of a data: URI (left out of ``repr``: it can be huge).
        path: the local file (kind ``file``, local runs only).
    """

    kind: MediaKind
    field: str
    url: str = ""
    bucket: str = ""
    key: str = ""
    media_type: str = ""
    data: str = field(default="", repr=False)
    path: str = ""

    def describe(self) -> str:
        """A short form for log lines and messages: no query string, no payload."""
        if self.kind == "https":
            return _without_query(self.url)
        if self.kind == "s3":
            return f"s3://{self.bucket}/{self.key}"
        if self.kind == "file":
            return self.path
        return f"data:{self.media_type or '-'} ({len(self.data)} base64 chars)"


def parse_media_ref(value: str, *, field: str) -> MediaRef:
    """Parse a job's media reference.

    Args:
        value: the string from the job input.
        field: the input field name, carried into the result and any error.

    Returns:
        The parsed :class:`MediaRef`.

    Raises:
        InvalidInput: ``value`` is not a string, uses another scheme (``http://``,
            ``file://``, ``ftp://`` ...), carries credentials, or is malformed (empty
            bucket or key, a data: URI that is not standard base64).
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field}: expected a media reference string", field=field)
    value = value.strip()
    scheme, sep, _ = value.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise _invalid(field, "expected an https:// URL, an s3://bucket/key or a data: URI")
    if scheme == "data":
        return _parse_data(value, field=field)
    if len(value) > MAX_URL_CHARS:
        raise _invalid(field, f"reference longer than {MAX_URL_CHARS} characters")
    if _CONTROL.search(value) or " " in value:
        raise _invalid(field, "reference contains spaces or control characters")
    if scheme == "file":
        if not _local_files:
            raise _invalid(field, "file:// is read only in a local run (python handler.py)")
        return MediaRef(kind="file", field=field, path=unquote(urlsplit(value).path))
    if scheme == "https":
        return _parse_https(value, field=field)
    if scheme == "s3":
        return _parse_s3(value, field=field)
    raise _invalid(
        field,
        f"scheme {scheme!r} is not accepted; use an https:// URL, an s3://bucket/key "
        "or a base64 data: URI",
    )


def validate_prefix(prefix: str, *, field: str = "output.prefix") -> str:
    """Check and normalise an output key prefix.

    Args:
        prefix: e.g. ``"team-a/2024"``; a trailing slash is dropped.
        field: the input field name used in errors.

    Returns:
        The prefix without trailing slash (``""`` for an empty prefix).

    Raises:
        InvalidInput: the prefix is absolute, has ``.``/``..`` or empty segments,
            backslashes, control characters, a segment longer than ``MAX_SEGMENT_BYTES``, or
            is longer than ``MAX_PREFIX_BYTES``.
    """
    if not isinstance(prefix, str):
        raise _invalid(field, "expected a string")
    if _CONTROL.search(prefix):
        raise _invalid(field, "control characters are not allowed")
    if "\\" in prefix:
        raise _invalid(field, "backslashes are not allowed; separate segments with '/'")
    if prefix.startswith("/") or _DRIVE.match(prefix):
        raise _invalid(field, f"{prefix!r} is absolute; give a relative prefix like 'team/a'")
    normalised = prefix.rstrip("/")
    if not normalised:
        return ""
    if len(normalised.encode()) > MAX_PREFIX_BYTES:
        raise _invalid(field, f"longer than {MAX_PREFIX_BYTES} bytes")
    for segment in normalised.split("/"):
        if segment == "":
            raise _invalid(field, f"{prefix!r} has an empty segment ('//')")
        if segment in (".", ".."):
            raise _invalid(field, f"{prefix!r} has a {segment!r} segment")
        if segment != segment.strip():
            raise _invalid(field, f"{prefix!r} has a segment with leading or trailing spaces")
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise _invalid(
                field,
                f"segment {segment[:24]!r}... is {len(segment.encode())} bytes; each "
                f"segment between '/' may have at most {MAX_SEGMENT_BYTES}",
            )
    return normalised


def _parse_https(value: str, *, field: str) -> MediaRef:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise _invalid(field, f"malformed URL ({exc})") from None
    if not parts.hostname:
        raise _invalid(field, "URL has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and redirects; refuse them outright.
        raise _invalid(field, "URL must not carry credentials (user:password@)")
    del port
    return MediaRef(kind="https", field=field, url=value)


def _parse_s3(value: str, *, field: str) -> MediaRef:
    rest = value[len("s3://") :] if value[:5].lower() == "s3://" else None
    if rest is None:
        raise _invalid(field, "expected s3://bucket/key")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise _invalid(field, "s3:// reference has no bucket")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise _invalid(field, f"{bucket!r} is not a valid bucket name")
    if not key or key.endswith("/"):
        raise _invalid(field, f"s3://{bucket}/ reference has no object key")
    return MediaRef(kind="s3", field=field, bucket=bucket, key=key)


def _parse_data(value: str, *, field: str) -> MediaRef:
    header, sep, payload = value[len("data:") :].partition(",")
    if not sep:
        raise _invalid(field, "data: URI has no ',' before its payload")
    params = header.split(";")
    if params[-1].strip().lower() != "base64":
        raise _invalid(field, "data: URI must be base64 encoded (data:<type>;base64,<data>)")
    media_type = params[0].strip().lower()
    if media_type and not _MEDIA_TYPE.fullmatch(media_type):
        raise _invalid(field, f"data: URI has a malformed media type {media_type!r}")
    if not payload:
        raise _invalid(field, "data: URI payload is empty")
    if len(payload) % 4 or not _BASE64_SHAPE.fullmatch(payload):
        raise _invalid(
            field, "data: URI payload is not standard base64 (A-Z a-z 0-9 + / and '=' padding)"
        )
    return MediaRef(kind="data", field=field, media_type=media_type, data=payload)


def _without_query(url: str) -> str:
    # Signed input URLs carry tokens in the query string; keep them out of logs.
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def _invalid(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", field=field)
