"""Profile artifacts: download once, verify the sha256 (of the file, or of a source
archive's unpacked tree), then install or unpack.

Files (``<home>`` is on the volume)::

    <home>/artifacts/<sha256>/<file name>        verified copy, renamed into place
    <home>/artifacts/<sha256>/.tmp-<file>-...     a download in progress (runtime.atomic)

A copy is trusted only after its digest matched, so a truncated download or a
publisher that replaced the file is an error that names both hashes, never an
installed surprise. The store is keyed by digest: two profiles (or two workers)
that pin the same file share it, and nothing is downloaded twice.

Downloads use the stdlib's urllib: the URLs are the profile's own pins (or an
operator's mirror), so the SSRF rules of job inputs (``storage``) do not apply,
and no extra HTTP library is needed in the bootstrapper.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from bootstrap._profile import Artifact
from errors import BootstrapFailed
from runtime.atomic import atomic_path, temp_beside

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 120.0
_CHUNK = 1024 * 1024


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: Path) -> str:
    """SHA-256 of the files under ``root``: each regular file's relative POSIX path
    and the SHA-256 of its bytes, one line per file in sorted path order. Modes,
    times, empty directories and how the tree was packed do not count."""
    digest = hashlib.sha256()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    for rel, path in files:
        digest.update(f"{rel}\0{_sha256_of(path)}\n".encode())
    return digest.hexdigest()


def _unpack(archive: Path, dest: Path, label: str) -> Path:
    """``archive`` unpacked into ``dest``; the tree's root (a single top-level
    directory, as in a repository snapshot, is stripped)."""
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    target = (dest / member).resolve()
                    if not target.is_relative_to(dest.resolve()):
                        raise BootstrapFailed(f"{archive.name}: member {member!r} escapes")
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")  # refuses links and paths out of dest
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise BootstrapFailed(f"artifact {label}: cannot unpack: {exc}") from None
    entries = list(dest.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def _digest_of(artifact: Artifact, path: Path) -> str:
    """What ``artifact.sha256`` pins, computed for the local file ``path``."""
    if artifact.digest == "file":
        return _sha256_of(path)
    tmp = temp_beside(path.with_name("tree"))
    tmp.mkdir()
    try:
        return tree_digest(_unpack(path, tmp, artifact.filename))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_artifact(artifact: Artifact, store: Path) -> Path:
    """The verified local copy of ``artifact``, downloading it when absent.

    Raises:
        BootstrapFailed: the download failed, or its digest (of the file, or of
            its unpacked tree) differs from the pin.
    """
    final = store / artifact.sha256 / artifact.filename
    if final.is_file() and _digest_of(artifact, final) == artifact.sha256:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    source = artifact.fetch_from or artifact.url
    with atomic_path(final) as tmp:  # the temp keeps the file's suffix (its format)
        try:
            with (
                urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response,
                open(tmp, "wb") as out,
            ):
                shutil.copyfileobj(response, out, _CHUNK)
        except OSError as exc:  # URLError and HTTPError are OSErrors
            raise BootstrapFailed(
                f"artifact {artifact.filename}: download from {source} failed: {exc}\n\n"
                "hint: the build needs that URL reachable once; or point "
                "MEDIA_WORKER_ARTIFACT_OVERRIDES at a mirror"
            ) from None
        got = _digest_of(artifact, tmp)
        if got != artifact.sha256:
            what = "sha256" if artifact.digest == "file" else "sha256 of the unpacked tree"
            raise BootstrapFailed(
                f"artifact {artifact.filename}: {what} mismatch: {source} served {got}, "
                f"the profile pins {artifact.sha256}; refusing to install it"
            )
    logger.info("artifact %s fetched sha256=%s", artifact.filename, artifact.sha256[:12])
    return final


def install_source(artifact: Artifact, archive: Path, env: Path) -> Path:
    """Unpack a ``source`` artifact into ``<env>/src/<name>`` and put it on ``sys.path``.

    A single top-level directory in the archive (as in a repository snapshot)
    is stripped. The ``.pth`` line is relative to site-packages, so the
    environment stays relocatable.

    Raises:
        BootstrapFailed: the archive is not a readable tar or zip, or a member
            would land outside the destination.
    """
    dest = env / "src" / artifact.name
    tmp = temp_beside(dest)
    tmp.mkdir(parents=True)
    try:
        root = _unpack(archive, tmp, artifact.filename)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (site_packages,) = (env / "lib").glob("python*/site-packages")
    pth = site_packages / f"media_worker_src_{artifact.name}.pth"
    pth.write_text(os.path.relpath(dest, site_packages) + "\n")
    return dest
