"""config.py: parsing, path precedence, and docs/reference/configuration.md kept in sync.

The settings are config.py's and those the runner modules declare: ``registry.SETTINGS``.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import config
from models import registry
from runners import upscale
from tests.fixtures.tiers import small_tmpfs

ROOT = Path(__file__).resolve().parents[1]


def test_readme_configuration_table_is_generated_from_config():
    table = config.markdown_table(registry.SETTINGS)
    assert table in (ROOT / "docs/reference/configuration.md").read_text(), (
        "docs/reference/configuration.md is stale: paste `python -m models settings` into it"
    )


def test_the_settings_command_prints_every_setting_runners_included():
    printed = subprocess.run(
        [sys.executable, "-m", "models", "settings"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == config.markdown_table(registry.SETTINGS) + "\n"
    assert f"| `{upscale.TILE.name}` |" in printed


def test_every_setting_is_documented_once_by_the_module_that_owns_it():
    names = [s.name for s in registry.SETTINGS]
    assert len(names) == len(set(names))
    assert all(s.doc.strip() for s in registry.SETTINGS)
    assert {s.owner for s in registry.SETTINGS} >= {"config", "runners.upscale"}
    for setting in registry.SETTINGS:  # the table groups by owner: it must be true
        owner = importlib.import_module(setting.owner)
        assert any(v is setting for v in vars(owner).values()), setting.name


def test_a_setting_is_declared_once():
    with pytest.raises(ValueError, match="MEDIA_WORKER_UPSCALE_TILE is declared already"):
        config.declare(upscale.TILE.name, 1, int, "a second owner", owner="tests")
    assert [s.name for s in config.SETTINGS].count(upscale.TILE.name) == 1


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


def test_presign_range_is_storages():
    import storage

    low, high = storage.MIN_PRESIGN_S, storage.MAX_PRESIGN_S
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


# --- Hostile values: every declared setting, by kind (issue 20) -----------------------
# NaN passes a "> 0" check (every comparison with NaN is false) and then switches a cap
# off; a relative or file path fails every job later. Each kind's hostile values must be
# refused at parse time, naming the variable. Empty means unset (the Hub's form sends ""
# for a blank optional field), so it is not hostile.

_NOT_A_NUMBER = st.sampled_from(
    ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", "-1e400", "abc", "1,5", "0x10"]
)
_HOSTILE_FLOATS = (
    _NOT_A_NUMBER
    | st.floats(max_value=0, allow_nan=False).map(repr)
    | st.floats(min_value=config.MAX_SETTING_SECONDS * 1.0001, allow_infinity=False).map(repr)
)
_HOSTILE_INTS = (
    _NOT_A_NUMBER
    | st.sampled_from(["1.5", "1e3", "2 3"])
    | st.integers(max_value=-1).map(str)
    | st.integers(min_value=1 << 41).map(str)
)
_HOSTILE_PATHS = st.sampled_from(["outputs", "./scratch", "../up", "~user-that-is-not/x", "a/b"])
_HOSTILE_REVISIONS = st.sampled_from(["main", "v1.0", "HEAD", "0" * 39, "0" * 41, "g" * 40]) | (
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=80).filter(lambda t: len(t) != 40)
)
_HOSTILE_FLAGS = st.sampled_from(["maybe", "2", "-1", "nan", "enabled", "y"])

# Settings whose value is free text, checked elsewhere (a model name against the
# registry at start, a repo id or key by the service that reads it).
_FREE_TEXT = {
    "MEDIA_WORKER_DEFAULT_TTS_MODEL",
    "MEDIA_WORKER_DEFAULT_TRANSCRIBE_MODEL",
    "MEDIA_WORKER_UPSCALE_REPO",
    "MEDIA_WORKER_UPSCALE_FILE",
    "MEDIA_WORKER_SEEDVR2_REPO",
    "BUCKET_ACCESS_KEY_ID",
    "BUCKET_SECRET_ACCESS_KEY",
    "BUCKET_NAME",
    "BUCKET_REGION",
    "HF_TOKEN",
}


def _hostile(setting: config.Setting) -> st.SearchStrategy[str] | None:
    """Hostile raw values for ``setting``, by its kind (its default's type, its parser)."""
    if isinstance(setting.default, bool):
        return _HOSTILE_FLAGS
    if isinstance(setting.default, float):
        return _HOSTILE_FLOATS
    if isinstance(setting.default, int):
        return _HOSTILE_INTS
    if setting.parse is config.parse_directory:
        return _HOSTILE_PATHS
    if setting.parse is config.parse_revision:
        return _HOSTILE_REVISIONS
    if setting.name == "MEDIA_WORKER_RESTORE_ENCODER":
        return st.sampled_from(["abc", "h264", "libx265", "nvenc", "x264"])
    return None


_ATTACKED = [s for s in registry.SETTINGS if _hostile(s) is not None]


def test_every_setting_has_a_kind_or_is_free_text():
    # A new setting parsed with plain str must be declared free text here on purpose;
    # numbers, flags and paths get hostile values by their kind automatically.
    assert {"runners.upscale", "runners.seedvr2", "runners.whisper"} <= {
        s.owner for s in _ATTACKED
    }, "the settings runner modules declare are attacked too"
    free = {s.name for s in registry.SETTINGS if s.parse is str}
    assert free <= _FREE_TEXT, f"give these settings a parser by kind: {free - _FREE_TEXT}"
    for setting in registry.SETTINGS:
        if setting.parse is str:
            assert _hostile(setting) is None, setting.name


@pytest.mark.parametrize("setting", _ATTACKED, ids=lambda s: s.name)
@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_hostile_values_are_refused_naming_the_variable(setting, data):
    raw = data.draw(_hostile(setting))
    with pytest.raises(config.ConfigError, match=rf"^{re.escape(setting.name)}=.* is invalid"):
        setting.get({setting.name: raw})


@pytest.mark.parametrize("setting", _ATTACKED, ids=lambda s: s.name)
@pytest.mark.parametrize("raw", ["", "   "])
def test_an_empty_setting_is_unset(setting, raw):
    assert setting.get({setting.name: raw}) == setting.default


@pytest.mark.parametrize(
    ("setting", "raw", "value"),
    [
        (config.JOB_TIMEOUT_S, "1e-3", 0.001),
        (config.JOB_TIMEOUT_S, str(config.MAX_SETTING_SECONDS), config.MAX_SETTING_SECONDS),
        (config.RESTORE_CRF, "0", 0),
        (config.RESTORE_CRF, "51", 51),
        (config.RESTORE_ENCODER, "H264_NVENC", "h264_nvenc"),
        (upscale.REVISION, "ABCDEF0123" * 4, "abcdef0123" * 4),
        (upscale.TILE, "0", 0),
        (config.SCRATCH_DIR, "/scratch", "/scratch"),
    ],
)
def test_edge_values_of_each_kind_parse(setting, raw, value):
    assert setting.get({setting.name: raw}) == value


def test_home_directory_settings_expand_the_tilde():
    assert config.HOME.get({config.HOME.name: "~/mw"}) == str(Path("~/mw").expanduser())


@pytest.mark.parametrize("setting", config._WRITTEN_DIRECTORIES, ids=lambda s: s.name)
def test_a_written_directory_that_is_a_file_is_refused(setting, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for value in (afile, afile / "below"):
        with pytest.raises(config.ConfigError, match=rf"^{setting.name}=.*is a file"):
            config.check_directories({setting.name: str(value)})
    config.check_directories({setting.name: str(tmp_path / "new" / "dir")})  # made later


@pytest.mark.slow
def test_an_unwritable_directory_is_refused(tmp_path):
    # a read-only file system: mode bits would not stop root, which CI runs as
    with small_tmpfs(tmp_path / "ro", "1m", read_only=True) as locked:
        for value in (locked, locked / "x"):
            with pytest.raises(config.ConfigError, match="ro is not writable"):
                config.check_directories({config.SCRATCH_DIR.name: str(value)})


def test_a_read_directory_that_is_a_file_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(config.ConfigError, match=r"MEDIA_WORKER_CACHED_MODELS_DIR=.*is a file"):
        config.check_directories({config.CACHED_MODELS_DIR.name: str(afile)})
    config.check_directories({config.CACHED_MODELS_DIR.name: str(tmp_path / "absent")})
