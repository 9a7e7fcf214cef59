"""Saved cloning voices: a reference clip and its transcript kept under a name.

A ``clone`` job with ``save_voice: "name"`` saves its reference once the job has
succeeded (so only audio a model has read is ever saved); later jobs send
``voice: "name"`` instead of audio. The ``voices`` task lists and deletes them.

On the volume (no bucket configured)::

    <home>/voices/clone/<name>/voice.json          the commit point (see below)
    <home>/voices/clone/<name>/<sha256>.<ext>      the reference, named by its digest
    <home>/voices/clone/<name>/.<...>.partial      a write in progress
    <home>/voices/clone/.deleted-<name>-<hex>/     a delete in progress (never listed)

Under S3 (a bucket configured for the job), the same layout under the key prefix
``voices/clone/<name>/``. A job's ``output.prefix`` namespaces its voices as it does
its outputs: ``<prefix>/voices/clone/<name>/`` in the bucket, and
``<home>/voices/clone/@<prefix>/<name>/`` on the volume (the prefix is validated by
``storage.validate_prefix`` before it gets here).

Writes never leave a half-written voice: the audio goes to a process-unique temp
name and is renamed to its digest name (one S3 PUT is atomic), and only then is
``voice.json`` replaced the same way. A reader follows ``voice.json`` to a file that
is complete by construction, so two jobs saving one name at once leave one of the two
voices, whole. ``voice.json`` that cannot be read counts as no voice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import config
from errors import InvalidInput, StorageFailed
from runtime import atomic

from ._s3 import S3Settings, error_code, make_client

logger = logging.getLogger(__name__)

_MANIFEST = "voice.json"
_PREFIX = "voices/clone"
# A superseded reference is removed by a later save of the same name only after this
# long: a concurrent save may have renamed its audio but not yet committed voice.json.
_ORPHAN_GRACE_S = 3600.0
_DELETED = ".deleted-"
_REMOVE_TRIES = 20
# A save starts again each time a delete of the same name renames its folder away
# mid-save. Each try lost means another delete landed in that window, so the tries
# are bounded by the deletes racing it. Five were lost in a row once, in a CI run on
# a loaded machine (three processes saving and deleting one name, a fourth loading).
_SAVE_TRIES = 50


@dataclass(frozen=True)
class VoiceInfo:
    """One saved voice, as listed."""

    name: str
    sha256: str
    bytes: int
    has_reference_text: bool
    created: str


@dataclass(frozen=True)
class LoadedVoice:
    """A saved voice copied into a job's scratch directory."""

    audio: Path
    reference_text: str | None
    sha256: str


def voices_root(prefix: str | None = None) -> Path:
    root = config.resolve_paths().home / "voices" / "clone"
    # '@' cannot start a voice name, so a prefix folder never meets a voice folder.
    return root / f"@{prefix}" if prefix else root


def save_voice(
    name: str,
    audio: Path,
    reference_text: str | None,
    *,
    s3: S3Settings | None,
    prefix: str | None = None,
) -> VoiceInfo:
    """Save ``audio`` (and its transcript) as voice ``name``, replacing any older one.

    Raises:
        StorageFailed: the volume or bucket refused the write; nothing half-written
            is visible under the name.
    """
    digest, size = _sha256_and_size(audio)
    info = VoiceInfo(
        name=name,
        sha256=digest,
        bytes=size,
        has_reference_text=reference_text is not None,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    manifest = {
        "version": 1,
        "audio": f"{digest}{_suffix(audio)}",
        "reference_text": reference_text,
        **{k: v for k, v in vars(info).items() if k != "name"},
    }
    try:
        if s3 is None:
            _save_local(voices_root(prefix) / name, audio, manifest)
        else:
            _save_s3(s3, _Where(name, prefix), audio, manifest)
    except OSError as exc:
        raise StorageFailed(f"save_voice: could not save voice {name!r}: {exc.strerror}") from None
    logger.info("voice saved name=%s bytes=%d store=%s", name, size, "s3" if s3 else "volume")
    return info


def load_voice(
    name: str, dest_dir: Path, *, s3: S3Settings | None, prefix: str | None = None
) -> LoadedVoice:
    """Copy voice ``name`` into ``dest_dir``.

    Raises:
        InvalidInput: no such voice (field ``voice``), or its audio is damaged.
    """
    manifest = _read_manifest(_Where(name, prefix), s3=s3)
    if manifest is None:
        known = ", ".join(v.name for v in list_voices(s3=s3, prefix=prefix)) or "none saved yet"
        raise InvalidInput(
            f"voice: no saved voice {name!r} (saved: {known}); save one with a clone job's "
            "save_voice and reference_audio",
            field="voice",
        )
    dest = dest_dir / f"voice-{name}{Path(manifest['audio']).suffix}"
    vanished = InvalidInput(
        f"voice: saved voice {name!r} was deleted while this job read it", field="voice"
    )
    if s3 is None:
        try:
            shutil.copyfile(voices_root(prefix) / name / manifest["audio"], dest)
        except FileNotFoundError:  # a delete renamed the folder after voice.json was read
            raise vanished from None
    else:
        key = _Where(name, prefix).key(manifest["audio"])
        if not _s3_download(s3, name, key, dest):
            raise vanished
    if _sha256_and_size(dest)[0] != manifest["sha256"]:
        raise InvalidInput(
            f"voice: the saved audio of {name!r} is damaged (digest mismatch); save it again",
            field="voice",
        )
    return LoadedVoice(dest, manifest.get("reference_text"), manifest["sha256"])


def list_voices(*, s3: S3Settings | None, prefix: str | None = None) -> list[VoiceInfo]:
    """Every saved voice whose ``voice.json`` reads, by name."""
    if s3 is None:
        root = voices_root(prefix)
        # '.deleted-*' folders are deletes in progress and '@<prefix>' other namespaces;
        # a voice name starts with a letter or digit (contract.VOICE_NAME_PATTERN).
        names = (
            sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0].isalnum())
            if root.is_dir()
            else []
        )
    else:
        names = _s3_names(s3, prefix)
    voices = []
    for name in names:
        manifest = _read_manifest(_Where(name, prefix), s3=s3)
        if manifest is not None:
            voices.append(_info(name, manifest))
    return voices


def delete_voice(name: str, *, s3: S3Settings | None, prefix: str | None = None) -> None:
    """Delete voice ``name``.

    Raises:
        InvalidInput: no such voice (field ``name``).
    """
    where = _Where(name, prefix)
    if _read_manifest(where, s3=s3) is None:
        raise InvalidInput(f"name: no saved voice {name!r}", field="name")
    if s3 is None:
        # Rename first: the name disappears at once, and the removal can take its time.
        doomed = voices_root(prefix) / f"{_DELETED}{name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(voices_root(prefix) / name, doomed)
        except FileNotFoundError:  # another delete of this name renamed it first
            raise InvalidInput(f"name: no saved voice {name!r}", field="name") from None
        _remove_tree(doomed)
        # and what a delete killed midway (a worker stopped mid-job) left behind
        for leftover in voices_root(prefix).glob(f"{_DELETED}*"):
            shutil.rmtree(leftover, ignore_errors=True)
    else:

        def delete(client: Any) -> None:
            client.delete_object(Bucket=s3.bucket, Key=where.key(_MANIFEST))
            listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=where.key(""))
            for obj in listed.get("Contents", []):
                client.delete_object(Bucket=s3.bucket, Key=obj["Key"])

        _s3_call(s3, "delete", name, delete)
    logger.info("voice deleted name=%s", name)


# --- volume -----------------------------------------------------------------------


def _save_local(folder: Path, audio: Path, manifest: dict[str, Any]) -> None:
    for attempt in range(_SAVE_TRIES):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic.copy(audio, folder / manifest["audio"])
            atomic.write_bytes(folder / _MANIFEST, json.dumps(manifest, indent=2).encode())
            break
        except (FileNotFoundError, FileExistsError):
            # A delete of this name renamed the folder away mid-save (mkdir's own
            # exists-then-is_dir check can lose that race too); this save comes after
            # that delete, so it starts again in a fresh folder.
            if attempt == _SAVE_TRIES - 1:
                raise
    now = time.time()
    try:
        leftovers = list(folder.iterdir())
    except FileNotFoundError:  # a delete that came after this save took the folder
        return
    for path in leftovers:
        if path.name in (_MANIFEST, manifest["audio"]):
            continue
        try:
            stale = now - path.stat().st_mtime > _ORPHAN_GRACE_S
        except FileNotFoundError:  # another save renamed its temp file meanwhile
            continue
        if stale:
            path.unlink(missing_ok=True)


def _remove_tree(doomed: Path) -> None:
    """Remove a renamed-away voice folder, all of it.

    One ``rmtree`` is not enough: a save that looked up the folder just before the
    rename still creates its temp file inside it, after ``rmtree`` has listed it, and
    the folder would then stay forever as ``.deleted-*`` (found by racing saves and
    deletes). That save fails on its next path and retries elsewhere, so a few rounds
    empty the folder.
    """
    for _ in range(_REMOVE_TRIES):
        shutil.rmtree(doomed, ignore_errors=True)
        if not doomed.exists():
            return
        time.sleep(0.05)
    logger.warning("voice folder not fully removed path=%s", doomed)


# --- S3 ---------------------------------------------------------------------------


def _base(prefix: str | None) -> str:
    return f"{prefix}/{_PREFIX}" if prefix else _PREFIX


@dataclass(frozen=True)
class _Where:
    """One voice's place: its name under an optional job prefix."""

    name: str
    prefix: str | None

    def key(self, file: str) -> str:
        return f"{_base(self.prefix)}/{self.name}/{file}"


def _save_s3(s3: S3Settings, where: _Where, audio: Path, manifest: dict[str, Any]) -> None:
    name = where.name

    def save(client: Any) -> None:
        client.upload_file(str(audio), s3.bucket, where.key(manifest["audio"]))
        client.put_object(
            Bucket=s3.bucket,
            Key=where.key(_MANIFEST),
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )

    _s3_call(s3, "save", name, save)


def _s3_download(s3: S3Settings, name: str, key: str, dest: Path) -> bool:
    """Download ``key`` to ``dest``; False when the object is gone (a delete raced us)."""
    from botocore.exceptions import ClientError

    def get(client: Any) -> bool:
        try:
            client.download_file(s3.bucket, key, str(dest))
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return False
            raise
        return True

    return _s3_call(s3, "get", name, get)


def _s3_names(s3: S3Settings, prefix: str | None) -> list[str]:
    base = f"{_base(prefix)}/"

    def names(client: Any) -> list[str]:
        found: set[str] = set()
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=s3.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                parts = obj["Key"].removeprefix(base).split("/")
                if len(parts) == 2 and parts[1] == _MANIFEST:
                    found.add(parts[0])
        return sorted(found)

    return _s3_call(s3, "list", "*", names)


def _s3_call(s3: S3Settings, what: str, name: str, call: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(make_client(s3))
    except (BotoCoreError, ClientError) as exc:
        raise StorageFailed(
            f"voices: could not {what} voice {name!r} in bucket {s3.bucket!r} at "
            f"{s3.endpoint_host}: {error_code(exc)}"
        ) from None


# --- shared -----------------------------------------------------------------------


def _read_manifest(where: _Where, *, s3: S3Settings | None) -> dict[str, Any] | None:
    try:
        if s3 is None:
            raw = (voices_root(where.prefix) / where.name / _MANIFEST).read_bytes()
        else:
            raw = _s3_get(s3, where)
            if raw is None:
                return None
        manifest = json.loads(raw)
        if not isinstance(manifest, dict) or manifest.get("version") != 1:
            return None
        Path(manifest["audio"])  # a manifest without its audio's name is unreadable
        return manifest
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _s3_get(s3: S3Settings, where: _Where) -> bytes | None:
    from botocore.exceptions import ClientError

    def get(client: Any) -> bytes | None:
        try:
            return client.get_object(Bucket=s3.bucket, Key=where.key(_MANIFEST))["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise

    return _s3_call(s3, "read", where.name, get)


def _info(name: str, manifest: dict[str, Any]) -> VoiceInfo:
    return VoiceInfo(
        name=name,
        sha256=manifest["sha256"],
        bytes=int(manifest["bytes"]),
        has_reference_text=manifest.get("reference_text") is not None,
        created=manifest["created"],
    )


def _sha256_and_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _suffix(path: Path) -> str:
    # Keep the container's extension (decoders sniff content, but a name helps people);
    # anything odd becomes .bin rather than reaching a path or key.
    suffix = path.suffix.lower()
    return suffix if suffix[1:].isalnum() and len(suffix) <= 6 else ".bin"
