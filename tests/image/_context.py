"""What the build context sends, and where the final image puts it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from tests.image import _dockerfile
from tests.image._dockerignore import DockerIgnore

ROOT = Path(__file__).resolve().parents[2]


def context_files(source: str, ignore: DockerIgnore, root: Path = ROOT) -> list[str]:
    """Context paths a COPY source sends to the builder, after .dockerignore."""
    path = root / source
    if path.is_file():
        return [] if ignore.is_excluded(source) else [source]
    files = []
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            relative = (Path(dirpath) / name).relative_to(root).as_posix()
            if not ignore.is_excluded(relative):
                files.append(relative)
    return sorted(files)


def image_files(
    stage: _dockerfile.Stage, ignore: DockerIgnore, root: Path = ROOT
) -> dict[str, str]:
    """Image path -> context path, for every context file the stage COPYs in."""
    workdir = PurePosixPath("/")
    result: dict[str, str] = {}
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.args.strip()
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        copy = _dockerfile.parse_copy(instruction)
        if copy.from_stage:
            continue
        dest = workdir / copy.dest
        into_dir = copy.dest.endswith("/") or len(copy.sources) > 1
        for raw in copy.sources:
            source = raw.rstrip("/") or "."
            if (root / source).is_dir():
                for file in context_files(source, ignore, root):
                    result[str(dest / PurePosixPath(file).relative_to(source))] = file
            elif not ignore.is_excluded(source):
                result[str(dest / PurePosixPath(source).name if into_dir else dest)] = source
    return result
