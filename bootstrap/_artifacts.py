"""Profile artifacts: download once, verify the sha256, then install or unpack.

Files (``<home>`` is on the volume)::

    <home>/artifacts/<sha256>/<file name>        verified copy, renamed into place
    <home>/artifacts/<sha256>/.tmp-<file>-...     a download in progress (storage._atomic)

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
from storage._atomic import atomic_path, temp_beside

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 120.0
_CHUNK = 1024 * 1024


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch_artifact(artifact: Artifact, store: Path) -> Path:
    """The verified local copy of ``artifact``, downloading it when absent.

    Raises:
        BootstrapFailed: the download failed, or its sha256 differs from the pin.
    """
    final = store / artifact.sha256 / artifact.filename
    if final.is_file() and _sha256_of(final) == artifact.sha256:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    source = artifact.fetch_from or artifact.url
    digest = hashlib.sha256()
    with atomic_path(final) as tmp:
        try:
            with (
                urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response,
                open(tmp, "wb") as out,
            ):
                while block := response.read(_CHUNK):
                    digest.update(block)
                    out.write(block)
        except OSError as exc:  # URLError and HTTPError are OSErrors
            raise BootstrapFailed(
                f"artifact {artifact.filename}: download from {source} failed: {exc}\n\n"
                "hint: the build needs that URL reachable once; or point "
                "MEDIA_WORKER_ARTIFACT_OVERRIDES at a mirror"
            ) from None
        if digest.hexdigest() != artifact.sha256:
            raise BootstrapFailed(
                f"artifact {artifact.filename}: sha256 mismatch: {source} served "
                f"{digest.hexdigest()}, the profile pins {artifact.sha256}; refusing to "
                "install it"
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
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as z:
                    for member in z.namelist():
                        target = (tmp / member).resolve()
                        if not target.is_relative_to(tmp.resolve()):
                            raise BootstrapFailed(f"{archive.name}: member {member!r} escapes")
                    z.extractall(tmp)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(tmp, filter="data")  # refuses links and paths out of tmp
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
            raise BootstrapFailed(f"artifact {artifact.filename}: cannot unpack: {exc}") from None
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (site_packages,) = (env / "lib").glob("python*/site-packages")
    pth = site_packages / f"media_worker_src_{artifact.name}.pth"
    pth.write_text(os.path.relpath(dest, site_packages) + "\n")
    return dest
