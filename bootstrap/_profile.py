"""Profiles: what one runner needs (pinned requirements, weights, smoke check).

A profile is pure data. Runners declare theirs in ``models/profiles.py``; this
module validates them so a typo fails at import, not on a GPU worker at 3 a.m.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

import config

_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,39}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SOURCE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar.zst", ".zip")
# A hash made only of one repeated character is a placeholder someone forgot.
_PLACEHOLDER = re.compile(r"(.)\1{63}")


@dataclass(frozen=True)
class Artifact:
    """A file a profile needs that no package index serves, pinned by URL and sha256.

    Downloaded at build time only (never at run time), verified against
    ``sha256`` before use, recorded in the manifest and part of the spec hash.

    Args:
        url: where the file is published (``https://``); its last path segment is
            the file name (a wheel's name must follow PEP 427).
        sha256: the file's SHA-256, 64 lowercase hex characters; for ``digest="tree"``
            the SHA-256 of the unpacked tree (``bootstrap._artifacts.tree_digest``).
        kind: ``wheel``: installed with the requirements (so its dependencies
            resolve with theirs). ``source``: an archive unpacked into the
            environment's ``src/<name>/`` and put on ``sys.path`` by a ``.pth``
            file (for code published only as a repository snapshot).
        name: for ``source``: the directory name; for ``wheel``: derived from the
            file name when empty.
        fetch_from: where the build downloads it when not ``url`` (an operator's
            mirror, set through ``MEDIA_WORKER_ARTIFACT_OVERRIDES``; may be
            ``http://`` or ``file://``). The file name stays ``url``'s.
        digest: ``file`` (the archive's bytes) or, for a ``source``, ``tree`` (its
            unpacked files): a repository snapshot's archive bytes depend on who
            packed it (GitHub, a mirror, ``git archive``), its files do not.
    """

    url: str
    sha256: str
    kind: Literal["wheel", "source"] = "wheel"
    name: str = ""
    fetch_from: str = ""
    digest: Literal["file", "tree"] = "file"

    def __post_init__(self) -> None:
        if self.digest not in ("file", "tree") or (self.digest == "tree" and self.kind != "source"):
            raise ValueError(f"artifact {self.filename}: digest 'tree' is for source archives only")
        if not self.url.startswith("https://"):
            raise ValueError(f"artifact {self.url!r}: the url must be https://")
        if self.fetch_from and not self.fetch_from.startswith(("https://", "http://", "file://")):
            raise ValueError(f"artifact {self.filename}: fetch_from must be https, http or file")
        if not _SHA256.fullmatch(self.sha256) or _PLACEHOLDER.fullmatch(self.sha256):
            raise ValueError(
                f"artifact {self.filename}: sha256 {self.sha256!r} is not a real SHA-256 "
                "(64 lowercase hex characters, from the publisher's release page); "
                "a profile never installs an unverified file"
            )
        if self.kind == "wheel":
            try:
                name, _, _, _ = parse_wheel_filename(self.filename)
            except InvalidWheelFilename:
                raise ValueError(
                    f"artifact {self.filename!r} is not a PEP 427 wheel file name"
                ) from None
            if not self.name:
                object.__setattr__(self, "name", str(name))
        elif self.kind == "source":
            if not _NAME.fullmatch(self.name):
                raise ValueError(
                    f"source artifact {self.filename}: name {self.name!r} must be [a-z0-9_]"
                )
            if not self.filename.endswith(_SOURCE_SUFFIXES):
                raise ValueError(
                    f"source artifact {self.filename!r}: use one of {', '.join(_SOURCE_SUFFIXES)}"
                )
        else:
            raise ValueError(f"artifact {self.filename}: kind must be 'wheel' or 'source'")

    @property
    def filename(self) -> str:
        return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])

    @property
    def version(self) -> str | None:
        """A wheel's version from its file name (None for a source archive)."""
        if self.kind != "wheel":
            return None
        return str(parse_wheel_filename(self.filename)[1])


@dataclass(frozen=True)
class Weights:
    """One Hugging Face repository a runner reads, pinned to a commit or by content.

    Args:
        repo_id: ``owner/name`` on the hub.
        revision: the full 40-character commit hash (branches move; commits do not),
            or None when ``sha256`` pins every file instead.
        patterns: ``allow_patterns`` globs; only matching files are downloaded
            (with ``sha256`` and no revision: the pinned file names).
        repo_type: ``model`` (default), ``dataset`` or ``space``.
        sha256: ``(file, sha256)`` pairs, as a publisher lists them (e.g. a model
            registry). Without a revision the commit is whichever the repository's
            ``main`` holds at download time, accepted only when its files have these
            digests; the commit fetched is recorded and reused from then on.
        required: the globs a snapshot is unusable without; a copy found outside the
            volume's cache (RunPod's cached models) is taken when it holds these.
            Other patterns are optional: downloaded and used when the repository has
            them. Default: every pattern is required.
    """

    repo_id: str
    revision: str | None
    patterns: tuple[str, ...] = ("*",)
    repo_type: str = "model"
    sha256: tuple[tuple[str, str], ...] = ()
    required: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", self.repo_id):
            raise ValueError(f"weights repo_id {self.repo_id!r} is not 'owner/name'")
        if self.revision is None and not self.sha256:
            raise ValueError(f"weights {self.repo_id}: pin a revision or the sha256 of every file")
        if self.revision is not None and not _COMMIT.fullmatch(self.revision):
            raise ValueError(
                f"weights {self.repo_id}: revision {self.revision!r} must be a full 40-character "
                "commit hash (a branch or tag can change under a running fleet)"
            )
        if isinstance(self.patterns, str):
            raise ValueError(f"weights {self.repo_id}: patterns must be a tuple of globs")
        for name, digest in self.sha256:
            if not _SHA256.fullmatch(digest) or _PLACEHOLDER.fullmatch(digest):
                raise ValueError(f"weights {self.repo_id}: {name}: {digest!r} is not a SHA-256")
        if self.revision is None:
            object.__setattr__(self, "patterns", tuple(name for name, _ in self.sha256))
        if self.required is None:
            object.__setattr__(self, "required", self.patterns)
        elif isinstance(self.required, str) or not set(self.required) <= set(self.patterns):
            raise ValueError(
                f"weights {self.repo_id}: required must be a tuple of some of its patterns"
            )

    @property
    def pin(self) -> str:
        """What names this pin on disk: the commit, or ``sha256-`` and a digest of the pins."""
        if self.revision is not None:
            return self.revision
        pins = "\n".join(f"{name} {digest}" for name, digest in sorted(self.sha256))
        return "sha256-" + hashlib.sha256(pins.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Profile:
    """What one runner needs, turned into an environment by :func:`bootstrap.ensure`.

    Args:
        name: short identifier (``piper``); names the archive on the volume.
        requirements: every direct dependency pinned with ``==``.
        weights: Hugging Face repositories to cache on the volume.
        artifacts: files pinned by URL and sha256 (see :class:`Artifact`).
        smoke_imports: modules that must import in the built environment.
        index_url: replaces PyPI as the main index (e.g. a mirror), when set.
        extra_index_urls: more indexes (e.g. ``https://download.pytorch.org/whl/cu126``).
        flash_attn: the flash-attn version wanted, or None; the wheel is chosen to
            match the built torch (see ``_flash_attn``), and sdpa is the fallback.
        size_mb: the unpacked environment's rough size, used for disk-space checks
            before the real size is known.
        excludes: distributions left out of the resolution even when a requirement
            depends on them (``uv pip install --excludes``), for a dependency the
            runner never imports (spandrel's torchvision).
        overrides: names of requirements whose pin here wins over what any
            dependency declares (``uv pip install --overrides``), for a library that
            pins torch tighter than it needs (chatterbox-tts pins torch 2.6.0); the
            runner's own tests prove the overridden pin works.
        cuda: the runner uses CUDA when the machine has a GPU: the build fails, in
            words, when the machine's NVIDIA driver is visible but the built torch
            cannot use it (the "CUDA driver mismatch" crash loop, caught at build).
    """

    name: str
    requirements: tuple[str, ...]
    weights: tuple[Weights, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    smoke_imports: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    flash_attn: str | None = None
    size_mb: int = 500
    cuda: bool = False
    excludes: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    pins: dict[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"profile name {self.name!r}: use [a-z0-9_], at most 40 characters")
        if isinstance(self.requirements, str) or not self.requirements:
            raise ValueError(f"profile {self.name}: requirements must be a non-empty tuple")
        pins: dict[str, str] = {}
        for req in self.requirements:
            version = pinned_version(req)
            if version is None:
                raise ValueError(
                    f"profile {self.name}: requirement {req!r} is not pinned as 'name==version'"
                )
            pins[normalize_name(Requirement(req).name)] = version
        if isinstance(self.excludes, str):
            raise ValueError(f"profile {self.name}: excludes must be a tuple of names")
        if isinstance(self.overrides, str):
            raise ValueError(f"profile {self.name}: overrides must be a tuple of names")
        for name in self.overrides:
            if normalize_name(name) not in pins:
                raise ValueError(
                    f"profile {self.name}: override {name!r} is not one of its pinned requirements"
                )
        if isinstance(self.artifacts, Artifact):
            raise ValueError(f"profile {self.name}: artifacts must be a tuple")
        for artifact in self.artifacts:
            if artifact.kind == "wheel":
                if artifact.name in pins:
                    raise ValueError(
                        f"profile {self.name}: {artifact.name} is both a requirement "
                        "and an artifact"
                    )
                pins[artifact.name] = artifact.version  # type: ignore[assignment]
        if self.flash_attn is not None and "torch" not in pins:
            raise ValueError(f"profile {self.name}: flash_attn needs a pinned torch requirement")
        if self.cuda and "torch" not in pins:
            raise ValueError(f"profile {self.name}: cuda=True needs a pinned torch requirement")
        object.__setattr__(self, "pins", pins)


def normalize_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Joe_US.Piper`` -> ``joe-us-piper``)."""
    return str(canonicalize_name(name))


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a requirement (``Torch==2.13.0`` -> ``torch``)."""
    return normalize_name(Requirement(requirement).name)


def pinned_version(requirement: str) -> str | None:
    """The version ``requirement`` pins exactly (``name[extras]==version``), else None.

    A range, a wildcard (``==1.*``), a URL or an environment marker is not a pin:
    a profile must say exactly what it installs everywhere.
    """
    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return None
    specs = list(req.specifier)
    if req.url or req.marker or len(specs) != 1:
        return None
    spec = specs[0]
    if spec.operator != "==" or spec.version.endswith(".*"):
        return None
    return spec.version


def canonical_pin(requirement: str) -> str:
    """A pin spelled one way: ``Piper_TTS[x,a] == 1.8.0`` -> ``piper-tts[a,x]==1.8.0``."""
    req = Requirement(requirement)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{normalize_name(req.name)}{extras}=={pinned_version(requirement)}"


def with_index_overrides(profile: Profile, env: Mapping[str, str] | None = None) -> Profile:
    """``profile`` with ``MEDIA_WORKER_INDEX_URL`` / ``MEDIA_WORKER_EXTRA_INDEX_URLS`` /
    ``MEDIA_WORKER_ARTIFACT_OVERRIDES`` applied; later wins: the profile's own
    indexes and artifacts, then the environment. The result has its own spec hash,
    so an archive built from a mirror is never mistaken for one built from the
    profile's indexes, nor one built from a rebuilt artifact for the original."""
    changes: dict[str, object] = {}
    if index_url := config.INDEX_URL.get(env):
        changes["index_url"] = index_url
    if extra := config.EXTRA_INDEX_URLS.get(env):
        changes["extra_index_urls"] = extra
    if entries := config.ARTIFACT_OVERRIDES.get(env):
        overrides = {name: (url, digest) for name, url, digest in entries}
        changes["artifacts"] = tuple(
            dataclasses.replace(
                a, fetch_from=overrides[a.filename][0], sha256=overrides[a.filename][1]
            )
            if a.filename in overrides
            else a
            for a in profile.artifacts
        )
    return dataclasses.replace(profile, **changes) if changes else profile
