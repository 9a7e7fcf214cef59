"""Fast tier: the pure decisions, as tables."""

from __future__ import annotations

import dataclasses
import re
import sys
import tomllib
from pathlib import Path

import pytest

import bootstrap
import config
from bootstrap import _cuda, _disk, _doctor, _gc
from bootstrap._flash_attn import choose_flash_attn_wheel
from bootstrap._in_place import is_satisfied_in_place, unmet_pins
from bootstrap._layout import Layout
from bootstrap._lease import is_stale, lease_state
from bootstrap._manifest import env_is_ready
from bootstrap._spec import Target, spec_hash
from errors import BootstrapFailed
from models.profiles import PIPER, PROFILES
from models.registry import get_profile
from runtime.machine import Machine

ROOT = Path(__file__).resolve().parents[2]
T = Target("3.11", "cp311", "linux-x86_64", "glibc-2.36")
H = "0123456789abcdef"
GOOD = {
    "format": 2,
    "profile": "piper",
    "spec_hash": H,
    "archive": "piper-0123456789abcdef.tar.zst",
    "archive_bytes": 10,
    "archive_sha256": "a" * 64,
    "unpacked_bytes": 20,
    "attention": "none",
    "attention_reason": "no torch",
}

LAYER_REF = {
    "key": "torch_layer-00112233445566ff",
    "archive": "torch_layer-00112233445566ff-bbbbbbbbbbbb.tar.zst",
    "archive_sha256": "b" * 64,
    "archive_bytes": 3_000_000_000,
    "unpacked_bytes": 4_500_000_000,
}


def test_exported_names():
    assert sorted(bootstrap.__all__) == ["Artifact", "Environment", "Profile", "Weights", "ensure"]
    for name in bootstrap.__all__:
        assert getattr(bootstrap, name)


@pytest.mark.parametrize(
    ("manifest", "ready"),
    [
        (GOOD, True),
        (None, False),
        ({}, False),
        ("not a dict", False),
        ({**GOOD, "spec_hash": "ffffffffffffffff"}, False),
        ({**GOOD, "format": 1}, False),  # before shared layers: torch inside every archive
        ({**GOOD, "layers": []}, True),
        ({**GOOD, "layers": [LAYER_REF]}, True),
        ({**GOOD, "layers": [{**LAYER_REF, "archive": "elsewhere.tar.zst"}]}, False),
        ({**GOOD, "layers": [{**LAYER_REF, "key": "kokoro-0123456789abcdef"}]}, False),
        ({**GOOD, "layers": [{k: v for k, v in LAYER_REF.items() if k != "archive_bytes"}]}, False),
        ({**GOOD, "layers": "torch"}, False),
        ({**GOOD, "archive_sha256": "short"}, False),
        ({**GOOD, "archive_bytes": 0}, False),
        ({**GOOD, "archive_bytes": True}, False),
        ({**GOOD, "attention": "magic"}, False),
        ({k: v for k, v in GOOD.items() if k != "attention_reason"}, False),
    ],
)
def test_env_is_ready(manifest, ready):
    assert env_is_ready(manifest, H) is ready


# Real wheel names from Dao-AILab/flash-attention releases.
WHEELS = [
    (
        ("2.3.2", "2.1.0+cu118", 11, False, "cp310"),
        "flash_attn-2.3.2+cu118torch2.1cxx11abiFALSE-cp310-cp310-linux_x86_64.whl",
    ),
    (
        ("2.3.6", "2.1.2+cu121", 12, False, "cp311"),
        "flash_attn-2.3.6+cu122torch2.1cxx11abiFALSE-cp311-cp311-linux_x86_64.whl",
    ),
    (
        ("2.5.8", "2.3.0", 12, False, "cp311"),
        "flash_attn-2.5.8+cu122torch2.3cxx11abiFALSE-cp311-cp311-linux_x86_64.whl",
    ),
    (
        ("2.6.3", "2.4.0+cu121", 12, False, "cp310"),
        "flash_attn-2.6.3+cu123torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl",
    ),
    (
        ("2.7.0.post2", "2.5.1", 12, False, "cp311"),
        "flash_attn-2.7.0.post2+cu12torch2.5cxx11abiFALSE-cp311-cp311-linux_x86_64.whl",
    ),
    (
        ("2.7.4.post1", "2.6.0+cu124", 12, False, "cp311"),
        "flash_attn-2.7.4.post1+cu12torch2.6cxx11abiFALSE-cp311-cp311-linux_x86_64.whl",
    ),
    (
        ("2.8.1", "2.7.1+cu126", 12, True, "cp311"),
        "flash_attn-2.8.1+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl",
    ),
    (
        ("2.8.3", "2.8.0", 12, True, "cp312"),
        "flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
    ),
]


@pytest.mark.parametrize(("args", "expected"), WHEELS)
def test_choose_flash_attn_wheel_matches_upstream_names(args, expected):
    wheel, reason = choose_flash_attn_wheel(*args, "linux_x86_64")
    assert wheel == expected
    assert expected in reason


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("2.7.4.post1", "2.6.0+cpu", None, False, "cp311", "linux_x86_64"), "CPU build"),
        (("2.7.4.post1", "2.6.0", 12, False, "cp311", "macosx_14_0_arm64"), "no wheels"),
        (("2.7.4.post1", "2.6.0", 10, False, "cp311", "linux_x86_64"), "CUDA 10"),
        (("2.0.4", "2.0.1", 11, False, "cp310", "linux_x86_64"), "no flash-attn"),
    ],
)
def test_choose_flash_attn_wheel_falls_back_with_a_reason(args, why):
    wheel, reason = choose_flash_attn_wheel(*args)
    assert wheel is None
    assert why in reason


@pytest.mark.parametrize(
    ("exists", "expires_at", "now", "state"),
    [
        (False, None, 100.0, "free"),
        (True, 200.0, 100.0, "live"),
        (True, 100.0, 105.0, "live"),  # within flufl's 10 s clock slop
        (True, 100.0, 111.0, "expired"),
    ],
)
def test_lease_state(exists, expires_at, now, state):
    assert lease_state(exists=exists, expires_at=expires_at, now=now) == state


def test_plan_gc():
    E = _gc.Entry
    now = 10_000.0
    old = now - 5_000  # older than the grace for replaced archives
    fresh = now - 60  # touched by a heartbeat a minute ago
    a, b, c, d, e, g = (f"piper-{ch * 16}" for ch in "abcdeg")
    envs = [
        E(f"{a}-aaaaaaaaaaaa.tar.zst", old),
        E(f"{a}.json", old),  # known
        E(f"{a}-a00000000000.tar.zst", old),  # replaced by the manifest's archive: garbage
        E(f"{a}-a11111111111.tar.zst", fresh),  # replaced a minute ago: a reader may need it
        E(f"{b}-bbbbbbbbbbbb.tar.zst", old + 2),
        E(f"{b}.json", old + 2),  # old, kept
        E(f"{c}-cccccccccccc.tar.zst", old),
        E(f"{c}.json", old),  # oldest
        E(f"{d}-dddddddddddd.tar.zst", old),  # no manifest, no lease
        E(f"{g}-000000000000.tar.zst", fresh),  # no manifest yet: being published
        E(f"{e}-eeeeeeeeeeee.tar.zst", old, lease_live=True),  # being published
        E(".tmp-piper-ffff-host-1-ab.tar.zst", old),  # its builder is gone
        E(".tmp-piper-ffff-host-3-ef.tar.zst", fresh),  # lease lost, heartbeat alive
        E(".tmp-piper-aaaa-host-2-cd.tar.zst", old, lease_live=True),
        E(".clock-x1", old),
    ]
    leases = [
        E("piper-x.lock", 50),
        E("piper-y.lock", 50),
        E("piper-z.lock|h|1|r", 0),
        E(".clock-y2", old),
    ]
    plan = _gc.plan_gc(
        envs,
        leases,
        known={a},
        keep=1,
        now=now,
        lease_expiry={"piper-x.lock": 9_000.0, "piper-y.lock": 20_000.0},
        referenced={
            a: f"{a}-aaaaaaaaaaaa.tar.zst",
            b: f"{b}-bbbbbbbbbbbb.tar.zst",
            c: f"{c}-cccccccccccc.tar.zst",
        },
    )
    assert plan == sorted(
        [
            "envs/.clock-x1",
            "envs/.tmp-piper-ffff-host-1-ab.tar.zst",
            f"envs/{a}-a00000000000.tar.zst",
            f"envs/{c}.json",
            f"envs/{c}-cccccccccccc.tar.zst",
            f"envs/{d}-dddddddddddd.tar.zst",
            "leases/.clock-y2",
            "leases/piper-x.lock",
            "leases/piper-z.lock|h|1|r",
        ]
    )


def test_plan_gc_removes_a_shared_layer_only_when_no_kept_profile_names_it():
    E = _gc.Entry
    now = 10_000.0
    old, fresh = now - 5_000, now - 60
    k1, k2, k3 = (f"kokoro-{ch * 16}" for ch in "123")  # k1 current, k2 older, k3 oldest
    u = "upscale-" + "4" * 16
    L, M = "torch_layer-" + "a" * 16, "torch_layer-" + "b" * 16
    used, shared, stale, young, orphan = (
        f"{L}-{ch * 12}.tar.zst" for ch in "12345"
    )  # shared: named by k2 (removed below) and by u (kept)
    envs = [
        *(E(f"{k}.json", t) for k, t in ((k1, old + 3), (k2, old + 2), (k3, old + 1))),
        *(
            E(f"{k}-{k[-1] * 12}.tar.zst", t)
            for k, t in ((k1, old + 3), (k2, old + 2), (k3, old + 1))
        ),
        E(f"{u}.json", old),
        E(f"{u}-444444444444.tar.zst", old),
        E(used, old),
        E(shared, old),
        E(stale, old),  # only k3 named it, and k3 goes
        E(young, fresh),  # named by nobody yet: a build between its two publishes
        E(f"{L}.json", old),  # names `young`: stays while `young` does
        E(orphan, old),
        E(f"{M}.json", old),  # names `orphan`, which nobody uses: both go
    ]
    plan = _gc.plan_gc(
        envs,
        [],
        known={k1, u},
        keep=1,
        now=now,
        lease_expiry={},
        referenced={
            k1: f"{k1}-111111111111.tar.zst",
            k2: f"{k2}-222222222222.tar.zst",
            k3: f"{k3}-333333333333.tar.zst",
            u: f"{u}-444444444444.tar.zst",
            L: young,
            M: orphan,
        },
        layer_refs={k1: [used], k2: [shared], k3: [stale], u: [shared]},
    )
    assert plan == sorted(
        [
            f"envs/{k3}.json",
            f"envs/{k3}-333333333333.tar.zst",
            f"envs/{stale}",
            f"envs/{orphan}",
            f"envs/{M}.json",
        ]
    )


@pytest.mark.parametrize(
    ("mtime", "now", "stale"),
    [(1000.0, 1000.0, False), (1000.0, 1129.0, False), (1000.0, 1131.0, True), (1e3, 0.0, False)],
)
def test_is_stale(mtime, now, stale):
    assert is_stale(mtime=mtime, now=now, lifetime_s=120.0) is stale


def test_layout_names_archives_by_content_and_parses_them_back(tmp_path):
    paths = config.Paths(home=tmp_path, envs=tmp_path / "e", outputs=tmp_path, on_volume=True)
    layout = Layout.of("piper", "0123456789abcdef", paths)
    sha = "ab" * 32
    archive = layout.archive_for(sha)
    assert archive.name == "piper-0123456789abcdef-abababababab.tar.zst"
    assert layout.archive_of({"archive": archive.name, "archive_sha256": sha}) == archive
    assert layout.archive_of({"archive": "../../etc/passwd", "archive_sha256": sha}) is None
    assert layout.archive_of({"archive": archive.name, "archive_sha256": "cd" * 32}) is None
    parse = Layout.parse_volume_name
    assert parse(archive.name) == ("piper-0123456789abcdef", "abababababab")
    assert parse(layout.manifest.name) == ("piper-0123456789abcdef", None)
    assert parse("piper-0123456789abcdef.tar.zst") is None  # the old, unaddressed name
    assert parse(".tmp-piper-0123456789abcdef-h-1-x.json") is None


def test_spec_hash_covers_what_changes_the_build_and_nothing_else():
    base = spec_hash(PIPER, T)
    reordered = bootstrap.Profile("piper", tuple(reversed(PIPER.requirements)), size_mb=1)
    assert spec_hash(reordered, T) == base
    assert spec_hash(PIPER, Target("3.12", "cp312", T.platform, T.libc)) != base
    assert spec_hash(PIPER, Target(T.python, T.abi, "linux-aarch64", T.libc)) != base
    assert spec_hash(PIPER, Target(T.python, T.abi, T.platform, "glibc-2.28")) != base
    other_index = bootstrap.Profile(
        "piper", PIPER.requirements, extra_index_urls=("https://x/cu126",)
    )
    assert spec_hash(other_index, T) != base
    bumped = bootstrap.Profile("piper", (*PIPER.requirements[:-1], "soxr==1.0.0"))
    assert spec_hash(bumped, T) != base
    respelled = bootstrap.Profile(
        "piper",
        tuple(r.replace("-", "_").upper().replace("==", " == ") for r in PIPER.requirements),
    )
    assert spec_hash(respelled, T) == base
    with_extra = bootstrap.Profile("piper", (*PIPER.requirements[:-1], "soxr[x]==1.1.0"))
    assert spec_hash(with_extra, T) != base
    # an override changes what uv installs (the dependency's own pin loses)
    overridden = bootstrap.Profile("piper", PIPER.requirements, overrides=("numpy",))
    assert spec_hash(overridden, T) != base
    assert spec_hash(dataclasses.replace(overridden, overrides=("NumPy",)), T) == spec_hash(
        overridden, T
    )
    assert re.fullmatch(r"[0-9a-f]{16}", base)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad Name", "requirements": ("a==1",)}, "profile name"),
        ({"name": "p", "requirements": ("numpy>=2",)}, "not pinned"),
        ({"name": "p", "requirements": ("numpy==2.*",)}, "not pinned"),
        ({"name": "p", "requirements": ("numpy==2,<3",)}, "not pinned"),
        ({"name": "p", "requirements": ("numpy==2; os_name=='nt'",)}, "not pinned"),
        ({"name": "p", "requirements": ("numpy @ https://x/n.whl",)}, "not pinned"),
        ({"name": "p", "requirements": ("numpy=2",)}, "not pinned"),
        ({"name": "p", "requirements": ()}, "non-empty"),
        ({"name": "p", "requirements": ("x==1",), "flash_attn": "2.7.4"}, "torch"),
        ({"name": "p", "requirements": ("x==1",), "overrides": ("torch",)}, "override 'torch'"),
        ({"name": "p", "requirements": ("x==1",), "overrides": "x"}, "tuple of names"),
    ],
)
def test_profile_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap.Profile(**kwargs)


def test_weights_revision_must_be_a_commit():
    with pytest.raises(ValueError, match="40-character"):
        bootstrap.Weights("org/model", "main")
    assert bootstrap.Weights("org/model", "a" * 40).patterns == ("*",)


@pytest.mark.parametrize(
    ("installed", "ok"),
    [
        ({"a": "1", "b": "2"}, True),
        ({"a": "1", "b": "3"}, False),
        ({"a": "1"}, False),
        ({"a": "1.0", "b": "2.0.0"}, True),  # PEP 440 equal
        ({"a": "1", "b": "2+cpu"}, False),  # another build of 2
        ({"a": "1", "b": "not a version"}, False),
    ],
)
def test_is_satisfied_in_place(installed, ok):
    assert is_satisfied_in_place({"a": "1", "b": "2"}, installed.get) is ok


@pytest.mark.parametrize(
    ("installed", "unmet"),
    [
        ({"a": "1", "b": "2"}, []),
        ({"a": "1", "b": "3"}, ["b==2 (installed: 3)"]),
        ({"b": "2.0"}, ["a==1 (installed: none)"]),
        ({"a": "1", "b": "2+cpu"}, ["b==2 (installed: 2+cpu)"]),
    ],
)
def test_unmet_pins_say_what_is_installed_instead(installed, unmet):
    assert unmet_pins({"a": "1", "b": "2"}, installed.get) == unmet


def test_in_place_setting_runs_a_profile_here_and_warns_of_unmet_pins(
    tmp_path, monkeypatch, caplog
):
    profile = bootstrap.Profile("elsewhere", requirements=("no-such-dist-mw==1.0", "pytest==0.1"))
    paths = config.Paths(home=tmp_path, envs=tmp_path / "e", outputs=tmp_path, on_volume=False)
    monkeypatch.setenv("MEDIA_WORKER_IN_PLACE", "1")
    env = bootstrap.ensure(profile, paths=paths)
    assert (env.python, env.source, env.root) == (Path(sys.executable), "in-place", None)
    assert not (tmp_path / "e").exists()  # nothing was built or restored
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "profile elsewhere runs in this interpreter (MEDIA_WORKER_IN_PLACE) without: " in (
        warning.getMessage()
    )
    assert "no-such-dist-mw==1.0 (installed: none); pytest==0.1 (installed: " in (
        warning.getMessage()
    )


def test_piper_pins_equal_the_piper_extra():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(extra["piper"]) == sorted(PIPER.requirements)
    assert get_profile("piper") is PIPER and PROFILES["piper"] is PIPER
    with pytest.raises(KeyError, match="known: chatterbox, f5tts, kokoro, piper"):
        get_profile("nope")


def test_disk_error_says_how_much_where_and_free(monkeypatch, tmp_path):
    monkeypatch.setattr(_disk, "disk_usage", lambda p: type("U", (), {"free": 5 * _disk.MB})())
    with pytest.raises(BootstrapFailed) as info:
        _disk.require_free(tmp_path / "envs", 300 * _disk.MB, what="the piper archive")
    msg = info.value.message
    assert "about 300 MB" in msg and str(tmp_path / "envs") in msg and "5 MB free" in msg


def test_doctor_explains_a_driver_too_old_for_the_profile(tmp_path):
    a40 = Machine(
        gpu="NVIDIA A40",
        gpu_count=1,
        compute_capability="8.6",
        driver="470.256.02",
        driver_cuda="11.4",
    )
    profile = bootstrap.Profile(
        "chatterbox",
        ("torch==2.6.0",),
        extra_index_urls=("https://download.pytorch.org/whl/cu126",),
        cuda=True,
    )
    _, refused = _cuda.for_machine(profile, a40)
    facts = _doctor.Facts(
        home=tmp_path,
        envs=tmp_path,
        on_volume=False,
        home_writable=False,
        home_free=10,
        envs_free=10**12,
        python="3.11.7",
        platform="linux",
        uv=None,
        machine=a40,
        profiles={
            "chatterbox": {
                "cuda": {"build": refused.build, "reason": refused.reason},
                "env": "missing",
                "weights": {"o/m": "partial"},
            }
        },
    )
    text = _doctor.render(_doctor.diagnose(facts))
    assert "FAIL state root" in text and "MEDIA_WORKER_HOME" in text
    assert (
        "FAIL profile chatterbox: NVIDIA A40 (compute capability 8.6), driver 470.256.02 "
        "(CUDA 11.4): no CUDA build of torch 2.6.0 runs here. cu126 needs a driver "
        "supporting CUDA 12.0 (525.60.13 or newer).\n"
        "     fix: choose hosts whose driver supports CUDA 12.0 or newer"
    ) in text
    assert "python -m models prepare chatterbox" in text
    assert "pip install uv" in text
    hidden = dataclasses.replace(facts, machine=Machine(driver="470.256.02", driver_cuda="11.4"))
    _, on_cpu = _cuda.for_machine(profile, hidden.machine)
    hidden.profiles["chatterbox"]["cuda"] = {"build": on_cpu.build, "reason": on_cpu.reason}
    text = _doctor.render(_doctor.diagnose(hidden))
    assert "WARN NVIDIA driver 470.256.02 is loaded but CUDA_VISIBLE_DEVICES hides" in text
    assert "ok   profile chatterbox: no NVIDIA GPU visible: torch 2.6.0 cu126" in text


@pytest.mark.parametrize(
    ("env", "index_url", "extra"),
    [
        ({}, None, ("https://download.pytorch.org/whl/cu126",)),
        (
            {"MEDIA_WORKER_INDEX_URL": "https://mirror.example/simple"},
            "https://mirror.example/simple",
            ("https://download.pytorch.org/whl/cu126",),
        ),
        (
            {"MEDIA_WORKER_EXTRA_INDEX_URLS": "https://download.pytorch.org/whl/cpu"},
            None,
            ("https://download.pytorch.org/whl/cpu",),
        ),
    ],
)
def test_index_overrides_from_the_environment_change_the_spec_hash(env, index_url, extra):
    from bootstrap._profile import Profile, with_index_overrides
    from bootstrap._spec import current_target, spec_hash

    base = Profile(
        name="t",
        requirements=("torch==2.6.0",),
        extra_index_urls=("https://download.pytorch.org/whl/cu126",),
    )
    got = with_index_overrides(base, env)
    assert (got.index_url, got.extra_index_urls) == (index_url, extra)
    assert got.pins == base.pins
    same = spec_hash(got, current_target()) == spec_hash(base, current_target())
    assert same == (not env)


@pytest.mark.parametrize(
    ("requirement", "pins"),
    [
        ("Piper_TTS==1.8.0", {"piper-tts": "1.8.0"}),
        ("joe.us-piper[voice,extra] == 1.0.0", {"joe-us-piper": "1.0.0"}),
        ("torch==2.13.0+cpu", {"torch": "2.13.0+cpu"}),
    ],
)
def test_pins_are_read_by_packaging(requirement, pins):
    assert bootstrap.Profile("p", (requirement,)).pins == pins


def test_wheel_artifact_name_and_version_come_from_its_file_name():
    wheel = bootstrap.Artifact(
        "https://example.com/Flash_Attn-2.7.4.post1+cu12torch2.6-cp311-cp311-linux_x86_64.whl",
        "0123456789abcdef" * 4,
    )
    assert (wheel.name, wheel.version) == ("flash-attn", "2.7.4.post1+cu12torch2.6")
    with pytest.raises(ValueError, match="PEP 427"):
        bootstrap.Artifact("https://example.com/not-a-wheel.whl", "0123456789abcdef" * 4)


def test_an_unreachable_package_index_says_which_setting_fixes_it(monkeypatch):
    """uv's real error for an index nothing listens on, through the build's own runner:
    the error line names the index and MEDIA_WORKER_EXTRA_INDEX_URLS; uv's cause chain
    stays out of it."""
    from bootstrap import _build
    from errors import one_line

    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    index = "http://127.0.0.1:9/simple"
    package = "no-such-package-for-media-worker==1.0"
    cmd = [_build.uv_binary(), "pip", "install", "--dry-run", "--no-cache", "--python",
           sys.executable, "--index-url", index, package]  # fmt: skip
    with pytest.raises(BootstrapFailed) as failed:
        _build._run(cmd, what="installing", profile="kokoro", timeout=60, indexes=(index,))
    line, cause = one_line(failed.value.message)
    assert "\n" not in line
    assert line.startswith("profile kokoro: installing failed (exit ")
    assert f"the package index {index} cannot be reached" in line
    assert "MEDIA_WORKER_EXTRA_INDEX_URLS=https://pypi.org/simple" in line
    assert "Connection refused" in cause and "Connection refused" not in line
    assert _build.unreachable_index_hint(cause, ("https://download.pytorch.org/whl/cu126",)) is None


@pytest.mark.parametrize(
    ("message", "line", "cause"),
    [
        ("plain", "plain", ""),
        ("profile x: failed (exit 2):\nerror: a\n  cause: b\n\nhint: do y",
         "profile x: failed (exit 2); do y", "error: a\ncause: b"),
        ("weights w: bad\n\nhint: retry", "weights w: bad; retry", ""),
    ],
)  # fmt: skip
def test_an_error_is_one_line_and_its_cause(message, line, cause):
    from errors import one_line

    assert one_line(message) == (line, cause)


def test_the_environment_and_the_weights_are_prepared_at_the_same_time():
    import contextvars
    import threading

    from bootstrap._ensure import side_by_side

    both = threading.Barrier(2, timeout=10)  # passes only while both run at once
    job = contextvars.ContextVar("job", default="-")
    job.set("job-7")

    def environment():
        both.wait()
        return "env", job.get()

    def weights():
        both.wait()
        return {"repo": "snapshot"}

    assert side_by_side(environment, weights, name="kokoro") == (
        ("env", "job-7"),  # each side runs in the caller's context: its logs name the job
        {"repo": "snapshot"},
    )


def test_the_first_failure_is_reported_without_waiting_for_the_other_side():
    import threading

    from bootstrap._ensure import side_by_side

    release, built = threading.Event(), threading.Event()

    def slow_build():
        release.wait(30)
        built.set()
        return "env"

    def hub_down():
        raise BootstrapFailed("weights x@1: the hub could not be reached")

    try:
        with pytest.raises(BootstrapFailed, match="could not be reached"):
            side_by_side(slow_build, hub_down, name="kokoro")
        assert not built.is_set()  # reported while the build still runs, not after it
    finally:
        release.set()  # the build goes on in the background; let it end
