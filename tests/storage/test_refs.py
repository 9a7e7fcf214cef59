"""parse_media_ref and validate_prefix: pure tables."""

from __future__ import annotations

import pytest

from errors import InvalidInput
from storage import MediaRef, parse_media_ref, validate_prefix


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com/a.wav", MediaRef("https", "f", url="https://example.com/a.wav")),
        ("HTTPS://example.com/a", MediaRef("https", "f", url="HTTPS://example.com/a")),
        ("  https://example.com/x?sig=1 ", MediaRef("https", "f", url="https://example.com/x?sig=1")),
        ("s3://my-bucket/in/ref.wav", MediaRef("s3", "f", bucket="my-bucket", key="in/ref.wav")),
        ("s3://b.dot.ted/k", MediaRef("s3", "f", bucket="b.dot.ted", key="k")),
        ("data:audio/wav;base64,UklGRg==",
         MediaRef("data", "f", media_type="audio/wav", data="UklGRg==")),
        ("data:;base64,AAAA", MediaRef("data", "f", media_type="", data="AAAA")),
        ("data:audio/ogg;codecs=opus;base64,AAAA",
         MediaRef("data", "f", media_type="audio/ogg", data="AAAA")),
    ],
)  # fmt: skip
def test_parse_accepts(value: str, expected: MediaRef) -> None:
    assert parse_media_ref(value, field="f") == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "example.com/a.wav",
        "http://example.com/a.wav",
        "file:///etc/passwd",
        "ftp://example.com/a.wav",
        "gopher://example.com/",
        "https://",
        "https:///path",
        "https://user:pw@example.com/a.wav",
        "https://example.com:99999/a",
        "https://exa mple.com/a",
        "https://example.com/a\nb",
        "s3://",
        "s3:///key",
        "s3://bucket",
        "s3://bucket/",
        "s3://bucket/dir/",
        "s3://b/key",  # bucket names are 3..63 chars
        "s3://bad_bucket!/key",
        "data:audio/wav,UklGRg==",  # not base64-encoded
        "data:audio/wav;base64",  # no payload separator
        "data:audio/wav;base64,",
        "data:audio/wav;base64,UklGRg=",  # length not a multiple of 4
        "data:audio/wav;base64,Ukl GRg==",
        "data:audio/wav;base64,UklG\nRg==",
        "data:audio/wav;base64,Ukl-Rg__",  # urlsafe alphabet
        "data:audio/wav;base64,=AAA",
        "data:not a type;base64,AAAA",
        "https://" + "a" * 9000 + ".com/",
    ],
)
def test_parse_rejects_with_field(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_media_ref(value, field="reference_audio")
    assert info.value.field == "reference_audio"
    assert info.value.message.startswith("reference_audio: ")
    assert info.value.details == [{"field": "reference_audio", "message": info.value.message}]


def test_parse_rejects_non_string() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_media_ref(123, field="video")  # type: ignore[arg-type]
    assert info.value.field == "video"


def test_data_payload_is_not_in_repr_and_describe_hides_query() -> None:
    ref = parse_media_ref("data:audio/wav;base64," + "QUJD" * 1000, field="f")
    assert "QUJD" not in repr(ref)
    assert ref.describe() == "data:audio/wav (4000 base64 chars)"
    url = parse_media_ref("https://h.example/a.wav?X-Amz-Signature=abc", field="f")
    assert url.describe() == "https://h.example/a.wav"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", ""),
        ("team", "team"),
        ("team/a/", "team/a"),
        ("team/a///", "team/a"),
        ("2024-05/run 1", "2024-05/run 1"),
        ("a.b/..c/c..", "a.b/..c/c.."),
        ("x" * 255 + "/y", "x" * 255 + "/y"),
        ("é" * 127, "é" * 127),  # 254 bytes
    ],
)
def test_validate_prefix_accepts(prefix: str, expected: str) -> None:
    assert validate_prefix(prefix) == expected


@pytest.mark.parametrize(
    "prefix",
    [
        "..",
        "../x",
        "a/../b",
        "a/..",
        "./a",
        "a/./b",
        "/abs",
        "/",
        "//x",
        "C:/x",
        "a\\b",
        "a//b",
        "a/\x00b",
        "a/\nb",
        "a/\x7f",
        " a/b",
        "x" * 600,
        "x" * 256,
        "team/" + "é" * 128,  # 128 characters, 256 bytes
    ],
)
def test_validate_prefix_rejects_naming_field(prefix: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_prefix(prefix)
    assert info.value.field == "output.prefix"
    with pytest.raises(InvalidInput) as info:
        validate_prefix(prefix, field="prefix")
    assert info.value.field == "prefix"
