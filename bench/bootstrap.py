"""Bootstrap benchmarks: warm ensure, restore vs tar vs file copy, uv vs pip; the torch cold path.

    python bench/bootstrap.py [--reps 3]
    python bench/bootstrap.py --torch [--reps 3] [--root DIR]

Default: builds the Piper profile once into a temp volume (network for the first
run of uv's cache), then times each step; the minimum of ``--reps`` runs is
reported. Last line: ``restore_ratio=<ours/tar>``.

``--torch``: the cold path of the kokoro profile built from PyPI's torch (a CUDA
build that runs on a CPU), on a volume under ``--root`` (kept, so a second run
skips the build; several GB): the archive's size, pack and restore vs ``tar -I
zstd`` of the same tree, ``import torch``, and the first job of a fresh worker
process with a hot volume (archive and weights on it, nothing unpacked), stage by
stage. The spaCy pipeline artifact is the tests' stand-in and the weights are
full-size random ones served from the tests' local hub (nothing leaves loopback
but PyPI).
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
from bootstrap import _build, _ensure, _pack, _restore
from bootstrap._layout import Layout
from bootstrap._manifest import MANIFEST_IN_ENV, read_manifest
from bootstrap._spec import current_target
from models.profiles import PIPER

ROOT = Path(__file__).resolve().parents[1]


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
    parser.add_argument("--torch", action="store_true", help="the torch profile cold path")
    parser.add_argument("--root", type=Path, default=None, help="--torch: keep the volume here")
    args = parser.parse_args()
    if args.torch:
        torch_cold_path(args.reps, args.root)
        return
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
        layout = Layout.of("piper", env.spec_hash, paths)
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


# --- the torch cold path ----------------------------------------------------------------

TORCH_ENV = {
    # PyPI's torch (its default build is a CUDA one that also runs on a CPU); the
    # profile's CUDA index is not reachable from every machine.
    "MEDIA_WORKER_EXTRA_INDEX_URLS": "https://pypi.org/simple",
}


def _row(what: str, ours: float | str, ref: float | str = "", ratio: str = "") -> None:
    a = f"{ours:.2f}s" if isinstance(ours, float) else ours
    b = f"{ref:.2f}s" if isinstance(ref, float) else ref
    print(f"{what:58} {a:>10} {b:>10} {ratio:>8}", flush=True)


def _kokoro_volume(root: Path) -> tuple[config.Paths, dict[str, str], Path, str]:
    """Build kokoro (once) on ``root``'s volume, with its weights cached there.

    Returns the paths, the environment a worker needs to agree on the spec hash,
    the built interpreter and its spec hash.
    """
    import dataclasses
    import json
    from http.server import ThreadingHTTPServer
    from threading import Thread

    from models.profiles import KOKORO
    from tests.fixtures.files import serve_directory
    from tests.fixtures.hub import Hub, _handler
    from tests.runners.test_kokoro import _spacy_stand_in

    paths = config.Paths(root / "vol", root / "envs", root / "out", True)
    env = dict(TORCH_ENV)
    wheel = next(root.glob("spacy/en_core_web_sm-*.whl"), None)
    if wheel is None:
        (root / "spacy").mkdir(parents=True, exist_ok=True)
        wheel = _spacy_stand_in(root / "spacy")
    served = root / "served"
    served.mkdir(exist_ok=True)
    hub = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    Thread(target=server.serve_forever, daemon=True).start()
    with serve_directory(served) as srv:
        url, sha = srv.publish(wheel)
        # The override's URL names the loopback port, which is not part of the spec
        # hash (only the file's sha256 is), so later runs agree on the archive.
        env["MEDIA_WORKER_ARTIFACT_OVERRIDES"] = f"{wheel.name}={url}#sha256={sha}"
        os.environ.update(env)
        t = time.perf_counter()
        built = _ensure.ensure(dataclasses.replace(KOKORO, weights=()), paths=paths)
        print(f"# kokoro environment {built.source} in {time.perf_counter() - t:.0f} s")
    weights = root / "weights"
    if not (weights / "config.json").exists():
        subprocess.run(
            [str(built.python), "-m", "tests.fixtures.kokoro", str(weights), "--size", "full"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    files = {p.relative_to(weights).as_posix(): p.read_bytes() for p in weights.rglob("*.*")}
    (pin,) = KOKORO.weights
    hub.add_repo(pin.repo_id, files, commit=pin.revision)
    os.environ["HF_ENDPOINT"] = hub.endpoint
    ready = _ensure.ensure(KOKORO, paths=paths)  # the weights onto the volume: it is hot now
    server.shutdown()
    os.environ.pop("HF_ENDPOINT")
    print(f"# weights on the volume: {json.dumps(sorted(files))[:80]}…")
    return paths, env, built.python, ready.spec_hash


def _first_job(paths: config.Paths, env: dict[str, str]) -> tuple[float, dict, list[str]]:
    """A fresh worker process on the hot volume: nothing unpacked, one kokoro job."""
    import json

    shutil.rmtree(paths.envs, ignore_errors=True)
    code = (
        "import json, time, handler\n"
        "t = time.perf_counter()\n"
        "r = handler.handler({'id': 'cold1', 'input': {'task': 'tts', 'model': 'kokoro', "
        "'text': 'The worker restores its environment, loads the model and speaks.'}})\n"
        "handler.current().host.shutdown()\n"
        "print(json.dumps({'handler_s': time.perf_counter() - t, 'result': r}))\n"
    )
    child = {
        **os.environ,
        **env,
        "MEDIA_WORKER_HOME": str(paths.home),
        "MEDIA_WORKER_ENVS_DIR": str(paths.envs),
        "MEDIA_WORKER_OUTPUT_DIR": str(paths.outputs),
        "MEDIA_WORKER_LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",  # a hot volume: nothing may be fetched
    }
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=child, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"first job failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in out["result"]:
        raise SystemExit(f"first job failed: {out['result']}\n{done.stderr[-3000:]}")
    logs = [line for line in done.stderr.splitlines() if " restored " in line or " ready " in line]
    return wall, out, logs


def _interleaved_min(a, b, reps: int, setup) -> tuple[float, float]:
    """min seconds of ``a`` and of ``b``, run alternately (a shared machine's load
    then weighs on both alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for fn, out in ((a, times[0]), (b, times[1])):
            setup()
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return min(times[0]), min(times[1])


def _tar(*args: str) -> None:
    # uv installs by hard link from its cache, so another install's new link changes a
    # file's ctime: tar's "file changed as we read it" (exit 1) is no change of content.
    done = subprocess.run(["tar", "-I", "zstd -3 -T0", "--warning=no-file-changed", *args])
    if done.returncode not in (0, 1):
        raise SystemExit(f"tar {' '.join(args)} failed: exit {done.returncode}")


def torch_cold_path(reps: int, root: Path | None) -> None:
    import dataclasses

    from bootstrap import _layers
    from models.profiles import upscale_profile, whisper_profile
    from runners import whisper
    from runtime import machine

    root = root or Path(tempfile.gettempdir()) / "bench-torch-cold"
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))
    print(f"# load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    paths, env, python, digest = _kokoro_volume(root)
    layout = Layout.of("kokoro", digest, paths)
    manifest = read_manifest(layout.manifest) or {}
    archive = layout.archive_of(manifest)
    assert archive is not None, "prepare left no valid manifest"
    (ref,) = manifest["layers"]
    layer_archive = paths.home / "envs" / ref["archive"]
    layer_dir = _layers.local_dir(paths.envs, ref)
    scratch = root / "scratch"

    def clear() -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()

    # Without the layer: one archive of the whole environment, as before layers.
    # The merged tree is hard links (no copy): the profile's files plus the layer's
    # in its site-packages, minus the .pth.
    whole = root / "whole"
    shutil.rmtree(whole, ignore_errors=True)
    subprocess.run(["cp", "-al", str(layout.local), str(whole)], check=True)
    site = _layers.site_packages(whole, current_target())
    (site / _layers.PTH_FILE).unlink()
    subprocess.run(f"cp -al {layer_dir}/. {site}/", shell=True, check=True)
    for name in (MANIFEST_IN_ENV, _layers.CONTENTS_FILE):
        (site / name).unlink(missing_ok=True)
    whole_archive = root / "whole.tar.zst"
    whole_packed = _pack.pack(whole, whole_archive)
    total_mb = (manifest["archive_bytes"] + ref["archive_bytes"]) / 2**20
    print(
        f"# kokoro: one archive {whole_packed.archive_bytes / 2**20:.0f} MB "
        f"({whole_packed.unpacked_bytes / 2**20:.0f} MB unpacked, {whole_packed.files} files); "
        f"split: its own {manifest['archive_bytes'] / 2**20:.0f} MB + the torch layer "
        f"{ref['archive_bytes'] / 2**20:.0f} MB"
    )
    print(f"{'what':58} {'ours':>10} {'tar+zstd':>10} {'ratio':>8}")
    pack_s, tar_pack_s = _interleaved_min(
        lambda: _pack.pack(whole, scratch / "a.tar.zst"),
        lambda: _tar("-cf", str(scratch / "a.tar.zst"), "-C", str(whole), "."),
        reps,
        clear,
    )
    _row("pack, one archive", pack_s, tar_pack_s, f"{pack_s / tar_pack_s:.2f}x")

    def ours_whole() -> None:
        _pack.restore(
            whole_archive,
            scratch / "env",
            sha256=whole_packed.archive_sha256,
            size=whole_packed.archive_bytes,
            python=Path(sys.executable),
        )

    def tar_whole() -> None:
        (scratch / "env").mkdir()
        _tar("-xf", str(whole_archive), "-C", str(scratch / "env"))

    ours, tar_s = _interleaved_min(ours_whole, tar_whole, reps, clear)
    _row("restore, one archive (verified)", ours, tar_s, f"{ours / tar_s:.2f}x")
    whole_archive.unlink()
    shutil.rmtree(whole)

    def ours_split() -> None:  # the worker's own restore: layer first, then kokoro
        fresh = dataclasses.replace(paths, envs=scratch / "envs")
        layout = Layout.of("kokoro", digest, fresh)
        _restore.restore(_kokoro_profile(), layout, manifest, lambda _message: None)

    def tar_split() -> None:
        for name, arch in (("layer", layer_archive), ("env", archive)):
            (scratch / name).mkdir()
            _tar("-xf", str(arch), "-C", str(scratch / name))

    split_s, tar_split_s = _interleaved_min(ours_split, tar_split, reps, clear)
    _row(
        "restore, torch layer + kokoro (verified)",
        split_s,
        tar_split_s,
        f"{split_s / tar_split_s:.2f}x",
    )
    clear()
    bare = _min_time(lambda: subprocess.run([str(python), "-c", "pass"], check=True), reps)
    imp = _min_time(lambda: subprocess.run([str(python), "-c", "import torch"], check=True), reps)
    _row("import torch from the layer (minus python -c pass)", imp - bare)
    wall, out, logs = _first_job(paths, env)
    t = out["result"]["timings"]
    _row("first job, fresh worker, hot volume: wall", wall)
    for stage in ("bootstrap_s", "load_s", "infer_s", "publish_s", "total_s"):
        _row(f"  {stage}", float(t[stage]))
    rest = wall - t["bootstrap_s"] - t["load_s"] - t["infer_s"] - t["publish_s"]
    _row("  the rest: interpreter, import handler, runner start", rest)
    for line in logs:
        print(f"# {line.split(' ', 3)[-1]}")

    # One torch per volume: upscale and whisper beside kokoro.
    others = [dataclasses.replace(upscale_profile(), weights=())]
    tiny = whisper_profile(next(iter(whisper.MODELS)), machine.probe())
    others.append(dataclasses.replace(tiny, weights=()))
    # What the three current manifests name (an older run's archives may sit beside them).
    current = [manifest]
    for profile in others:
        built = _ensure.ensure(profile, paths=paths, in_place=False)
        layout = Layout.of(profile.name, built.spec_hash, paths)
        current.append(read_manifest(layout.manifest) or {})
    layers = {r["archive"]: r["archive_bytes"] for m in current for r in m.get("layers", ())}
    volume = sum(m["archive_bytes"] for m in current) + sum(layers.values())
    without = sum(
        m["archive_bytes"] + sum(r["archive_bytes"] for r in m["layers"]) for m in current
    )
    _row(
        "volume, kokoro+upscale+whisper_tiny vs one kokoro archive",
        f"{volume / 2**20:.0f}MB",
        f"{whole_packed.archive_bytes / 2**20:.0f}MB",
        f"{volume / whole_packed.archive_bytes:.2f}x",
    )
    _row(
        "  the same three without the shared layer",
        f"{without / 2**20:.0f}MB",
        f"{whole_packed.archive_bytes / 2**20:.0f}MB",
        f"{without / whole_packed.archive_bytes:.2f}x",
    )
    clear()
    fresh = dataclasses.replace(paths, envs=scratch / "envs")
    t0 = time.perf_counter()
    _ensure.ensure(_kokoro_profile(), paths=fresh, in_place=False)
    kokoro_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _ensure.ensure(others[0], paths=fresh, in_place=False)
    upscale_s = time.perf_counter() - t0
    _row(
        "fresh machine: ensure upscale after kokoro vs kokoro",
        upscale_s,
        kokoro_s,
        f"{upscale_s / kokoro_s:.2f}x",
    )
    shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"torch_restore_ratio={ours / tar_s:.2f} split_restore_ratio={split_s / tar_split_s:.2f} "
        f"first_job_overhead_s={rest:.2f} volume_ratio={volume / whole_packed.archive_bytes:.2f} "
        f"second_profile_ratio={upscale_s / kokoro_s:.2f} (split total {total_mb:.0f} MB)"
    )


def _kokoro_profile():
    import dataclasses

    from models.profiles import KOKORO

    return dataclasses.replace(KOKORO, weights=())


if __name__ == "__main__":
    main()
