"""``python -m models``: status, prepare, verify, gc, doctor, schema, settings.

Logs go to stderr, reports to stdout. ``--volume DIR`` points at any state root
(a Pod sees the volume at /workspace, a serverless worker at /runpod-volume;
what ``prepare`` leaves is used as-is by either).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import config
from bootstrap import _doctor, _gc, _layers, _pack, _weights
from bootstrap._ensure import ensure, for_this_machine
from bootstrap._in_place import in_place_attention, is_served_in_place
from bootstrap._layout import Layout, local_manifest
from bootstrap._lease import lease_state, volume_now
from bootstrap._manifest import env_is_ready, read_manifest
from bootstrap._profile import Profile, Weights
from bootstrap._spec import current_target, spec_hash
from errors import BootstrapFailed

logger = logging.getLogger(__name__)


def _profiles() -> tuple[dict[str, Profile], dict[str, str]]:
    """Every profile (the handler's lookup), and those these settings cannot make,
    with why (a profile made from settings when one is invalid)."""
    # the CLI is the only place bootstrap meets models
    from errors import WorkerError
    from models.registry import get_profile, profile_names

    made: dict[str, Profile] = {}
    unmade: dict[str, str] = {}
    for name in profile_names():
        try:
            made[name] = get_profile(name)
        except WorkerError as exc:
            unmade[name] = exc.message
        except config.ConfigError as exc:
            unmade[name] = str(exc)
    return made, unmade


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


def _cli(args: argparse.Namespace) -> str:
    """The command line to suggest as a fix, with the volume the user named."""
    return "python -m models" + (f" --volume {args.volume}" if args.volume else "")


def _archive_problem(layout: Layout, manifest: dict[str, Any]) -> str | None:
    """What is wrong with the archive a valid manifest names, by size (cheap), or None."""
    archive = layout.archive_of(manifest)
    if archive is None:
        return f"{layout.manifest} names no archive"
    try:
        size = archive.stat().st_size
    except OSError:
        return f"archive {archive} is missing"
    if size != manifest["archive_bytes"]:
        return f"archive {archive} is truncated ({size} of {manifest['archive_bytes']} bytes)"
    return None


def _status(
    paths: config.Paths, cached_models: Path, cli: str = "python -m models"
) -> dict[str, Any]:
    target = current_target()
    out: dict[str, Any] = {"home": str(paths.home), "envs": str(paths.envs), "profiles": {}}
    made, unmade = _profiles()
    out["unavailable"] = unmade
    for name, profile in sorted(made.items()):
        profile, cuda = for_this_machine(profile)
        digest = spec_hash(profile, target)
        layout = Layout.of(name, digest, paths)
        volume = read_manifest(layout.manifest)
        local = local_manifest(layout)
        problems: list[dict[str, str]] = []
        rebuild = f"{cli} prepare {name} --force"
        # The archive (or its unpacked copy) is shown whenever one exists, also when a
        # job here is served in place: `prepare` publishes one for other workers anyway.
        if env_is_ready(local, digest):
            env, manifest = "local", local
        elif env_is_ready(volume, digest):
            env, manifest = "volume", volume
        else:
            env, manifest = "missing", None
        attention = manifest["attention"] if manifest else None
        if is_served_in_place(profile):  # what a job gets first (ensure's in-place path)
            env, attention = "in-place", in_place_attention(profile)["attention"]
        published = layout.archive_of(volume) if env_is_ready(volume, digest) else None  # type: ignore[arg-type]
        if env_is_ready(volume, digest):
            if problem := _archive_problem(layout, volume):  # type: ignore[arg-type]
                problems.append({"problem": problem, "fix": rebuild})
                env = env if env in ("in-place", "local") else "damaged"
        elif layout.manifest.exists():
            problems.append(
                {
                    "problem": f"{layout.manifest} is not a valid manifest for spec {digest}",
                    "fix": rebuild,
                }
            )
        try:
            mtime = layout.lease.stat().st_mtime
            now = volume_now(layout.lease.parent)
            lease = lease_state(exists=True, expires_at=mtime, now=now)
        except OSError:
            lease = "free"
        out["profiles"][name] = {
            "env": env,
            "python": sys.executable if env == "in-place" else None,
            "spec_hash": digest,
            "archive_mb": round(manifest["archive_bytes"] / 2**20, 1) if manifest else None,
            "layers": [r["archive"] for r in manifest.get("layers", ())] if manifest else [],
            "unpacked_mb": round(manifest["unpacked_bytes"] / 2**20, 1) if manifest else None,
            "archive": str(published) if published else None,
            "attention": attention,
            "attention_reason": manifest["attention_reason"] if manifest else None,
            "lease": lease,
            "problems": problems,
            "cuda": {"build": cuda.build, "reason": cuda.reason} if cuda else None,
            "weights": {
                w.repo_id: _weights.weights_state(
                    w, hf_home=paths.home / "hf", cached_models=cached_models
                )
                for w in profile.weights
            },
        }
    return out


def _status_lines(status: dict[str, Any], cli: str) -> list[str]:
    """``status`` as text: one line per profile, its details indented below. Pure.

    The name column is as wide as the longest name. Profiles whose packages are the
    same (one spec hash: every Whisper model) say so, naming the first of them.
    """
    profiles, unavailable = status["profiles"], status["unavailable"]
    width = max((len(n) for n in (*profiles, *unavailable)), default=0)
    pad = " " * width
    first_of_spec: dict[str, str] = {}
    lines = [f"home {status['home']}  local envs {status['envs']}"]
    for name, p in profiles.items():
        parts = [f"{name:{width}} env={p['env']:8} spec={p['spec_hash']}"]
        if p["env"] == "in-place":
            parts.append(f"served in place by this interpreter ({p['python']})")
        if p["archive_mb"] is not None:
            parts.append(f"archive={p['archive_mb']}MB unpacked={p['unpacked_mb']}MB")
        if p["attention"] is not None:  # unknown until an environment exists
            parts.append(f"attention={p['attention']}")
        parts.append(f"lease={p['lease']}")
        lines.append(" ".join(parts))
        first = first_of_spec.setdefault(p["spec_hash"], name)
        if first != name:
            lines.append(f"{pad} same packages as {first} (each profile has its own archive)")
        if p.get("archive"):
            lines.append(f"{pad} archive {p['archive']}")
        for layer in p["layers"]:
            lines.append(f"{pad} shared layer {layer}")
        for repo, state in p["weights"].items():
            fix = f"  fix: {cli} prepare {name}" if state != "present" else ""
            lines.append(f"{pad} weights {repo}: {state}{fix}")
        for problem in p["problems"]:
            lines.append(f"{pad} problem: {problem['problem']}  fix: {problem['fix']}")
    for name, why in unavailable.items():
        lines.append(f"{name:{width}} unavailable: {why}")
    home = Path(status["home"])
    lines.extend(f"leftover {home / rel}  fix: {cli} gc" for rel in status["leftovers"])
    return lines


def _cmd_status(args: argparse.Namespace, paths: config.Paths) -> int:
    status = _status(paths, args.cached_models, _cli(args))
    status["leftovers"] = _gc_plan(paths, keep=1)
    if args.json:
        print(json.dumps(status, indent=1, sort_keys=True))
        return 0
    print("\n".join(_status_lines(status, _cli(args))))
    return 0


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _verify_archive(
    layout: Layout, digest: str, seen: set[Path] | None = None
) -> tuple[list[str], str | None]:
    """What was re-hashed (one line per archive and layer) and the problem, or None when
    the published archive and the layers it names are complete and their sha256 match.
    Nothing to check (no manifest) is ([], None). A path in ``seen`` (a layer another
    profile already named) is not read again; each path read is added to it."""
    manifest = read_manifest(layout.manifest)
    archive = layout.archive_of(manifest) if env_is_ready(manifest, digest) else None  # type: ignore[arg-type]
    if archive is None:
        if layout.manifest.exists():
            return [], f"{layout.manifest}: not a valid manifest for spec {digest}"
        return [], None
    import tempfile

    seen = set() if seen is None else seen
    archives = [("archive", archive, manifest)] + [  # type: ignore[list-item]
        ("layer", layout.volume_envs / ref["archive"], ref)
        for ref in manifest.get("layers", ())  # type: ignore[union-attr]
    ]
    checked = []
    with tempfile.TemporaryDirectory(dir=layout.local_envs) as tmp:
        for i, (what, path, record) in enumerate(archives):
            if path in seen:
                continue
            try:
                _pack.restore(
                    path,
                    Path(tmp) / f"check{i}",
                    sha256=record["archive_sha256"],
                    size=record["archive_bytes"],
                    python=Path(sys.executable),
                )
            except (_pack.CorruptArchive, OSError) as exc:
                return checked, str(exc)
            finally:
                shutil.rmtree(Path(tmp) / f"check{i}", ignore_errors=True)
            seen.add(path)
            checked.append(f"{what} {path} ({_mb(record['archive_bytes'])})")
    return checked, None


def _prepare_usage(usage: str, profiles: list[str], unmade: dict[str, str]) -> str:
    """What ``prepare`` without a profile prints: the usage and every name it takes. Pure."""
    lines = [usage.rstrip(), "prepare: name at least one profile:", f"  {' '.join(profiles)}"]
    lines += [
        f"  ({name}: cannot be prepared with these settings: {unmade[name]})" for name in unmade
    ]
    return "\n".join(lines)


def _cmd_prepare(args: argparse.Namespace, paths: config.Paths) -> int:
    profiles, unmade = _profiles()
    if not args.profiles:
        print(_prepare_usage(args.usage, sorted(profiles), unmade), file=sys.stderr)
        return 2
    unknown = [n for n in args.profiles if n not in profiles and n not in unmade]
    if unknown:
        known = ", ".join(sorted([*profiles, *unmade]))
        print(f"unknown profile(s): {', '.join(unknown)}; known: {known}")
        return 2
    if blocked := [n for n in args.profiles if n in unmade]:
        for name in blocked:
            print(f"{name}: cannot be prepared with these settings: {unmade[name]}")
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
            if problem := _verify_archive(layout, env.spec_hash)[1]:
                print(f"{name}: published archive is bad ({problem}); run prepare --force")
                return 1
        print(f"{name}: ready ({env.source}) spec={env.spec_hash} attention={env.attention}")
    return 0


def _recorded_weights(hf_home: Path) -> list[tuple[Weights, dict[str, Any]]]:
    """Every snapshot the worker downloaded and verified, with its record of the files."""
    found = []
    for path in sorted((hf_home / "media-worker").glob("*.json")):
        record = read_manifest(path)
        if not (record and isinstance(record.get("files"), dict)):
            continue
        try:
            w = Weights(
                record["repo_id"], record["revision"], repo_type=record.get("repo_type", "model")
            )
        except (KeyError, ValueError):
            continue
        found.append((w, record))
    return found


def _verify_summary(
    archives: int, profiles: int, snapshots: int, files: int, size: int, problems: int
) -> str:
    """The last line of ``verify``: what was read, and whether it was all good. Pure."""

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    read = (
        f"{n(archives, 'archive')} of {n(profiles, 'profile')}, "
        f"{n(snapshots, 'weights snapshot')} ({n(files, 'file')}, {_mb(size)})"
    )
    if not problems:
        return f"verify: ok: {read} re-hashed"
    return f"verify: {n(problems, 'problem')} in {read}"


def _cmd_verify(args: argparse.Namespace, paths: config.Paths) -> int:
    """Re-hash every archive on the volume and every byte of every downloaded snapshot."""
    target = current_target()
    problems = []
    paths.envs.mkdir(parents=True, exist_ok=True)
    profiles, _ = _profiles()
    seen: set[Path] = set()
    archives, with_archive, unbuilt = 0, 0, []
    for name, profile in sorted(profiles.items()):
        digest = spec_hash(for_this_machine(profile)[0], target)
        layout = Layout.of(name, digest, paths)
        checked, problem = _verify_archive(layout, digest, seen)
        for line in checked:
            print(f"verified {name}: {line}")
        archives += len(checked)
        with_archive += bool(checked or problem)
        if problem:
            problems.append(f"{name}: {problem}  fix: {_cli(args)} prepare {name} --force")
        elif not checked and not layout.manifest.exists():
            unbuilt.append(name)
    if unbuilt:
        print(f"no archive on the volume (nothing to verify): {', '.join(unbuilt)}")
    hf_home = paths.home / "hf"
    snapshots, files, size = 0, 0, 0
    for w, record in _recorded_weights(hf_home):
        snap = _weights.snapshot_dir(hf_home / "hub", w)
        bad = _weights.check_files(snap, record["files"], full=True)
        snap_size = sum(int(meta.get("size", 0)) for meta in record["files"].values())
        snapshots, files, size = snapshots + 1, files + len(record["files"]), size + snap_size
        if not bad:
            print(
                f"verified weights {w.repo_id}@{w.revision[:12]}: "
                f"{len(record['files'])} files ({_mb(snap_size)})"
            )
        users = [
            n
            for n, p in sorted(profiles.items())
            if any(x.repo_id == w.repo_id and x.revision in (None, w.revision) for x in p.weights)
        ]
        refetch = f"{_cli(args)} prepare {' '.join(users)}" if users else "the next job"
        if bad and args.repair:
            # The warm path checks sizes only, so a same-size corruption would be
            # trusted forever: remove the damaged files so they are downloaded again.
            _weights.remove_files(snap, [p.split(":", 1)[0] for p in bad])
        for p in bad:
            fix = (
                f"removed; {refetch} downloads it again"
                if args.repair
                else (f"{_cli(args)} verify --repair, then {refetch}")
            )
            problems.append(f"weights {w.repo_id}@{w.revision[:12]}: {snap / p}  fix: {fix}")
    for p in problems:
        print(p)
    print(_verify_summary(archives, with_archive, snapshots, files, size, len(problems)))
    return 1 if problems else 0


def _gc_plan(paths: config.Paths, *, keep: int) -> list[str]:
    """What gc would remove, relative to the state root (a dry run).

    A profile these settings cannot make keeps every archive of its name: which of
    them is current is unknown until its settings are fixed.
    """
    target = current_target()
    profiles, unmade = _profiles()
    known = {f"{n}-{spec_hash(for_this_machine(p)[0], target)}" for n, p in profiles.items()}
    envs_dir, leases_dir = paths.home / "envs", paths.home / "leases"
    if not paths.home.is_dir():
        return []
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
    layer_refs: dict[str, list[str]] = {}
    if envs_dir.is_dir():
        for f in envs_dir.iterdir():
            envs.append(_gc.Entry(f.name, f.lstat().st_mtime, any(k in f.name for k in live_keys)))
            parsed = Layout.parse_volume_name(f.name)
            if parsed and parsed[0].rsplit("-", 1)[0] in unmade:
                known.add(parsed[0])
            if parsed and parsed[1] is None and (manifest := read_manifest(f)):
                referenced[parsed[0]] = str(manifest.get("archive", ""))
                refs = manifest.get("layers")
                if _layers.refs_are_valid(refs):
                    layer_refs[parsed[0]] = [r["archive"] for r in refs]  # type: ignore[union-attr]
    return _gc.plan_gc(
        envs,
        leases,
        known=known,
        keep=keep,
        now=now,
        lease_expiry=expiry,
        referenced=referenced,
        layer_refs=layer_refs,
    )


def _cmd_gc(args: argparse.Namespace, paths: config.Paths) -> int:
    plan = _gc_plan(paths, keep=args.keep)
    for rel in plan:
        path = paths.home / rel
        print(f"removing {path}")
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    print(f"gc: removed {len(plan)}")
    return 0


def _cmd_doctor(
    args: argparse.Namespace, paths: config.Paths, probe: _doctor.Probe | None = None
) -> int:
    cli = _cli(args)
    status = _status(paths, args.cached_models, cli)
    made, _ = _profiles()
    needed = _doctor.endpoints(
        {name: for_this_machine(profile)[0] for name, profile in made.items()},
        status["profiles"],
        # what uv and the hub client fall back to when a profile names nothing
        default_index=os.environ.get("UV_DEFAULT_INDEX")
        or os.environ.get("UV_INDEX_URL")
        or _doctor.PYPI,
        hub=os.environ.get("HF_ENDPOINT") or _weights.DEFAULT_ENDPOINT,
    )
    facts = _doctor.gather(
        paths.home, paths.envs, paths.on_volume, status["profiles"], needed, probe
    )
    findings = _doctor.diagnose(facts, cli=cli)
    if leftovers := [str(paths.home / rel) for rel in _gc_plan(paths, keep=1)]:
        s = "s" if len(leftovers) > 1 else ""
        findings.append(
            _doctor.Finding(
                "warn", f"leftover{s} (expired or abandoned): {', '.join(leftovers)}", f"{cli} gc"
            )
        )
    print(_doctor.render(findings))
    return 1 if any(f.level == "fail" for f in findings) else 0


def main(argv: list[str] | None = None, *, probe: _doctor.Probe | None = None) -> int:
    """The CLI; ``probe`` asks whether a server answers (default ``_doctor.head``)."""

    # The global options are accepted before or after the subcommand: each subparser
    # gets them too, defaulting to SUPPRESS so an absent one keeps the main value.
    def global_options(parser: argparse.ArgumentParser, default: Any) -> None:
        parser.add_argument(
            "--volume",
            default=default,
            help="state root (default: the mounted volume or ~/.cache)",
        )
        parser.add_argument(
            "--cached-models",
            type=Path,
            default=default,
            help="RunPod's cached-models HF cache (default: $MEDIA_WORKER_CACHED_MODELS_DIR)",
        )

    parser = argparse.ArgumentParser(
        prog="python -m models",
        description="Environments and weights on the volume, and the job contract.",
    )
    global_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        global_options(p, argparse.SUPPRESS)
        return p

    p = command("status", "environments, weights and leftovers, with the fix for each problem")
    p.add_argument("--json", action="store_true")
    p = command("prepare", "build, pack and publish now (and download weights)")
    # "*", not "+": without a name the command lists the profiles (argparse's own
    # "the following arguments are required" names none of them)
    p.add_argument("profiles", nargs="*", help="the profiles to prepare (none: list them)")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid archive exists")
    p.set_defaults(usage=p.format_usage())
    p = command("verify", "re-hash every archive and every downloaded weights file")
    p.add_argument(
        "--repair", action="store_true", help="remove damaged weights files (re-downloaded later)"
    )
    p = command("gc", "remove temps, expired leases, archives no profile has")
    p.add_argument("--keep", type=int, default=1, help="old archives kept per profile")
    command("doctor", "one readable report of what is wrong and how to fix it")
    command("schema", "print the job contract's JSON Schema (models/schema.json)")
    command("settings", "print every setting, runners' included (docs/reference/configuration.md)")
    args = parser.parse_args(argv)
    if args.command == "schema":
        from models.jobs import json_schema_text

        sys.stdout.write(json_schema_text())
        return 0
    if args.command == "settings":
        from models.registry import SETTINGS  # complete: the registry read every runner

        print(config.markdown_table(SETTINGS))
        return 0
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
        "doctor": lambda args, paths: _cmd_doctor(args, paths, probe),
    }
    try:
        return handlers[args.command](args, paths)
    except BootstrapFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
