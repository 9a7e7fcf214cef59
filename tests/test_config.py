"""config.py: parsing, path precedence, and the README table kept in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import config

ROOT = Path(__file__).resolve().parents[1]


def test_readme_configuration_table_is_generated_from_config():
    assert config.markdown_table() in (ROOT / "README.md").read_text(), (
        "README.md's Configuration table is stale: paste `python -m config` into it"
    )


def test_every_setting_is_documented_once():
    names = [s.name for s in config.SETTINGS]
    assert len(names) == len(set(names))
    assert all(s.doc.strip() for s in config.SETTINGS)


@pytest.mark.parametrize(
    ("setting", "raw", "value"),
    [
        (config.JOB_TIMEOUT_S, "12.5", 12.5),
        (config.JOB_TIMEOUT_S, "", 600.0),
        (config.MAX_RUNNERS, "3", 3),
        (config.PREPARE_PROFILES, "piper, kokoro,", ("piper", "kokoro")),
        (config.PREPARE_PROFILES, "", ()),
        (config.BUCKET_REGION, "auto", "auto"),
        (config.LOG_LEVEL, "debug", "DEBUG"),
        (config.BUCKET_ADDRESSING_STYLE, " Virtual", "virtual"),
        (config.PRESIGN_SECONDS, "604800", 604_800),
        (config.PRESIGN_SECONDS, "60", 60),
        (config.BUCKET_ENDPOINT_URL, "http://127.0.0.1:8333", "http://127.0.0.1:8333"),
        (
            config.EXTRA_INDEX_URLS,
            "file:///opt/pypi-more/simple, https://download.pytorch.org/whl/cpu",
            ("file:///opt/pypi-more/simple", "https://download.pytorch.org/whl/cpu"),
        ),
    ],
)
def test_settings_parse(setting, raw, value):
    assert setting.get({setting.name: raw}) == value


@pytest.mark.parametrize(
    ("setting", "raw"),
    [
        (config.JOB_TIMEOUT_S, "soon"),
        (config.MAX_RUNNERS, "0"),
        (config.MAX_RUNNERS, "-2"),
        (config.LOG_LEVEL, "VERBOSE"),
        (config.BUCKET_ADDRESSING_STYLE, "bogus"),
        (config.PRESIGN_SECONDS, "10"),
        (config.PRESIGN_SECONDS, "604801"),
        (config.BUCKET_ENDPOINT_URL, "localhost:9000"),
        (config.BUCKET_ENDPOINT_URL, "https://"),
        (config.INDEX_URL, "ftp://mirror.example/simple"),
        (config.EXTRA_INDEX_URLS, "https://ok.example/simple,not a url"),
    ],
)
def test_bad_values_name_the_variable(setting, raw):
    with pytest.raises(config.ConfigError, match=rf"^{setting.name}='{re.escape(raw)}' is invalid"):
        setting.get({setting.name: raw})


def test_credentials_in_a_bad_url_are_not_quoted():
    with pytest.raises(config.ConfigError) as info:
        config.INDEX_URL.get({"MEDIA_WORKER_INDEX_URL": "ftp://user:hunter2@mirror.example/"})
    assert "hunter2" not in str(info.value) and "<redacted>@mirror.example" in str(info.value)


def test_presign_range_is_the_contracts():
    from models import contract

    low, high = contract.MIN_PRESIGN_S, contract.MAX_PRESIGN_S
    assert config.PRESIGN_SECONDS.get({config.PRESIGN_SECONDS.name: str(low)}) == low
    assert config.PRESIGN_SECONDS.get({config.PRESIGN_SECONDS.name: str(high)}) == high
    for outside in (low - 1, high + 1):
        with pytest.raises(config.ConfigError):
            config.PRESIGN_SECONDS.get({config.PRESIGN_SECONDS.name: str(outside)})


def test_secret_values_are_redacted_in_errors():
    secret = config.Setting("X_SECRET", 0, int, "test", secret=True)
    with pytest.raises(config.ConfigError) as info:
        secret.get({"X_SECRET": "hunter2"})
    assert "hunter2" not in str(info.value) and "<redacted>" in str(info.value)


@pytest.mark.parametrize(
    ("env", "mounted", "image_envs", "home", "envs", "outputs"),
    [
        (
            {},
            False,
            False,
            "~/.cache/media-worker",
            "~/.cache/media-worker/local-envs",
            "CWD/outputs",
        ),
        (
            {},
            True,
            True,
            "/runpod-volume/media-worker",
            "/opt/media-worker/envs",
            "/runpod-volume/media-worker/outputs",
        ),
        (
            {"MEDIA_WORKER_HOME": "/workspace/mw"},
            True,
            True,
            "/workspace/mw",
            "/opt/media-worker/envs",
            "/workspace/mw/outputs",
        ),
        (
            {"MEDIA_WORKER_ENVS_DIR": "/fast", "MEDIA_WORKER_OUTPUT_DIR": "/out"},
            True,
            False,
            "/runpod-volume/media-worker",
            "/fast",
            "/out",
        ),
    ],
)
def test_resolve_paths_precedence(env, mounted, image_envs, home, envs, outputs):
    paths = config.resolve_paths(env, volume_mounted=mounted, image_envs_writable=image_envs)

    def expand(text: str) -> Path:
        return Path(text.replace("CWD", str(Path.cwd()))).expanduser()

    assert (paths.home, paths.envs, paths.outputs) == (expand(home), expand(envs), expand(outputs))


_PARENT = {
    "PATH": "/usr/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp/x",
    "LD_LIBRARY_PATH": "/usr/local/nvidia/lib64",
    "CUDA_VISIBLE_DEVICES": "0",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    "HF_HUB_OFFLINE": "1",
    "HF_TOKEN": "hf_secret",
    "BUCKET_SECRET_ACCESS_KEY": "bucket-secret",
    "BUCKET_ACCESS_KEY_ID": "bucket-id",
    "BUCKET_ENDPOINT_URL": "https://s3.example",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "RUNPOD_AI_API_KEY": "runpod-key",
    "MEDIA_WORKER_JOB_TIMEOUT_S": "60",
    "MEDIA_WORKER_INDEX_URL": "https://u:p@mirror.example/simple",
    "MEDIA_WORKER_EXTRA_INDEX_URLS": "https://u:p@torch.example/whl",
    "UV_FIND_LINKS": "/opt/wheels",
    "UV_CACHE_DIR": "/cache/uv",
    "PIP_INDEX_URL": "https://pypi.example/simple",
    "HTTPS_PROXY": "http://proxy:3128",
    "DATABASE_PASSWORD": "other-secret",
}
_RUNNER_SEES = {
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "HF_HUB_OFFLINE",
    "MEDIA_WORKER_JOB_TIMEOUT_S",
}


@pytest.mark.parametrize(
    ("build", "sees"),
    [
        (False, _RUNNER_SEES),
        (True, _RUNNER_SEES | {"UV_FIND_LINKS", "UV_CACHE_DIR", "PIP_INDEX_URL", "HTTPS_PROXY"}),
    ],
)
def test_child_environ_is_an_allow_list(build, sees):
    child = config.child_environ(_PARENT, build=build)
    assert set(child) == sees
    assert all(child[name] == _PARENT[name] for name in child)
