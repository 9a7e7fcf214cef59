"""publish(): local store, S3 on SeaweedFS (presigned URLs, multipart), and the
fallback that keeps outputs locally when S3 fails."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import resource
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from errors import InvalidInput, StorageFailed
from runtime.protocol import OutputFile
from storage import Published, publish, s3_settings
from storage import _s3 as s3_module
from storage._publish import key_job_id
from storage._scratch import safe_job_id
from tests.fixtures.s3 import ALLOW_PRIVATE, make_bucket, settings_for

MiB = 1024 * 1024


def _artifact(directory: Path, name: str, size: int, content_type: str = "audio/wav") -> OutputFile:
    path = directory / name
    path.write_bytes(os.urandom(size))
    return OutputFile(str(path), content_type, duration_s=1.5)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # plain HTTP client
        return response.read(), response.headers.get("Content-Type", "")


def _all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    monkeypatch.setenv("MEDIA_WORKER_OUTPUT_DIR", str(root))
    return root


# --- local store -------------------------------------------------------------------------


def test_local_store(outputs: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="storage")
    a = _artifact(tmp_path, "speech.wav", 3000)
    b = _artifact(tmp_path, "speech.mp3", 10, "audio/mpeg")
    result = publish("job-7", [a, b], s3=None, prefix="team/x/")
    data = Path(a.path).read_bytes()
    assert result[0] == Published(
        url=(outputs / "team/x/jobs/job-7/speech.wav").as_uri(),
        key="team/x/jobs/job-7/speech.wav",
        content_type="audio/wav",
        bytes=3000,
        sha256=_sha(data),
        duration_s=1.5,
    )
    assert (outputs / result[0].key).read_bytes() == data
    assert result[1].key == "team/x/jobs/job-7/speech.mp3"
    assert _all_files(outputs) == ["team/x/jobs/job-7/speech.mp3", "team/x/jobs/job-7/speech.wav"]
    assert "job=job-7 publish ok store=local files=2 bytes=3010" in caplog.text


def test_job_ids_that_once_shared_a_key_keep_both_outputs(outputs: Path, tmp_path: Path) -> None:
    # "a/b" was cleaned to "a_b", so the second job's speech.wav replaced the first's.
    first = _artifact(tmp_path, "speech.wav", 100)
    [out_a] = publish("a/b", [first], s3=None)
    (tmp_path / "second").mkdir()
    second = _artifact(tmp_path / "second", "speech.wav", 200)
    [out_b] = publish("a_b", [second], s3=None)
    assert out_a.key != out_b.key and out_b.key == "jobs/a_b/speech.wav"
    assert (outputs / out_a.key).read_bytes() == Path(first.path).read_bytes()
    assert (outputs / out_b.key).read_bytes() == Path(second.path).read_bytes()


@pytest.mark.parametrize(
    ("job_id", "key_id"),
    [
        ("local_test", "local_test-20261204T163907Z-ab12"),  # the SDK's id for local runs
        ("job-7", "job-7"),
        ("local_test_2", "local_test_2"),  # an id a caller chose is kept as it is
        ("a/b", safe_job_id("a/b")),
    ],
)
def test_key_job_id(job_id: str, key_id: str) -> None:
    assert key_job_id(job_id, now=1796402347.9, token="ab12") == key_id


def test_two_local_runs_keep_both_outputs(outputs: Path, tmp_path: Path, caplog) -> None:
    """Every ``python handler.py`` run is job "local_test": the second run wrote over
    the first one's speech.wav without a word."""
    first = _artifact(tmp_path, "speech.wav", 100)
    [out_1] = publish("local_test", [first], s3=None)
    (tmp_path / "second").mkdir()
    second = _artifact(tmp_path / "second", "speech.wav", 200)
    [out_2] = publish("local_test", [second], s3=None)
    assert out_1.key != out_2.key
    assert re.fullmatch(r"jobs/local_test-\d{8}T\d{6}Z-[0-9a-f]{4}/speech\.wav", out_2.key)
    assert (outputs / out_1.key).read_bytes() == Path(first.path).read_bytes()
    assert (outputs / out_2.key).read_bytes() == Path(second.path).read_bytes()
    assert "replaces" not in caplog.text


def test_a_reused_job_id_says_in_the_log_that_it_replaced_an_output(
    outputs: Path, tmp_path: Path, caplog
) -> None:
    [out] = publish("job-7", [_artifact(tmp_path, "speech.wav", 100)], s3=None)
    assert "replaces" not in caplog.text
    (tmp_path / "again").mkdir()
    again = _artifact(tmp_path / "again", "speech.wav", 200)
    publish("job-7", [again], s3=None)
    assert f"job=job-7 output {out.key} replaces an earlier file of that key" in caplog.text
    assert (outputs / out.key).read_bytes() == Path(again.path).read_bytes()


def test_local_store_default_root_is_under_home(tmp_path: Path) -> None:
    # conftest points MEDIA_WORKER_HOME at a temp dir; outputs live in <home>/outputs.
    [out] = publish("j", [_artifact(tmp_path, "a.wav", 5)], s3=None)
    assert (
        Path(urlsplit(out.url).path)
        == Path(os.environ["MEDIA_WORKER_HOME"]) / "outputs/jobs/j/a.wav"
    )


def test_hostile_job_id_cannot_escape(outputs: Path, tmp_path: Path) -> None:
    [out] = publish("../../x", [_artifact(tmp_path, "a.wav", 5)], s3=None)
    assert out.key == f"jobs/{safe_job_id('../../x')}/a.wav"
    assert out.key.startswith("jobs/_.._x~")
    assert Path(urlsplit(out.url).path).is_relative_to(outputs)


@pytest.mark.parametrize("prefix", ["../up", "a/../../b", "/abs/path", "a\\b", "a//b", ".."])
def test_bad_prefix_names_the_field_and_writes_nothing(
    outputs: Path, tmp_path: Path, prefix: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        publish("j", [_artifact(tmp_path, "a.wav", 5)], s3=None, prefix=prefix)
    assert info.value.field == "output.prefix"
    assert not outputs.exists()


@pytest.mark.parametrize("seconds", [0, 59, 604801, 10**9, -5, True, 3600.0, "3600"])
def test_presign_lifetime_out_of_range(tmp_path: Path, seconds: object) -> None:
    with pytest.raises(InvalidInput) as info:
        publish("j", [_artifact(tmp_path, "a.wav", 5)], s3=None, presign_seconds=seconds)  # type: ignore[arg-type]
    assert info.value.field == "output.presign_seconds"


def test_presign_default_out_of_range_is_a_config_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_WORKER_PRESIGN_SECONDS", "999999")
    with pytest.raises(StorageFailed, match="MEDIA_WORKER_PRESIGN_SECONDS"):
        publish("j", [_artifact(tmp_path, "a.wav", 5)], s3=None)


def test_duplicate_names_are_a_programming_error(outputs: Path, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    a, b = _artifact(tmp_path, "a.wav", 5), _artifact(tmp_path / "d", "a.wav", 5)
    with pytest.raises(ValueError, match=r"a\.wav"):
        publish("j", [a, b], s3=None)


def test_failed_local_copy_leaves_nothing_that_looks_valid(outputs: Path, tmp_path: Path) -> None:
    big = _artifact(tmp_path, "big.wav", 2 * MiB)
    # A real write failure: the kernel refuses to grow any file past 1 MiB (EFBIG;
    # Python ignores SIGXFSZ). The copy gets half way, then must be cleaned up.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, hard))
    try:
        with pytest.raises(StorageFailed, match="local store") as info:
            publish("j", [big], s3=None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.field == "output"
    assert _all_files(outputs) == []


# --- S3 ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_s3_publish_and_presigned_download(s3_server, s3_bucket, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wav = _artifact(tmp_path, "speech.wav", 50_000)
    mp4 = _artifact(tmp_path, "clip.mp4", 2000, "video/mp4")
    result = publish("job-s3", [wav, mp4], s3=s3_bucket, prefix="p/q", presign_seconds=120)
    for artifact, out in zip([wav, mp4], result, strict=True):
        assert out.key == f"p/q/jobs/job-s3/{Path(artifact.path).name}"
        body, content_type = _download(out.url)
        assert body == Path(artifact.path).read_bytes()
        assert content_type == artifact.content_type == out.content_type
        assert (out.bytes, out.sha256) == (len(body), _sha(body))
        query = parse_qs(urlsplit(out.url).query)
        assert query["X-Amz-Expires"] == ["120"]
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    head = s3_server.client().head_object(Bucket=s3_bucket.bucket, Key=result[0].key)
    assert head["Metadata"] == {"sha256": result[0].sha256}
    assert "job=job-s3 publish ok store=s3 files=2 bytes=52000" in caplog.text
    text = caplog.text + repr(result) + repr(s3_bucket) + str(s3_bucket)
    assert s3_server.secret_key not in text


@pytest.mark.slow
def test_s3_presign_default_from_config(monkeypatch, s3_bucket, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_WORKER_PRESIGN_SECONDS", "900")
    [out] = publish("j", [_artifact(tmp_path, "a.wav", 10)], s3=s3_bucket)
    assert parse_qs(urlsplit(out.url).query)["X-Amz-Expires"] == ["900"]
    assert _download(out.url)[0] == (tmp_path / "a.wav").read_bytes()


@pytest.mark.slow
def test_s3_multipart_upload(monkeypatch, s3_server, s3_bucket, tmp_path: Path) -> None:
    # s3transfer's smallest part is 5 MiB; 11 MiB at a 5 MiB threshold makes 3 parts.
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD_BYTES", 5 * MiB)
    monkeypatch.setattr(s3_module, "MULTIPART_CHUNK_BYTES", 5 * MiB)
    big = _artifact(tmp_path, "long.wav", 11 * MiB)
    [out] = publish("j-mp", [big], s3=s3_bucket)
    head = s3_server.client().head_object(Bucket=s3_bucket.bucket, Key=out.key)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object's ETag: <md5>-<parts>
    assert head["ContentType"] == "audio/wav"
    body, _ = _download(out.url)
    assert _sha(body) == out.sha256 == _sha(Path(big.path).read_bytes())


@pytest.mark.slow
def test_s3_below_threshold_is_single_part(s3_server, s3_bucket, tmp_path: Path) -> None:
    [out] = publish("j", [_artifact(tmp_path, "a.wav", MiB)], s3=s3_bucket)
    head = s3_server.client().head_object(Bucket=s3_bucket.bucket, Key=out.key)
    assert "-" not in head["ETag"]


@pytest.mark.slow
def test_server_itself_rejects_presign_over_a_week(s3_server, s3_bucket, tmp_path: Path) -> None:
    # Why publish validates the lifetime up front: past 7 days the URL is dead on arrival.
    [out] = publish("j", [_artifact(tmp_path, "a.wav", 10)], s3=s3_bucket)
    url = s3_server.client().generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket.bucket, "Key": out.key}, ExpiresIn=700_000
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        _download(url)
    info.value.close()
    assert info.value.code in (400, 403)


@pytest.mark.slow
def test_s3_stopped_mid_run_keeps_outputs_locally(
    start_s3, outputs: Path, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_s3()
    settings = make_bucket(server)
    first = _artifact(tmp_path, "a.wav", 4000)
    [ok] = publish("j1", [first], s3=settings)  # works while the server runs
    assert _download(ok.url)[0] == Path(first.path).read_bytes()

    server.kill()
    arts = [_artifact(tmp_path, "b.wav", 70_000), _artifact(tmp_path, "c.mp4", 10, "video/mp4")]
    with pytest.raises(StorageFailed) as info:
        publish("j2", arts, s3=settings, prefix="pre")
    err = info.value
    message = str(err)
    assert err.field == "output"
    assert "upload of 'pre/jobs/j2/b.wav'" in message
    assert settings.endpoint_host in message and settings.bucket in message
    assert "EndpointConnectionError" in message
    assert [d["local_path"] for d in err.details] == [
        str(outputs / "pre/jobs/j2/b.wav"),
        str(outputs / "pre/jobs/j2/c.mp4"),
    ]
    for artifact, detail in zip(arts, err.details, strict=True):
        assert detail["field"] == "output"
        kept = Path(detail["local_path"]).read_bytes()
        assert _sha(kept) == _sha(Path(artifact.path).read_bytes())
    assert _all_files(outputs) == ["pre/jobs/j2/b.wav", "pre/jobs/j2/c.mp4"]
    text = caplog.text + message + repr(err) + repr(err.details) + repr(settings)
    assert server.secret_key not in text


@pytest.mark.slow
def test_s3_wrong_secret_falls_back_without_leaking(
    s3_server, s3_bucket, outputs, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-for-publish-0123"
    bad = settings_for(s3_server, s3_bucket.bucket, secret=wrong)
    with pytest.raises(StorageFailed, match="SignatureDoesNotMatch") as info:
        publish("j", [_artifact(tmp_path, "a.wav", 10)], s3=bad)
    assert Path(info.value.details[0]["local_path"]).is_file()
    text = caplog.text + str(info.value) + repr(info.value.details) + repr(bad)
    assert wrong not in text and s3_server.secret_key not in text


@pytest.mark.slow
def test_s3_missing_bucket_falls_back(s3_server, outputs: Path, tmp_path: Path) -> None:
    settings = s3_settings(
        {"accessId": s3_server.access_key, "accessSecret": s3_server.secret_key,
         "bucketName": "no-such-bucket-here", "endpointUrl": s3_server.endpoint_url},
        ALLOW_PRIVATE,
    )  # fmt: skip
    with pytest.raises(StorageFailed, match="NoSuchBucket"):
        publish("j", [_artifact(tmp_path, "a.wav", 10)], s3=settings)
    assert _all_files(outputs) == ["jobs/j/a.wav"]
