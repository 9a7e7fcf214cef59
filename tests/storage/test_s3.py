"""s3_settings(): precedence, completeness, region inference, secret hiding."""

from __future__ import annotations

import pytest

from errors import InvalidInput, StorageFailed
from storage import S3Settings, s3_settings
from storage._s3 import region_from_endpoint

SECRET = "s3cr3t-never-shown-0123456789"
REQUEST = {
    "accessId": "AKIDREQ",
    "accessSecret": SECRET,
    "bucketName": "req-bucket",
    "endpointUrl": "https://s3.eu-west-1.amazonaws.com",
}
ENV = {
    "BUCKET_ENDPOINT_URL": "https://minio.example:9000/",
    "BUCKET_ACCESS_KEY_ID": "AKIDENV",
    "BUCKET_SECRET_ACCESS_KEY": SECRET,
    "BUCKET_NAME": "env-bucket",
}


def test_nothing_configured_means_local_store() -> None:
    assert s3_settings(None, {}) is None


def test_env_settings() -> None:
    s = s3_settings(None, ENV)
    assert s == S3Settings(
        endpoint_url="https://minio.example:9000",
        bucket="env-bucket",
        access_key_id="AKIDENV",
        secret_access_key=s.secret_access_key,
        region="us-east-1",
        addressing_style="path",
        source="env",
    )
    assert s.secret_access_key.get_secret_value() == SECRET
    assert s.endpoint_host == "minio.example:9000"


def test_request_wins_over_env() -> None:
    s = s3_settings(REQUEST, ENV)
    assert s is not None
    assert (s.bucket, s.access_key_id, s.source) == ("req-bucket", "AKIDREQ", "request")
    assert s.region == "eu-west-1"  # from the AWS endpoint host


def test_region_precedence() -> None:
    assert s3_settings({**REQUEST, "region": "us-west-2"}, {}).region == "us-west-2"
    # An explicit BUCKET_REGION beats what the host implies.
    assert s3_settings(REQUEST, {"BUCKET_REGION": "eu-central-1"}).region == "eu-central-1"
    plain = {**REQUEST, "endpointUrl": "http://127.0.0.1:8333"}
    assert s3_settings(plain, {}).region == "us-east-1"


@pytest.mark.parametrize(
    ("endpoint", "region"),
    [
        ("https://s3.us-west-2.amazonaws.com", "us-west-2"),
        ("https://s3-eu-west-1.amazonaws.com", "eu-west-1"),
        ("https://bucket.s3.ap-southeast-2.amazonaws.com", "ap-southeast-2"),
        ("https://s3.dualstack.us-east-2.amazonaws.com", "us-east-2"),
        ("https://s3.us-west-004.backblazeb2.com", "us-west-004"),
        ("https://acct.r2.cloudflarestorage.com", "auto"),
        ("https://nyc3.digitaloceanspaces.com", "nyc3"),
        ("https://s3.amazonaws.com", None),
        ("http://127.0.0.1:9000", None),
    ],
)
def test_region_from_endpoint(endpoint: str, region: str | None) -> None:
    assert region_from_endpoint(endpoint) == region


@pytest.mark.parametrize("missing", ["accessId", "accessSecret", "bucketName", "endpointUrl"])
def test_incomplete_request_names_the_key(missing: str) -> None:
    config = {k: v for k, v in REQUEST.items() if k != missing}
    with pytest.raises(InvalidInput) as info:
        s3_settings(config, ENV)
    assert info.value.field == f"s3Config.{missing}"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({**REQUEST, "bucketName": "  "}, "s3Config.bucketName"),
        ({**REQUEST, "accessId": 5}, "s3Config.accessId"),
        ({**REQUEST, "endpointUrl": "minio:9000"}, "s3Config.endpointUrl"),
        ({**REQUEST, "endpointUrl": "ftp://x"}, "s3Config.endpointUrl"),
        ({**REQUEST, "endpointUrl": "https://u:p@x"}, "s3Config.endpointUrl"),
        ("not an object", "s3Config"),
    ],
)
def test_malformed_request(config: object, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        s3_settings(config, {})  # type: ignore[arg-type]
    assert info.value.field == field


def test_half_configured_env_names_missing_variables() -> None:
    env = {k: v for k, v in ENV.items() if k != "BUCKET_NAME"}
    with pytest.raises(StorageFailed) as info:
        s3_settings(None, env)
    assert "BUCKET_NAME" in str(info.value)
    assert SECRET not in str(info.value)
    with pytest.raises(StorageFailed, match="BUCKET_ENDPOINT_URL"):
        s3_settings(None, {"BUCKET_NAME": "b"})


def test_bad_addressing_style() -> None:
    with pytest.raises(StorageFailed, match="BUCKET_ADDRESSING_STYLE"):
        s3_settings(REQUEST, {"BUCKET_ADDRESSING_STYLE": "sideways"})
    assert s3_settings(REQUEST, {"BUCKET_ADDRESSING_STYLE": "Virtual"}).addressing_style == (
        "virtual"
    )


def test_secret_never_in_repr_or_str() -> None:
    for s in (s3_settings(REQUEST, {}), s3_settings(None, ENV)):
        for text in (repr(s), str(s), repr(s.secret_access_key), f"{s}", str(vars(s))):
            assert SECRET not in text
