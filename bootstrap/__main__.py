"""``python -m bootstrap``: status, prepare, verify, gc, doctor.

Logs go to stderr, reports to stdout. ``--volume DIR`` points at any state root
(a Pod sees the volume at /workspace, a serverless worker at /runpod-volume;
what ``prepare`` leaves is used as-is by either).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import config
from bootstrap import _doctor, _gc, _pack, _weights
from bootstrap._ensure import Layout, ensure, local_manifest
from bootstrap._lease import lease_state, volume_now
from bootstrap._manifest import env_is_ready, read_manifest
from bootstrap._profile import Profile
from bootstrap._spec import current_target, spec_hash
from errors import BootstrapFailed

logger = logging.getLogger("bootstrap")


def _profiles() -> dict[str, Profile]:
    from models.profiles import PROFILES  # the CLI is the only place bootstrap meets models

    return PROFILES


def _paths(volume: str | None) -> config.Paths:
    if volume is None:
        return config.resolve_paths()
    home = Path(volume).expanduser().resolve()
    if (home / "media-worker").is_dir() or home.name in ("workspace", "runpod-volume"):
        home = home / "media-worker"
    env = {"MEDIA_WORKER_HOME": str(home)}
    if envs := config.ENVS_DIR.get():
        env["MEDIA_WORKER_ENVS_DIR"] = envs
    return config.resolve_paths(env)


def _status(paths: config.Paths, cached_models: Path) -> dict[str, Any]:
    target = current_target()
    out: dict[str, Any] = {"home": str(paths.home), "envs": str(paths.envs), "profiles": {}}
    for name, profile in sorted(_profiles().items()):
        digest = spec_hash(profile, target)
        layout = Layout.of(name, digest, paths)
        volume = read_manifest(layout.manifest)
        local = local_manifest(layout)
        if env_is_ready(local, digest):
            env, manifest = "local", local
        elif env_is_ready(volume, digest):
            env, manifest = "volume", volume
        else:
            env, manifest = "missing", None
        try:
            mtime = layout.lease.stat().st_mtime
            now = volume_now(layout.lease.parent)
            lease = lease_state(exists=True, expires_at=mtime, now=now)
        except OSError:
            lease = "free"
        out["profiles"][name] = {
            "env": env,
            "spec_hash": digest,
            "archive_mb": round(manifest["archive_bytes"] / 2**20, 1) if manifest else None,
            "unpacked_mb": round(manifest["unpacked_bytes"] / 2**20, 1) if manifest else None,
            "attention": manifest["attention"] if manifest else None,
            "attention_reason": manifest["attention_reason"] if manifest else None,
            "lease": lease,
            "cuda": _doctor.profile_cuda(profile),
            "weights": {
                w.repo_id: _weights.weights_state(
                    w, hf_home=paths.home / "hf", cached_models=cached_models
                )
                for w in profile.weights
            },
        }
    return out


def _cmd_status(args: argparse.Namespace, paths: config.Paths) -> int:
    status = _status(paths, args.cached_models)
    if args.json:
        print(json.dumps(status, indent=1, sort_keys=True))
        return 0
    print(f"home {status['home']}  local envs {status['envs']}")
    for name, p in status["profiles"].items():
        size = (
            f" archive={p['archive_mb']}MB unpacked={p['unpacked_mb']}MB"
            if p["env"] != "missing"
            else ""
        )
        print(
            f"{name:12} env={p['env']:8} spec={p['spec_hash']}{size} "
            f"attention={p['attention']} lease={p['lease']}"
        )
        for repo, state in p["weights"].items():
            print(f"{'':12} weights {repo}: {state}")
    return 0


def _verify_archive(layout: Layout, digest: str) -> str | None:
    """None when the published archive is complete and its sha256 matches, else the problem."""
    manifest = read_manifest(layout.manifest)
    archive = layout.archive_of(manifest) if env_is_ready(manifest, digest) else None  # type: ignore[arg-type]
    if archive is None:
        if layout.manifest.exists():
            return f"{layout.manifest}: not a valid manifest for spec {digest}"
        return None
    import tempfile

    with tempfile.TemporaryDirectory(dir=layout.local_envs) as tmp:
        try:
            _pack.restore(
                archive,
                Path(tmp) / "check",
                sha256=manifest["archive_sha256"],  # type: ignore[index]
                size=manifest["archive_bytes"],  # type: ignore[index]
                python=Path(sys.executable),
            )
        except (_pack.CorruptArchive, OSError) as exc:
            return str(exc)
    return None


def _cmd_prepare(args: argparse.Namespace, paths: config.Paths) -> int:
    profiles = _profiles()
    unknown = [n for n in args.profiles if n not in profiles]
    if unknown:
        print(f"unknown profile(s): {', '.join(unknown)}; known: {', '.join(profiles)}")
        return 2
    for name in args.profiles:
        env = ensure(
            profiles[name],
            paths=paths,
            in_place=False,
            force=args.force,
            on_progress=lambda m: logger.info("%s", m),
            cached_models=args.cached_models,
        )
        if env.source == "local":
            layout = Layout.of(name, env.spec_hash, paths)
            paths.envs.mkdir(parents=True, exist_ok=True)
            if problem := _verify_archive(layout, env.spec_hash):
                print(f"{name}: published archive is bad ({problem}); run prepare --force")
                return 1
        print(f"{name}: ready ({env.source}) spec={env.spec_hash} attention={env.attention}")
    return 0


def _cmd_verify(args: argparse.Namespace, paths: config.Paths) -> int:
    target = current_target()
    problems = []
    paths.envs.mkdir(parents=True, exist_ok=True)
    for name, profile in sorted(_profiles().items()):
        digest = spec_hash(profile, target)
        layout = Layout.of(name, digest, paths)
        if problem := _verify_archive(layout, digest):
            problems.append(f"{name}: {problem}")
        for w in profile.weights:
            record = read_manifest(_weights.record_path(paths.home / "hf", w))
            if not record or not isinstance(record.get("files"), dict):
                if (
                    _weights.weights_state(
                        w, hf_home=paths.home / "hf", cached_models=args.cached_models
                    )
                    != "present"
                ):
                    problems.append(f"{name}: weights {w.repo_id} not downloaded")
                continue
            snap = _weights.snapshot_dir(paths.home / "hf" / "hub", w)
            for p in _weights.check_files(snap, record["files"], full=True):
                problems.append(f"{name}: weights {w.repo_id}: {p}")
    for p in problems:
        print(p)
    print("verify: ok" if not problems else f"verify: {len(problems)} problem(s)")
    return 1 if problems else 0


def _cmd_gc(args: argparse.Namespace, paths: config.Paths) -> int:
    target = current_target()
    known = {f"{n}-{spec_hash(p, target)}" for n, p in _profiles().items()}
    envs_dir, leases_dir = paths.home / "envs", paths.home / "leases"
    if not paths.home.is_dir():
        print("gc: removed 0")
        return 0
    now = volume_now(paths.home)  # every mtime below is stamped by the volume's clock
    expiry: dict[str, float] = {}
    leases: list[_gc.Entry] = []
    if leases_dir.is_dir():
        for f in leases_dir.iterdir():
            st = f.lstat()
            leases.append(_gc.Entry(f.name, st.st_mtime))
            if "|" not in f.name and not f.name.startswith(".clock-"):
                live = lease_state(exists=True, expires_at=st.st_mtime, now=now) == "live"
                expiry[f.name] = now + 1e9 if live else st.st_mtime
    live_keys = {n.removesuffix(".lock") for n, t in expiry.items() if t > now}
    envs: list[_gc.Entry] = []
    referenced: dict[str, str] = {}
    if envs_dir.is_dir():
        for f in envs_dir.iterdir():
            envs.append(_gc.Entry(f.name, f.lstat().st_mtime, any(k in f.name for k in live_keys)))
            parsed = Layout.parse_volume_name(f.name)
            if parsed and parsed[1] is None and (manifest := read_manifest(f)):
                referenced[parsed[0]] = str(manifest.get("archive", ""))
    plan = _gc.plan_gc(
        envs,
        leases,
        known=known,
        keep=args.keep,
        now=now,
        lease_expiry=expiry,
        referenced=referenced,
    )
    for rel in plan:
        path = paths.home / rel
        print(f"removing {path}")
        if path.is_dir():
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    print(f"gc: removed {len(plan)}")
    return 0


def _cmd_doctor(args: argparse.Namespace, paths: config.Paths) -> int:
    status = _status(paths, args.cached_models)
    facts = _doctor.gather(paths.home, paths.envs, paths.on_volume, status["profiles"])
    findings = _doctor.diagnose(facts)
    print(_doctor.render(findings))
    return 1 if any(f.level == "fail" for f in findings) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bootstrap", description=__doc__.split("\n")[0])
    parser.add_argument("--volume", help="state root (default: the mounted volume or ~/.cache)")
    parser.add_argument(
        "--cached-models",
        type=Path,
        default=None,
        help="RunPod's cached-models HF cache (default: $MEDIA_WORKER_CACHED_MODELS_DIR)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("status", help="environments and weights per profile")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("prepare", help="build, pack and publish now (and download weights)")
    p.add_argument("profiles", nargs="+")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid archive exists")
    sub.add_parser("verify", help="re-check archives and weights")
    p = sub.add_parser("gc", help="remove temps, expired leases, archives no profile has")
    p.add_argument("--keep", type=int, default=1, help="old archives kept per profile")
    sub.add_parser("doctor", help="one readable report of what is wrong and how to fix it")
    args = parser.parse_args(argv)
    args.cached_models = args.cached_models or Path(config.CACHED_MODELS_DIR.get())
    logging.basicConfig(
        level=config.LOG_LEVEL.get(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    paths = _paths(args.volume)
    handlers = {
        "status": _cmd_status,
        "prepare": _cmd_prepare,
        "verify": _cmd_verify,
        "gc": _cmd_gc,
        "doctor": _cmd_doctor,
    }
    try:
        return handlers[args.command](args, paths)
    except BootstrapFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
