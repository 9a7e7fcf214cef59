"""Bootstrap benchmarks: warm ensure, restore vs tar vs file copy, uv vs pip.

    python bench/bootstrap.py [--reps 3]

Builds the Piper profile once into a temp volume (network for the first run of
uv's cache), then times each step; the minimum of ``--reps`` runs is reported.
Last line: ``restore_ratio=<ours/tar>``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import config
from bootstrap import _build, _ensure, _pack
from bootstrap._manifest import read_manifest
from models.profiles import PIPER


def _min_time(fn, reps: int, setup=None) -> float:
    times = []
    for _ in range(reps):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-bootstrap-"))
    os.environ.setdefault("UV_CACHE_DIR", str(root / "uv-cache"))
    try:
        paths = config.Paths(root / "vol", root / "envs", root / "out", True)
        env = _ensure.ensure(PIPER, paths=paths, in_place=False)  # warms uv's cache
        warm = []
        for _ in range(50):
            t = time.perf_counter()
            _ensure.ensure(PIPER, paths=paths, in_place=False)
            warm.append(time.perf_counter() - t)
        layout = _ensure.Layout.of("piper", env.spec_hash, paths)
        archive = layout.archive_of(read_manifest(layout.manifest) or {})
        assert archive is not None, "prepare left no valid manifest"
        sha = hashlib.sha256(archive.read_bytes()).hexdigest()
        out = root / "restore"

        def clear():
            shutil.rmtree(out, ignore_errors=True)

        ours = _min_time(
            lambda: _pack.restore(
                archive, out, sha256=sha, size=archive.stat().st_size, python=Path(sys.executable)
            ),
            args.reps,
            clear,
        )

        def tar():
            out.mkdir()
            subprocess.run(
                ["tar", "-I", "zstd -T0", "-xf", str(archive), "-C", str(out)], check=True
            )

        tar_s = _min_time(tar, args.reps, clear)
        copy_s = _min_time(lambda: shutil.copytree(env.root, out, symlinks=True), args.reps, clear)

        uv = _build.uv_binary()
        reqs = list(PIPER.requirements)
        venv = root / "venv"

        # Both builds do the same work: a venv with pip in it (uv --seed, as
        # `python -m venv` runs ensurepip) and byte-compiled packages (uv
        # --compile-bytecode, as pip compiles by default). Both caches are warmed by
        # one unmeasured build, then each gets --reps samples.
        def uv_build():
            subprocess.run(
                [
                    *(uv, "venv", "-q", "--seed", "--relocatable"),
                    *("--python", sys.executable, str(venv)),
                ],
                check=True,
            )
            subprocess.run(
                [
                    uv,
                    "pip",
                    "install",
                    "-q",
                    "--compile-bytecode",
                    "--python",
                    str(venv / "bin" / "python"),
                    *reqs,
                ],
                check=True,
            )

        def pip_build():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--cache-dir",
                    str(root / "pip-cache"),
                    *reqs,
                ],
                check=True,
            )

        def clear_venv():
            shutil.rmtree(venv, ignore_errors=True)

        clear_venv()
        uv_build()  # warm uv's cache for the seed packages too
        uv_s = _min_time(uv_build, args.reps, clear_venv)
        clear_venv()
        pip_build()  # warm pip's cache
        pip_s = _min_time(pip_build, args.reps, clear_venv)
        mb = archive.stat().st_size / 2**20
        rows = [
            (
                "warm ensure() (local env), median",
                f"{statistics.median(warm) * 1000:.2f}ms",
                "",
                "",
            ),
            (
                f"restore {mb:.0f} MB archive vs tar -I 'zstd -T0'",
                f"{ours:.2f}s",
                f"{tar_s:.2f}s",
                f"{ours / tar_s:.2f}x",
            ),
            (
                "restore vs copying the unpacked tree",
                f"{ours:.2f}s",
                f"{copy_s:.2f}s",
                f"{ours / copy_s:.2f}x",
            ),
            (
                "build piper venv+pip+bytecode, warm: uv vs pip",
                f"{uv_s:.2f}s",
                f"{pip_s:.2f}s",
                f"pip/uv {pip_s / uv_s:.1f}x",
            ),
        ]
        print(f"{'what':46} {'ours':>9} {'reference':>10} {'ratio':>12}")
        for what, a, b, r in rows:
            print(f"{what:46} {a:>9} {b:>10} {r:>12}")
        print(f"restore_ratio={ours / tar_s:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
