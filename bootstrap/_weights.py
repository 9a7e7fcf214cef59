"""Model weights: pinned Hugging Face snapshots cached on the volume.

Layout (standard HF cache, so the hub client and RunPod share it)::

    /runpod-volume/huggingface-cache/hub/      RunPod's cached models (read only, used first)
    /opt/media-worker/hf/                      weights baked into the image (read only,
                                               same layout as <home>/hf; used next)
    <home>/hf/hub/models--<owner>--<name>/     our cache (HF_HOME=<home>/hf), named by
                                               huggingface_hub's repo_folder_name
        blobs/<etag>  snapshots/<commit>/<file> -> ../../blobs/<etag>
    <home>/hf/media-worker/<owner>--<name>-<commit>.json
                                               record: each file's size and sha256 /
                                               git blob id, written after a verified
                                               download; the warm path checks sizes
                                               against it without network

``huggingface_hub.snapshot_download`` does the downloading (resume, locking,
atomic moves). What is ours: the RunPod cache lookup, the record, and checking
the files against the hub's listing (size, LFS sha256, git blob sha1), which the
client does not do after a download.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import config
from bootstrap import _disk
from bootstrap._manifest import read_manifest, redact_url, write_json_atomic
from bootstrap._profile import Weights
from errors import BootstrapFailed

logger = logging.getLogger(__name__)

_CHUNK = 4 * 1024 * 1024
# Where the hub client goes when HF_ENDPOINT is unset (its own default).
DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # LFS files
    blob_id: str | None  # git blob sha1 (non-LFS files)


def _snapshots(cache: Path, w: Weights) -> Path:
    # Imported here: the hub client costs a noticeable share of handler start-up.
    from huggingface_hub.file_download import repo_folder_name

    return cache / repo_folder_name(repo_id=w.repo_id, repo_type=w.repo_type) / "snapshots"


def snapshot_dir(cache: Path, w: Weights) -> Path:
    """Where the hub client puts ``w``'s snapshot in the cache ``cache`` (its own naming)."""
    assert w.revision is not None, "resolve a content pin first"
    return _snapshots(cache, w) / w.revision


def record_path(hf_home: Path, w: Weights) -> Path:
    """The record of a commit's files; for a content pin, which commit it resolved to."""
    return hf_home / "media-worker" / f"{w.repo_id.replace('/', '--')}-{w.pin}.json"


def resolved(w: Weights, hf_home: Path) -> Weights | None:
    """``w`` pinned to the commit an earlier download under ``hf_home`` fetched for its
    sha256 pins (``w`` itself when it names a commit); None when nothing was fetched."""
    if w.revision is not None:
        return w
    record = read_manifest(record_path(hf_home, w))
    revision = record.get("revision") if record else None
    if isinstance(revision, str) and record.get("sha256") == dict(w.sha256):  # type: ignore[union-attr]
        return dataclasses.replace(w, revision=revision)
    return None


def _in_cached_commit(w: Weights, cached_models: Path) -> Weights | None:
    """``w`` pinned to a snapshot of RunPod's cache that holds every pinned file."""
    folder = _snapshots(cached_models, w)
    if w.revision is not None or not folder.is_dir():
        return None
    for snap in sorted(folder.iterdir()):
        if all((snap / name).is_file() for name, _ in w.sha256):
            return dataclasses.replace(w, revision=snap.name)
    return None


def matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


def _local_files(snapshot: Path) -> list[str]:
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())


def check_files(snapshot: Path, expected: dict[str, dict[str, Any]], *, full: bool) -> list[str]:
    """Problems with ``snapshot`` against ``expected`` (path -> size, sha256, blob_id).

    Sizes always; digests only when ``full`` (reads every byte).
    """
    problems = []
    for rel, meta in sorted(expected.items()):
        path = snapshot / rel
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{rel}: missing")
            continue
        if size != meta["size"]:
            problems.append(f"{rel}: {size} bytes, expected {meta['size']}")
            continue
        if full and (meta.get("sha256") or meta.get("blob_id")):
            sha256, sha1 = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    sha256.update(chunk)
                    sha1.update(chunk)
            if meta.get("sha256") and sha256.hexdigest() != meta["sha256"]:
                problems.append(f"{rel}: sha256 differs from the hub's")
            elif not meta.get("sha256") and sha1.hexdigest() != meta["blob_id"]:
                problems.append(f"{rel}: git blob id differs from the hub's")
    return problems


def weights_state(w: Weights, *, hf_home: Path, cached_models: Path) -> str:
    """``present`` / ``partial`` / ``missing`` for status, from sizes only."""
    found = _in_cached_commit(w, cached_models) or resolved(w, hf_home)
    if found is None:
        return "missing"
    w = found
    if _in_cached_models(w, cached_models) is not None:
        return "present"
    snap = snapshot_dir(hf_home / "hub", w)
    record = read_manifest(record_path(hf_home, w))
    if record and isinstance(record.get("files"), dict):
        return "present" if not check_files(snap, record["files"], full=False) else "partial"
    return "partial" if snap.is_dir() else "missing"


def _in_cached_models(w: Weights, cached_models: Path) -> Path | None:
    """RunPod's snapshot of ``w``, when it holds every required file.

    Optional patterns are not asked for: a conversion published without one (Systran's
    faster-whisper tiny to large-v2 have no ``preprocessor_config.json``) is still the
    model, and refusing it would download it again onto the volume.
    """
    snap = snapshot_dir(cached_models, w)
    if not snap.is_dir():
        return None
    files = _local_files(snap)
    if all(any(fnmatch.fnmatch(f, p) for f in files) for p in w.required or ()):
        return snap
    return None


def _in_image(w: Weights, image_hf: Path) -> Path | None:
    """The snapshot baked into the image, when its record says it is complete.

    Read only: a damaged baked file is not repaired here (the image is immutable);
    the weights then come from the volume as if nothing were baked.
    """
    snap = snapshot_dir(image_hf / "hub", w)
    record = read_manifest(record_path(image_hf, w))
    if not (record and isinstance(record.get("files"), dict)):
        return None
    problems = check_files(snap, record["files"], full=False)
    if problems:
        logger.warning("weights %s baked into the image are damaged: %s", w.repo_id, problems)
        return None
    return snap


def remove_files(snapshot: Path, rels: Iterable[str]) -> None:
    for rel in rels:
        link = snapshot / rel
        blob = link.resolve() if link.is_symlink() else None
        link.unlink(missing_ok=True)
        if blob is not None:
            blob.unlink(missing_ok=True)


def _resolve_remote(w: Weights, *, endpoint: str | None, token: str | bool) -> Weights:
    """``w`` pinned to the commit the repository's ``main`` holds now (network)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HTTPError  # see _download: transport errors too

    where = f"{w.repo_id}@main"
    hub = redact_url(endpoint or DEFAULT_ENDPOINT)
    try:
        info = HfApi(endpoint=endpoint, token=token).repo_info(
            w.repo_id, revision="main", repo_type=w.repo_type
        )
    except HTTPError as exc:
        raise BootstrapFailed(_hub_failure(where, hub, exc, token=bool(token))) from None
    except OSError as exc:
        raise BootstrapFailed(
            f"weights {where}: reading its commit from {hub} failed: {exc}"
        ) from None
    return dataclasses.replace(w, revision=info.sha)


def _list_remote(w: Weights, *, endpoint: str | None, token: str | bool) -> list[RemoteFile]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, token=token)
    out = []
    for entry in api.list_repo_tree(
        w.repo_id, revision=w.revision, recursive=True, repo_type=w.repo_type
    ):
        if isinstance(entry, RepoFile) and matches(entry.path, w.patterns):
            lfs = entry.lfs
            out.append(
                RemoteFile(
                    entry.path,
                    lfs.size if lfs else entry.size,
                    lfs.sha256 if lfs else None,
                    None if lfs else entry.blob_id,
                )
            )
    return out


def ensure_weights(
    weights: Iterable[Weights],
    *,
    hf_home: Path,
    cached_models: Path,
    on_progress: Callable[[str], None],
    image_weights: Path | None = None,
    profile: str | None = None,
) -> dict[str, Path]:
    """Local snapshot paths for ``weights``, downloading what is missing.

    ``profile`` (the one they are for) is named in what an error says to do.

    Looks in RunPod's ``cached_models``, then ``image_weights`` (an HF home baked
    into the image, read only), then ``hf_home`` (the volume's), then downloads
    into ``hf_home``.

    Raises:
        BootstrapFailed: the hub refused or failed, a file did not verify, or the
            volume has no room (the message names the repo and what to do).
    """
    return {
        w.repo_id: _ensure_one(
            w,
            hf_home=hf_home,
            cached_models=cached_models,
            image_weights=image_weights,
            on_progress=on_progress,
            profile=profile,
        )
        for w in weights
    }


def _ensure_one(
    w: Weights,
    *,
    hf_home: Path,
    cached_models: Path,
    image_weights: Path | None,
    on_progress: Callable[[str], None],
    profile: str | None = None,
) -> Path:
    if w.revision is None:
        known = (
            _in_cached_commit(w, cached_models)
            or (resolved(w, image_weights) if image_weights not in (None, hf_home) else None)
            or resolved(w, hf_home)
        )
        if known is not None:
            return _ensure_one(
                known,
                hf_home=hf_home,
                cached_models=cached_models,
                image_weights=image_weights,
                on_progress=on_progress,
                profile=profile,
            )
        endpoint = os.environ.get("HF_ENDPOINT") or None
        token: str | bool = config.HF_TOKEN.get() or False
        _require_hub(f"{w.repo_id}@main", endpoint, profile=profile)
        latest = _resolve_remote(w, endpoint=endpoint, token=token)
        path = _download(
            latest, cache=hf_home / "hub", hf_home=hf_home, on_progress=on_progress, profile=profile
        )
        write_json_atomic(
            record_path(hf_home, w),
            {"repo_id": w.repo_id, "revision": latest.revision, "sha256": dict(w.sha256)},
        )
        logger.info("weights %s pinned by sha256 resolved to %s", w.repo_id, latest.revision)
        return path
    cached = _in_cached_models(w, cached_models)
    if cached is not None:
        logger.info("weights %s@%s from RunPod cached models %s", w.repo_id, w.revision[:8], cached)
        return cached
    baked = _in_image(w, image_weights) if image_weights not in (None, hf_home) else None
    if baked is not None:
        logger.info("weights %s@%s baked into the image %s", w.repo_id, w.revision[:8], baked)
        return baked
    cache = hf_home / "hub"
    snap = snapshot_dir(cache, w)
    record = read_manifest(record_path(hf_home, w))
    if record and isinstance(record.get("files"), dict):
        problems = check_files(snap, record["files"], full=False)
        if not problems:
            return snap
        logger.warning(
            "weights %s@%s damaged, re-downloading: %s", w.repo_id, w.revision[:8], problems
        )
        remove_files(snap, [p.split(":", 1)[0] for p in problems])
        record_path(hf_home, w).unlink(missing_ok=True)
    return _download(w, cache=cache, hf_home=hf_home, on_progress=on_progress, profile=profile)


def _check_pins(w: Weights, remote: list[RemoteFile]) -> None:
    """Refuse, before any byte is downloaded, a commit whose files differ from ``w``'s
    sha256 pins (the hub lists each LFS file's sha256)."""
    listed = {f.path: f.sha256 for f in remote}
    bad = [
        f"{name}: {'not in the commit' if name not in listed else f'sha256 {listed[name]}'}"
        f", pinned {digest}"
        for name, digest in w.sha256
        if listed.get(name) != digest
    ]
    if bad:
        raise BootstrapFailed(
            f"weights {w.repo_id}@{w.revision}: the files differ from their pinned sha256: "
            f"{'; '.join(bad)}\n\nhint: the repository changed since the pins were written; "
            "pin a commit whose files are the ones you want (the runner's revision setting)"
        )


def _download(
    w: Weights,
    *,
    cache: Path,
    hf_home: Path,
    on_progress: Callable[[str], None],
    profile: str | None = None,
) -> Path:
    from huggingface_hub import snapshot_download

    # The hub client's HTTP errors all derive from its HTTP library's base class, which
    # huggingface_hub.errors re-exports: HfHubHTTPError (the hub answered 401, 404, 5xx)
    # and the transport's own (connection refused, DNS, timeout), which is not an
    # OSError, so catching only those two reported an unreachable hub as `internal`.
    from huggingface_hub.errors import HTTPError

    # Read at call time: tests and Pods point HF_ENDPOINT at a mirror after import.
    endpoint = os.environ.get("HF_ENDPOINT") or None
    token: str | bool = config.HF_TOKEN.get() or False  # False: never read ~/.cache tokens
    where = f"{w.repo_id}@{w.revision[:8]}"
    hub = redact_url(endpoint or DEFAULT_ENDPOINT)
    _require_hub(where, endpoint, profile=profile)
    try:
        remote = _list_remote(w, endpoint=endpoint, token=token)
        _check_pins(w, remote)
        snap = snapshot_dir(cache, w)
        missing = sum(f.size for f in remote if not (snap / f.path).exists())
        _disk.require_free(cache, missing + 16 * _disk.MB, what=f"downloading the weights {where}")
        on_progress(f"downloading weights {where} ({missing / _disk.MB:.0f} MB)")
        logger.info("weights %s downloading files=%d bytes=%d", where, len(remote), missing)
        # A file is written to a process-unique temp name and renamed in when complete;
        # the client deletes that temp file when the download fails. What a failure
        # keeps is whole files only, which the next attempt skips (resumes from).
        path = Path(
            snapshot_download(
                w.repo_id,
                revision=w.revision,
                repo_type=w.repo_type,
                allow_patterns=list(w.patterns),
                cache_dir=str(cache),
                token=token,
                endpoint=endpoint,
            )
        )
    except HTTPError as exc:
        raise BootstrapFailed(_hub_failure(where, hub, exc, token=bool(token))) from None
    except OSError as exc:
        if _disk.is_disk_full(exc):
            _disk.raise_disk_full(cache, need=None, free=None, what=f"the weights {where}")
        if isinstance(exc.__cause__, HTTPError):  # the client's "cannot find" wraps the cause
            raise BootstrapFailed(
                _hub_failure(where, hub, exc.__cause__, token=bool(token))
            ) from None
        raise BootstrapFailed(f"weights {where}: download from {hub} failed: {exc}") from None
    expected = {f.path: {"size": f.size, "sha256": f.sha256, "blob_id": f.blob_id} for f in remote}
    problems = check_files(path, expected, full=True)
    if problems:
        remove_files(path, [p.split(":", 1)[0] for p in problems])
        raise BootstrapFailed(
            f"weights {where}: downloaded files do not match the hub's listing: "
            f"{'; '.join(problems)}.\n\nhint: retry; if it repeats, the mirror serves bad data"
        )
    record_path(hf_home, w).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        record_path(hf_home, w),
        {
            "repo_id": w.repo_id,
            "revision": w.revision,
            "repo_type": w.repo_type,
            "files": expected,
        },
    )
    logger.info("weights %s ready path=%s", where, path)
    return path


def _require_hub(where: str, endpoint: str | None, *, profile: str | None) -> None:
    """Fail at once when the hub does not answer within MEDIA_WORKER_HUB_TIMEOUT_S.

    The hub client retries a refused or timed-out connection five times with
    backoff (23 s, each retry logged twice) before it gives up; one HEAD request
    with a bounded timeout tells the same in at most that timeout. Any HTTP answer
    counts as reachable: what it means is the client's to judge.
    """
    import httpx  # huggingface_hub's own HTTP library

    hub = endpoint or DEFAULT_ENDPOINT
    try:
        httpx.head(hub, timeout=config.HUB_TIMEOUT_S.get(), follow_redirects=False)
    except httpx.TransportError as exc:
        raise BootstrapFailed(
            _hub_failure(where, redact_url(hub), exc, token=False, profile=profile)
        ) from None


def _hub_failure(
    where: str, hub: str, exc: Exception, *, token: bool, profile: str | None = None
) -> str:
    """The message for a hub that failed or could not be reached, with what to do next.

    The client's own messages name the URL, never the token.
    """
    status = getattr(getattr(exc, "response", None), "status_code", None)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if status is None:
        return (
            f"weights {where}: the hub at {hub} could not be reached "
            f"({type(exc).__name__}: {first})\n\n"
            "hint: give the worker network access to the hub (HF_ENDPOINT names a mirror), "
            "or prepare the weights on the volume from a machine that has it "
            f"(python -m models prepare {profile or '<profile>'})"
        )
    if status in (401, 403):
        hint = (
            "the token in HF_TOKEN lacks access to this repo"
            if token
            else "for a gated or private repo set HF_TOKEN"
        )
    elif status == 404:
        hint = "check the repo id and revision (a private repo without HF_TOKEN looks missing)"
    else:
        hint = "the hub failed; retry later"
    return f"weights {where}: the hub at {hub} answered {status}: {first}\n\nhint: {hint}"
