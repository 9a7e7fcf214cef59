"""s3_settings(): precedence, completeness, region inference, secret hiding, and the
address policy for a request's endpoint.

No DNS answers here, so tests about parsing set MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS
(``ALLOW``: the policy is off, nothing is resolved); policy tests use IP literals and
``localhost``, which resolve without a network, and a real sink on loopback.
"""

from __future__ import annotations

import pytest

from errors import InvalidInput, StorageFailed
from storage import S3Settings, s3_settings
from storage._s3 import endpoint_refusal, region_from_endpoint

SECRET = "s3cr3t-never-shown-0123456789"
REQUEST = {
    "accessId": "AKIDREQ",
    "accessSecret": SECRET,
    "bucketName": "req-bucket",
    "endpointUrl": "https://s3.eu-west-1.amazonaws.com",
}
ALLOW = {"MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS": "1"}
ENV = {
    **ALLOW,
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
    assert s3_settings({**REQUEST, "region": "us-west-2"}, ALLOW).region == "us-west-2"
    # An explicit BUCKET_REGION beats what the host implies.
    assert s3_settings(REQUEST, {**ALLOW, "BUCKET_REGION": "eu-central-1"}).region == "eu-central-1"
    plain = {**REQUEST, "endpointUrl": "http://127.0.0.1:8333"}
    assert s3_settings(plain, ALLOW).region == "us-east-1"


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
        s3_settings(config, ALLOW)  # type: ignore[arg-type]
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
        s3_settings(REQUEST, {**ALLOW, "BUCKET_ADDRESSING_STYLE": "sideways"})
    virtual = s3_settings(REQUEST, {**ALLOW, "BUCKET_ADDRESSING_STYLE": "Virtual"})
    assert virtual.addressing_style == "virtual"


def test_secret_never_in_repr_or_str() -> None:
    for s in (s3_settings(REQUEST, ALLOW), s3_settings(None, ENV)):
        for text in (repr(s), str(s), repr(s.secret_access_key), f"{s}", str(vars(s))):
            assert SECRET not in text


# --- the address policy of a request's endpoint --------------------------------------


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (["52.95.150.1"], None),
        (["2600:1f18::1"], None),
        (["127.0.0.1"], "127.0.0.1"),
        (["52.95.150.1", "10.0.0.7"], "10.0.0.7"),  # one private answer is enough
        (["169.254.169.254"], "169.254.169.254"),
        (["192.168.1.5"], "192.168.1.5"),
        (["100.64.0.1"], "100.64.0.1"),
        (["::1"], "::1"),
        (["::ffff:10.0.0.1"], "::ffff:10.0.0.1"),
        ([], "no address"),
    ],
)
def test_endpoint_refusal(addresses: list[str], refused: str | None) -> None:
    reason = endpoint_refusal("s3.example", addresses)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8333",
        "http://localhost:9000",
        "http://169.254.169.254",
        "https://10.1.2.3",
        "http://[::1]:9000",
        "http://[::ffff:127.0.0.1]:9000",
        "http://0.0.0.0:9000",
    ],
)
def test_request_endpoint_on_a_private_address_is_refused(endpoint: str) -> None:
    with pytest.raises(InvalidInput) as info:
        s3_settings({**REQUEST, "endpointUrl": endpoint}, {})
    assert info.value.field == "s3Config.endpointUrl"
    assert "MEDIA_WORKER_ALLOW_PRIVATE_S3_ENDPOINTS" in info.value.message
    assert SECRET not in str(info.value)


def test_request_endpoint_allowed_when_the_operator_says_so() -> None:
    s = s3_settings({**REQUEST, "endpointUrl": "http://127.0.0.1:8333"}, ALLOW)
    assert s is not None and s.endpoint_url == "http://127.0.0.1:8333"


def test_public_ip_literal_endpoint_passes_without_dns() -> None:
    s = s3_settings({**REQUEST, "endpointUrl": "https://52.95.150.1"}, {})
    assert s is not None and s.source == "request"


def test_unresolvable_request_endpoint_is_refused() -> None:
    with pytest.raises(InvalidInput, match="could not resolve") as info:
        s3_settings({**REQUEST, "endpointUrl": "https://no-such-host.invalid"}, {})
    assert info.value.field == "s3Config.endpointUrl"


def test_env_endpoint_on_loopback_stays_trusted() -> None:
    env = {k: v for k, v in ENV.items() if k not in ALLOW}
    s = s3_settings(None, {**env, "BUCKET_ENDPOINT_URL": "http://127.0.0.1:8333"})
    assert s is not None and s.endpoint_url == "http://127.0.0.1:8333"
