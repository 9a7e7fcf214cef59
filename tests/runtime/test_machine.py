"""The machine probe: pure parsing by tables, then the real read with a stand-in nvidia-smi."""

from __future__ import annotations

import pytest

from runtime import machine
from runtime.machine import Machine, parse_free_mb, parse_nvidia_smi, parse_proc, visible_devices
from tests.fixtures.machine import CUDA, DRIVER, fake_nvidia_smi

TWO = (
    "0, GPU-aaaa-1111, NVIDIA A40, 46068, 45000, 550.54.15, 8.6\n"
    "1, GPU-bbbb-2222, NVIDIA H100 80GB HBM3, 81559, 81000, 550.54.15, 9.0\n"
)
BANNER = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", ()),
        ("-1", ()),
        ("0", ("0",)),
        ("1,0", ("1", "0")),
        (" 1 , 0 ", ("1", "0")),
        ("GPU-bbbb", ("GPU-bbbb",)),
        ("0,-1,1", ("0",)),  # CUDA stops at the first invalid entry
        ("nonsense", ()),
    ],
)
def test_cuda_visible_devices_is_read_as_cuda_reads_it(value, expected):
    env = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert visible_devices(env) == expected


@pytest.mark.parametrize(
    ("visible", "gpu", "count", "cc", "free"),
    [
        (None, "NVIDIA A40", 2, "8.6", 45000),
        (("1",), "NVIDIA H100 80GB HBM3", 1, "9.0", 81000),
        (("GPU-bbbb",), "NVIDIA H100 80GB HBM3", 1, "9.0", 81000),
        (("1", "0"), "NVIDIA H100 80GB HBM3", 2, "9.0", 81000),
        ((), None, 0, None, None),
        (("7",), None, 0, None, None),  # names no device: CUDA sees none
    ],
)
def test_nvidia_smi_facts_follow_the_visible_devices(visible, gpu, count, cc, free):
    facts = parse_nvidia_smi(TWO, BANNER, visible, compute_cap=True)
    assert facts is not None
    assert (facts.gpu, facts.gpu_count, facts.compute_capability, facts.free_mb) == (
        gpu,
        count,
        cc,
        free,
    )
    # The driver's facts stay when CUDA_VISIBLE_DEVICES hides the GPUs.
    assert (facts.driver, facts.driver_cuda, facts.source) == ("550.54.15", "12.4", "nvidia-smi")
    assert facts.has_gpu is (gpu is not None)


def test_an_old_driver_without_compute_cap_and_an_answer_naming_nothing():
    old = "0, GPU-aaaa, Tesla T4, 15360, 15000, 470.82.01\n"
    facts = parse_nvidia_smi(old, "", None, compute_cap=False)
    assert facts is not None and facts.gpu == "Tesla T4" and facts.compute_capability is None
    assert facts.driver == "470.82.01" and facts.driver_cuda is None
    assert parse_nvidia_smi("", "", None, compute_cap=True) is None


def test_proc_facts_name_the_gpu_and_driver():
    version = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Thu Oct 2 2025\n"
    info = "Model: \t\t NVIDIA H200\nIRQ:   123\nGPU UUID: \t GPU-abcd-0001\n"
    assert parse_proc(version, [("0000:18:00.0", info)], None) == Machine(
        gpu="NVIDIA H200", gpu_count=1, driver="580.159.04", source="proc"
    )
    assert parse_proc(version, [("0000:18:00.0", info)], ()).has_gpu is False
    assert parse_proc(version, [], None) == Machine(driver="580.159.04", source="proc")


@pytest.mark.parametrize(
    ("output", "visible", "free"),
    [
        ("0, GPU-a, 81037\n", None, 81037),
        ("0, GPU-a, 1024\n1, GPU-b, 2048\n", ("1",), 2048),
        ("", None, None),
        ("No devices were found\n", None, None),
        ("0, GPU-a, [N/A]\n", None, None),
        ("0, GPU-a, 1024\n", (), None),
    ],
)
def test_parse_free_mb(output, visible, free):
    assert parse_free_mb(output, visible) == free


def test_reading_a_gpu_machine_through_nvidia_smi(gpu_machine, monkeypatch):
    facts = machine.probe()
    assert facts == Machine(
        gpu="NVIDIA H200",
        gpu_count=1,
        compute_capability="9.0",
        total_mb=143771,
        free_mb=142629,
        driver=DRIVER,
        driver_cuda=CUDA,
        source="nvidia-smi",
    )
    assert machine.probe() is facts  # read once per process
    assert machine.free_mb() == 142629
    assert "GPU NVIDIA H200, sm 9.0, 142629/143771 MiB free, driver 580.159.04" in facts.describe()


def test_cuda_visible_devices_empty_hides_the_gpu_but_keeps_the_driver(gpu_machine, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    facts = machine.probe()
    assert not facts.has_gpu and facts.driver == DRIVER and facts.driver_cuda == CUDA
    assert machine.free_mb() is None
    assert "hidden by CUDA_VISIBLE_DEVICES" in facts.describe()


def test_without_nvml_or_nvidia_smi_the_kernel_driver_answers(tmp_path):
    proc = tmp_path / "nvidia"
    (proc / "gpus" / "0000:18:00.0").mkdir(parents=True)
    (proc / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n")
    (proc / "gpus" / "0000:18:00.0" / "information").write_text("Model: \t NVIDIA L4\n")
    missing = str(tmp_path / "no-nvidia-smi")
    facts = machine.read({}, use_nvml=False, nvidia_smi=missing, proc=proc)
    assert (facts.gpu, facts.driver, facts.source) == ("NVIDIA L4", "550.54.15", "proc")
    hidden = machine.read(
        {"CUDA_VISIBLE_DEVICES": "-1"}, use_nvml=False, nvidia_smi=missing, proc=proc
    )
    assert not hidden.has_gpu and hidden.driver == "550.54.15"
    nothing = machine.read({}, use_nvml=False, nvidia_smi=missing, proc=tmp_path / "absent")
    assert nothing == machine.CPU


def test_two_gpus_through_the_command_line(tmp_path):
    smi = fake_nvidia_smi(
        tmp_path,
        (
            ("0", "GPU-aaaa", "NVIDIA A40", "46068", "45000"),
            ("1", "GPU-bbbb", "NVIDIA L4", "23034", "22000"),
        ),
    )
    facts = machine.read({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, use_nvml=False, nvidia_smi=str(smi))
    assert (facts.gpu, facts.gpu_count, facts.free_mb) == ("NVIDIA L4", 1, 22000)
