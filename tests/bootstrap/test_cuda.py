"""The CUDA build each kind of machine gets (pure decisions, table-tested)."""

from __future__ import annotations

import os

import pytest

import bootstrap
import config
from bootstrap._cuda import (
    BUILDS,
    TORCH_BUILDS,
    choose_cuda_build,
    parse_version,
    with_cuda_build,
)
from bootstrap._ensure import for_this_machine
from bootstrap._profile import Profile
from bootstrap._spec import current_target, spec_hash
from errors import BootstrapFailed
from models import cli
from models.profiles import CHATTERBOX, KOKORO, PROFILES, upscale_profile
from runtime import machine
from tests.fixtures.machine import fake_nvidia_smi

# (GPU, compute capability, driver, the driver's CUDA) as nvidia-smi reports them.
H100 = ("NVIDIA H100 80GB HBM3", "9.0")
L4 = ("NVIDIA L4", "8.9")
A100 = ("NVIDIA A100-SXM4-80GB", "8.0")
V100 = ("Tesla V100-SXM2-32GB", "7.0")
RTX5090 = ("NVIDIA GeForce RTX 5090", "12.0")
B200 = ("NVIDIA B200", "10.0")
D550 = ("550.127.05", "12.4")
D535 = ("535.183.01", "12.2")
D570 = ("570.124.06", "12.8")
D575 = ("575.57.08", "12.9")
D580 = ("580.65.06", "13.0")
D470 = ("470.256.02", "11.4")


@pytest.mark.parametrize(
    ("torch", "gpu", "driver", "build", "words"),
    [
        # the rows
        ("2.13.0", H100, D550, "cu126", "cu130 needs a driver supporting CUDA 13.0 (580"),
        ("2.13.0", H100, D580, "cu130", "the newest build, and the driver runs it"),
        ("2.13.0", L4, D570, "cu126", "cu130 needs a driver supporting CUDA 13.0"),
        ("2.13.0", A100, D535, "cu126", "cu130 needs a driver supporting CUDA 13.0"),
        ("2.13.0", RTX5090, D575, None, "cu126 has no kernels for compute capability 12.0"),
        ("2.13.0", B200, D580, "cu130", "the newest build"),
        # and around them
        ("2.13.0", V100, D580, "cu126", "cu130 has no kernels for compute capability 7.0"),
        ("2.13.0", H100, D470, None, "needs a driver supporting CUDA 12.0 (525.60.13"),
        ("2.6.0", H100, D580, "cu126", "the only build of torch 2.6.0"),
        ("2.6.0", B200, D580, None, "needs a newer torch than the profile pins"),
        ("2.13.0+cu126", L4, D580, "cu130", "the newest build"),
    ],
)
def test_the_build_each_machine_gets(torch, gpu, driver, build, words):
    choice = choose_cuda_build(
        torch,
        compute_capability=parse_version(gpu[1]),
        driver_cuda=parse_version(driver[1]),
        driver=driver[0],
        gpu=gpu[0],
    )
    assert choice.build == build, choice.reason
    assert choice.refused == (build is None)
    assert words in choice.reason
    assert gpu[0] in choice.reason and driver[0] in choice.reason


@pytest.mark.parametrize(
    ("driver", "build"), [("580.65.06", "cu130"), ("550.127.05", "cu126"), ("470.1", None)]
)
def test_only_the_kernel_driver_known_judges_by_the_driver_version(driver, build):
    # /proc/driver/nvidia alone: a GPU name and a driver version, no CUDA version, no sm
    choice = choose_cuda_build(
        "2.13.0", compute_capability=None, driver_cuda=None, driver=driver, gpu="NVIDIA L40S"
    )
    assert choice.build == build, choice.reason
    assert "NVIDIA L40S (compute capability unknown)" in choice.reason


def test_a_refusal_says_what_is_wrong_and_what_to_do():
    choice = choose_cuda_build(
        "2.13.0",
        compute_capability=(12, 0),
        driver_cuda=(12, 9),
        driver="575.57.08",
        gpu="NVIDIA GeForce RTX 5090",
    )
    assert choice.reason.startswith(
        "NVIDIA GeForce RTX 5090 (compute capability 12.0), driver 575.57.08 (CUDA 12.9): "
        "no CUDA build of torch 2.13.0 runs here."
    )
    assert "cu130 needs a driver supporting CUDA 13.0 (580 or newer)" in choice.reason
    assert "hint: choose hosts whose driver supports CUDA 13.0 or newer" in choice.reason


@pytest.mark.parametrize(
    ("forced", "gpu", "driver", "build", "words"),
    [
        (None, None, None, "cu126", "no NVIDIA GPU visible: torch 2.13.0 cu126"),
        ("cu130", None, None, "cu130", "set by MEDIA_WORKER_CUDA_BUILD"),
        ("cu126", H100, D580, "cu126", "set by MEDIA_WORKER_CUDA_BUILD"),
        ("cu126", B200, D580, None, "cu126 has no kernels for compute capability 10.0"),
        ("cu130", A100, D550, None, "cu130 needs a driver supporting CUDA 13.0"),
    ],
)
def test_a_forced_build_is_used_only_where_it_runs(forced, gpu, driver, build, words):
    choice = choose_cuda_build(
        "2.13.0",
        compute_capability=parse_version(gpu[1]) if gpu else None,
        driver_cuda=parse_version(driver[1]) if driver else None,
        forced=forced,
    )
    assert (choice.build, words in choice.reason) == (build, True), choice.reason


def test_a_torch_outside_the_table_or_a_build_it_lacks_is_refused_in_words():
    unknown = choose_cuda_build("2.99.0", compute_capability=(9, 0), driver_cuda=(13, 0))
    assert unknown.refused and "torch 2.99.0 is not in the CUDA build table" in unknown.reason
    lacking = choose_cuda_build("2.6.0", compute_capability=None, driver_cuda=None, forced="cu130")
    assert lacking.refused and "published for cu126 only" in lacking.reason


def test_every_cuda_profile_pins_a_torch_in_the_table():
    profiles = [*PROFILES.values(), upscale_profile()]
    cuda = [p for p in profiles if p.cuda]
    assert {p.name for p in cuda} >= {"kokoro", "chatterbox", "f5tts", "upscale"}
    for profile in cuda:
        release = ".".join(profile.pins["torch"].split(".")[:2])
        assert set(TORCH_BUILDS[release]) <= set(BUILDS), profile.name


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        (("https://download.pytorch.org/whl/cu126",), ("https://download.pytorch.org/whl/cu130",)),
        (("https://mirror.example/torch/cu126/",), ("https://mirror.example/torch/cu130",)),
        (("https://pypi.org/simple",), ("https://pypi.org/simple",)),
        (("https://download.pytorch.org/whl/cpu",), ("https://download.pytorch.org/whl/cpu",)),
    ],
)
def test_the_build_rewrites_only_a_cuda_index(urls, expected):
    profile = Profile("t", ("torch==2.13.0",), extra_index_urls=urls, cuda=True)
    assert with_cuda_build(profile, "cu130").extra_index_urls == expected


def test_the_choice_is_part_of_the_spec_hash():
    target = current_target()
    cu126 = with_cuda_build(KOKORO, "cu126")
    cu130 = with_cuda_build(KOKORO, "cu130")
    assert cu126 == KOKORO  # the profiles are written for cu126
    assert spec_hash(cu126, target) != spec_hash(cu130, target)
    # a profile with no CUDA index installs the same thing whichever build is chosen
    pypi = Profile("t", ("torch==2.13.0",), extra_index_urls=("https://pypi.org/simple",))
    assert spec_hash(with_cuda_build(pypi, "cu130"), target) == spec_hash(pypi, target)
    assert with_cuda_build(CHATTERBOX, "cu126") is CHATTERBOX


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("13.0", (13, 0)),
        ("8.9", (8, 9)),
        (" 12.4 ", (12, 4)),
        ("580.65.06", (580, 65)),
        ("", None),
        (None, None),
        ("N/A", None),
    ],
)
def test_versions_from_nvidia_smi(text, version):
    assert parse_version(text) == version


RTX5090_ROW = ("0", "GPU-0000", "NVIDIA GeForce RTX 5090", "32607", "32000")


@pytest.fixture
def rtx5090_on_575(tmp_path, monkeypatch):
    """This process sees an RTX 5090 on driver 575 through nvidia-smi (the real probe)."""
    smi = fake_nvidia_smi(
        tmp_path / "bin", (RTX5090_ROW,), driver="575.57.08", cuda="12.9", compute_cap="12.0"
    )
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(machine, "_nvml", lambda: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    machine.probe.cache_clear()
    yield
    machine.probe.cache_clear()


def test_ensure_refuses_in_words_before_touching_the_volume(rtx5090_on_575, tmp_path):
    paths = config.Paths(tmp_path / "vol", tmp_path / "envs", tmp_path / "out", True)
    with pytest.raises(BootstrapFailed) as info:
        bootstrap.ensure(KOKORO, paths=paths, in_place=False)
    assert info.value.message.startswith(
        "profile kokoro: NVIDIA GeForce RTX 5090 (compute capability 12.0), driver 575.57.08 "
        "(CUDA 12.9): no CUDA build of torch 2.13.0 runs here."
    )
    assert not paths.home.exists() and not paths.envs.exists()


def _answers(url: str) -> None:
    """Every server answers: these tests are about the CUDA choice (reachability:
    tests/bootstrap/test_doctor.py, against servers on loopback)."""


def test_the_doctor_says_which_build_and_why(gpu_machine, tmp_path, capsys):
    rc = cli.main(["--volume", str(tmp_path / "vol"), "doctor"], probe=_answers)
    out = capsys.readouterr().out
    # chatterbox's own torch 2.6.0 pin is overridden: it shares kokoro's torch and build,
    # so one line says it for both (and the other torch profiles)
    assert (
        "ok   profiles chatterbox, f5tts, kokoro, seedvr2, upscale: NVIDIA H200 (compute "
        "capability 9.0), driver 580.159.04 (CUDA 13.0): torch 2.13.0 cu130; the newest "
        "build, and the driver runs it"
    ) in out
    assert "piper: NVIDIA" not in out  # no torch, no choice
    # the index asked is the one this machine's build reads
    assert "ok   package index https://download.pytorch.org/whl/cu130 answers" in out
    assert out.endswith("doctor: no problems (2 warnings)\n")
    assert rc == 0  # an empty volume only warns: the first job builds what is missing


def test_the_doctor_refuses_in_words(rtx5090_on_575, tmp_path, capsys):
    assert cli.main(["--volume", str(tmp_path / "vol"), "doctor"], probe=_answers) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL profiles chatterbox, f5tts, kokoro, seedvr2, upscale: NVIDIA GeForce RTX 5090 "
        "(compute capability 12.0)"
    ) in out
    assert out.splitlines()[-1].startswith(
        "doctor: 1 problem: profiles chatterbox, f5tts, kokoro, seedvr2, upscale: "
        "no CUDA build of torch 2.13.0 runs here"
    )
    assert "     fix: choose hosts whose driver supports CUDA 13.0 or newer" in out


def test_the_build_setting_and_the_machine_give_the_spec_hash(gpu_machine, monkeypatch):
    target = current_target()
    on_h200, choice = for_this_machine(KOKORO)
    assert choice.build == "cu130"
    assert spec_hash(on_h200, target) == spec_hash(with_cuda_build(KOKORO, "cu130"), target)
    monkeypatch.setenv("MEDIA_WORKER_CUDA_BUILD", "cu126")
    forced, choice = for_this_machine(KOKORO)
    assert choice.build == "cu126" and "MEDIA_WORKER_CUDA_BUILD" in choice.reason
    assert spec_hash(forced, target) == spec_hash(KOKORO, target)
