"""fetch(): https through RunPod's real SSRF guard, data: URIs, s3:// on SeaweedFS.

No public host is reachable here, so URL tests run a real HTTP(S) origin on
127.0.0.2 (loopback) and make ONLY that address count as public by wrapping
``rp_ssrf.is_safe_address``. Everything else (127.0.0.1, localhost, 10/8, 192.168/16,
169.254.169.254, file://, ftp://) still goes through the real ``safe_get`` checks,
including when reached by a redirect from the "public" origin.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from errors import FetchFailed, InvalidInput, StorageFailed, UnsupportedMedia
from storage import MediaRef, fetch, parse_media_ref, scratch
from storage import _refs as storage_refs
from storage._fetch import _fetch_url
from tests.fixtures.origin import PUBLIC_IP, self_signed_cert
from tests.fixtures.s3 import settings_for
from tests.fixtures.tiers import skip_tier, small_tmpfs

AUDIO = bytes(range(256)) * 64  # 16 KiB
CAP = 100_000
DRIP_BYTES = 200  # 10 s at one byte per 50 ms


def _can_bind(ip: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((ip, 0))
        except OSError:
            return False
    return True


@dataclass
class Origin:
    http: str
    https: str
    hits: list[str] = field(default_factory=list)
    drips: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: list[str]
    drips: list[str]

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.hits.append(self.path)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        if route in ("/voice.wav", "/voice"):
            self._send(200, AUDIO, {"Content-Type": query.get("type", "audio/wav")})
        elif route == "/no-type":
            self._send(200, AUDIO, {})
        elif route == "/page":
            self._send(200, b"<html>hi</html>", {"Content-Type": "text/html; charset=utf-8"})
        elif route == "/redirect":
            self._send(302, b"", {"Location": query["to"]})
        elif route == "/missing":
            self._send(404, b"not here", {"Content-Type": "text/plain"})
        elif route == "/declared-big":
            self._send(200, b"x" * 10, {"Content-Type": "audio/wav", "Content-Length": "999999"})
        elif route == "/no-length":
            # HTTP/1.0-style: body runs until the connection closes, no Content-Length.
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"y" * (CAP + 5000))
            self.close_connection = True
        elif route == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(4):
                block = b"z" * 40_000
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif route == "/lying-length":
            # Declares 1000 bytes but sends far more than the cap.
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", "1000")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"w" * (CAP * 3))
            self.close_connection = True
        elif route == "/drip":
            # A valid Content-Length, then one byte at a time: every socket read gets
            # data long before requests' per-read timeout, so only an overall deadline
            # ends it. The outcome says whether the client hung up before the end.
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(DRIP_BYTES))
            self.end_headers()
            try:
                for _ in range(DRIP_BYTES):
                    self.wfile.write(b"d")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                self.drips.append("client hung up")
            else:
                self.drips.append("sent everything")
            self.close_connection = True
        elif route == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(64 * 1024 * 20))
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"s" * 64 * 1024)
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self._send(404, b"", {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # The client hanging up mid-body is what the size-cap tests do; stay quiet.
        pass


def _serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A one-day certificate for ``PUBLIC_IP``."""
    return self_signed_cert(directory, ip=PUBLIC_IP)


@pytest.fixture(scope="module")
def _origin_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    if not _can_bind(PUBLIC_IP):
        skip_tier("url-fetch", f"cannot bind {PUBLIC_IP} (loopback /8) on this machine")
    hits: list[str] = []
    drips: list[str] = []
    handler = type("Handler", (_Handler,), {"hits": hits, "drips": drips})
    plain = _Server((PUBLIC_IP, 0), handler)
    tls = _Server((PUBLIC_IP, 0), handler)
    cert, key = _self_signed_cert(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    threads = [_serve(plain), _serve(tls)]
    origin = Origin(
        http=f"http://{PUBLIC_IP}:{plain.server_address[1]}",
        https=f"https://{PUBLIC_IP}:{tls.server_address[1]}",
        hits=hits,
        drips=drips,
    )
    origin.cert = cert  # type: ignore[attr-defined]
    try:
        yield origin
    finally:
        for server in (plain, tls):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)


@pytest.fixture
def origin(_origin_servers: Origin, monkeypatch: pytest.MonkeyPatch) -> Origin:
    """The 127.0.0.2 origin, counted as public for this test only."""
    from runpod.serverless.utils import rp_ssrf

    real = rp_ssrf.is_safe_address
    monkeypatch.setattr(rp_ssrf, "is_safe_address", lambda ip: ip == PUBLIC_IP or real(ip))
    # Trust the origin's self-signed certificate (requests reads this variable).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(_origin_servers.cert))  # type: ignore[attr-defined]
    _origin_servers.hits.clear()
    _origin_servers.drips.clear()
    return _origin_servers


@pytest.fixture
def internal_server() -> Iterator[str]:
    """A real server on 127.0.0.1: reachable, so only the SSRF guard keeps it out."""
    server = _Server(("127.0.0.1", 0), type("H", (_Handler,), {"hits": [], "drips": []}))
    thread = _serve(server)
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _url_fetch(url: str, dest: Path, *, max_bytes: int = CAP, timeout_s: float = 5) -> Path:
    return _fetch_url(url, dest, field="reference_audio", max_bytes=max_bytes, timeout_s=timeout_s)


# --- https / http through safe_get -------------------------------------------------------


def test_https_fetch_end_to_end(origin: Origin, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="storage")
    ref = parse_media_ref(f"{origin.https}/voice.wav?X-Amz-Signature=tok", field="reference_audio")
    with scratch("job-e2e") as dest:
        path = fetch(ref, dest, s3=None)
        assert path == dest / "reference_audio.wav"
        assert path.read_bytes() == AUDIO
        assert _files(dest) == ["reference_audio.wav"]
    [line] = [r.getMessage() for r in caplog.records if "fetch ok" in r.getMessage()]
    assert line.startswith("job=job-e2e fetch ok kind=https field=reference_audio bytes=16384 s=")


def test_http_fetch_success_via_private_function(origin: Origin, tmp_path: Path) -> None:
    # parse_media_ref only takes https://; the fetch machinery itself is scheme-agnostic.
    path = _url_fetch(f"{origin.http}/voice", tmp_path)
    assert path.read_bytes() == AUDIO
    assert path.name == "reference_audio.wav"  # suffix from the content type


@pytest.mark.parametrize(
    ("route", "name"),
    [
        ("/voice?type=audio/mpeg", "reference_audio.mp3"),
        ("/voice?type=video/mp4", "reference_audio.mp4"),
        ("/voice?type=audio/wav;%20codecs=1", "reference_audio.wav"),
        ("/voice?type=application/octet-stream", "reference_audio.bin"),
        ("/voice?type=image/png", "reference_audio.png"),
        ("/no-type", "reference_audio.bin"),
    ],
)
def test_accepted_content_types(origin: Origin, tmp_path: Path, route: str, name: str) -> None:
    assert _url_fetch(origin.http + route, tmp_path).name == name


@pytest.mark.parametrize(
    "route", ["/page", "/voice?type=text/plain", "/voice?type=application/json"]
)
def test_non_media_content_type_is_unsupported(origin: Origin, tmp_path: Path, route: str) -> None:
    with pytest.raises(UnsupportedMedia) as info:
        _url_fetch(origin.http + route, tmp_path)
    assert info.value.field == "reference_audio"
    assert _files(tmp_path) == []


def test_http_error_status(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(FetchFailed, match="HTTP 404"):
        _url_fetch(f"{origin.http}/missing", tmp_path)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("route", ["/declared-big", "/no-length", "/chunked"])
def test_size_cap(origin: Origin, tmp_path: Path, route: str) -> None:
    with pytest.raises(FetchFailed, match="size cap") as info:
        _url_fetch(origin.http + route, tmp_path)
    assert info.value.field == "reference_audio"
    assert _files(tmp_path) == []


def test_lying_content_length_never_yields_more_than_cap(origin: Origin, tmp_path: Path) -> None:
    # The client reads no more than the declared 1000 bytes; the excess is dropped.
    path = _url_fetch(f"{origin.http}/lying-length", tmp_path)
    assert path.stat().st_size == 1000


def test_overall_deadline(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(FetchFailed, match=r"longer than the 0\.4 s limit"):
        _url_fetch(f"{origin.http}/slow", tmp_path, max_bytes=10 * 1024 * 1024, timeout_s=0.4)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_deadline_holds_against_a_server_dripping_a_byte_at_a_time(
    origin: Origin, tmp_path: Path, scheme: str
) -> None:
    # Before the deadline was enforced on every read, the client sat in one read
    # until the whole body had dripped in, and failed only after that.
    with pytest.raises(FetchFailed) as info:
        _url_fetch(f"{getattr(origin, scheme)}/drip", tmp_path, timeout_s=0.5)
    assert info.value.code == "fetch_failed" and info.value.field == "reference_audio"
    assert "longer than the 0.5 s limit (MEDIA_WORKER_FETCH_TIMEOUT_S)" in info.value.message
    assert _files(tmp_path) == []
    deadline = time.monotonic() + 30  # the server notices the hang-up at its next write
    while not origin.drips and time.monotonic() < deadline:
        time.sleep(0.05)
    assert origin.drips == ["client hung up"]


FORBIDDEN_HOSTS = [
    "169.254.169.254/latest/meta-data/",
    "{internal}/voice.wav",
    "localhost/voice.wav",
    "10.0.0.1/voice.wav",
    "192.168.1.1/voice.wav",
    "100.64.0.1/voice.wav",
    "[::1]/voice.wav",
]


@pytest.mark.parametrize("target", FORBIDDEN_HOSTS)
def test_direct_forbidden_hosts_are_refused(
    origin: Origin, internal_server: str, tmp_path: Path, target: str
) -> None:
    ref = parse_media_ref("https://" + target.format(internal=internal_server), field="video")
    with pytest.raises(FetchFailed, match="refused") as info:
        fetch(ref, tmp_path, s3=None, max_bytes=CAP)
    assert info.value.field == "video"
    assert not isinstance(info.value, OSError)  # a refusal, not a network error to retry
    assert _files(tmp_path) == []


def test_a_host_that_does_not_resolve_is_not_called_a_refusal(tmp_path: Path) -> None:
    # RFC 6761: .invalid never resolves. The SDK raises its SSRF error for it too.
    ref = parse_media_ref("https://no-such-host.invalid/voice.wav", field="audio")
    with pytest.raises(FetchFailed) as info:
        fetch(ref, tmp_path, s3=None, max_bytes=CAP)
    assert info.value.field == "audio"
    assert info.value.message.startswith("audio: could not fetch https://no-such-host.invalid/")
    assert "refused" not in info.value.message and "host name" in info.value.message


@pytest.mark.parametrize(
    "url", ["http://example.com/a.wav", "file:///etc/passwd", "ftp://example.com/a.wav"]
)
def test_other_schemes_are_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_media_ref(url, field="video")
    assert info.value.field == "video"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.2/a.wav"])
def test_safe_get_itself_refuses_other_schemes(origin: Origin, tmp_path: Path, url: str) -> None:
    with pytest.raises(FetchFailed, match="blocked URL scheme"):
        _url_fetch(url, tmp_path)


@pytest.mark.parametrize(
    "target",
    [*(f"http://{t}" for t in FORBIDDEN_HOSTS), "file:///etc/passwd", "ftp://example.com/a.wav"],
)
def test_redirect_to_forbidden_target_is_refused(
    origin: Origin, internal_server: str, tmp_path: Path, target: str
) -> None:
    target = target.format(internal=internal_server)
    url = f"{origin.https}/redirect?to={target}"
    ref = parse_media_ref(url, field="reference_audio")
    with pytest.raises(FetchFailed, match="refused") as info:
        fetch(ref, tmp_path, s3=None, max_bytes=CAP)
    assert "tok" not in str(info.value)
    assert len(origin.hits) == 1 and origin.hits[0].startswith("/redirect")  # no retry
    assert _files(tmp_path) == []


def test_redirect_from_https_to_plain_http_is_refused(origin: Origin, tmp_path: Path) -> None:
    ref = parse_media_ref(f"{origin.https}/redirect?to={origin.http}/voice.wav", field="f")
    with pytest.raises(FetchFailed, match="plain http"):
        fetch(ref, tmp_path, s3=None)
    assert _files(tmp_path) == []


def test_redirect_to_public_https_is_followed(origin: Origin, tmp_path: Path) -> None:
    ref = parse_media_ref(f"{origin.https}/redirect?to=/voice.wav", field="f")
    assert fetch(ref, tmp_path, s3=None).read_bytes() == AUDIO


# --- data: URIs --------------------------------------------------------------------------


def _data(payload: bytes, media_type: str = "audio/wav") -> str:
    return f"data:{media_type};base64,{base64.b64encode(payload).decode()}"


def test_data_uri(tmp_path: Path) -> None:
    path = fetch(parse_media_ref(_data(AUDIO), field="ref"), tmp_path, s3=None)
    assert path == tmp_path / "ref.wav"
    assert path.read_bytes() == AUDIO
    assert _files(tmp_path) == ["ref.wav"]


def test_data_uri_without_media_type(tmp_path: Path) -> None:
    ref = parse_media_ref("data:;base64," + base64.b64encode(AUDIO[:64]).decode(), field="ref")
    assert fetch(ref, tmp_path, s3=None).name == "ref.bin"


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"abc", "holds 3 bytes, too few"),
        (b"\x00" * 8, "holds 8 bytes, too few"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "is HTML or XML, not media"),
        (b'{"error": "expired signature"}', "is JSON, not media"),
        ("Meeting notes: é, ü, 日本語\n".encode() * 40, "is text, not media"),
    ],
)
def test_what_is_certainly_not_media_is_refused_when_fetched(tmp_path, payload, says):
    ref = parse_media_ref(_data(payload, "application/octet-stream"), field="audio")
    with pytest.raises(UnsupportedMedia) as refused:
        fetch(ref, tmp_path, s3=None)
    assert refused.value.field == "audio" and says in refused.value.message
    assert _files(tmp_path) == []  # nothing left that looks fetched


@pytest.mark.parametrize(
    "payload",
    [
        b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32),
        b"\x00\x00\x00\x18ftypmp42" + bytes(64),
        b"ID3\x04\x00" + bytes(40),
        b"#!AMR\n" + bytes(range(200, 256)),
        AUDIO[:16],  # unknown binary: the runner's decoder decides
    ],
)
def test_binary_inputs_are_left_to_the_decoder(tmp_path, payload):
    ref = parse_media_ref(_data(payload, "application/octet-stream"), field="audio")
    assert fetch(ref, tmp_path, s3=None).read_bytes() == payload


def test_a_local_file_is_read_only_in_a_local_run(tmp_path, monkeypatch):
    from models import jobs

    audio = tmp_path / "my talk.wav"
    audio.write_bytes(AUDIO)
    job = {"task": "transcribe", "audio": str(audio)}
    # A deployed endpoint: refused, the error says where a path works.
    for value in (str(audio), audio.as_uri(), "talk.wav"):
        with pytest.raises(InvalidInput) as refused:
            jobs.parse_job({**job, "audio": value})
        assert refused.value.field == "audio" and "only in a local run" in refused.value.message
    with pytest.raises(InvalidInput, match="only in a local run"):
        parse_media_ref(audio.as_uri(), field="audio")

    monkeypatch.setattr(storage_refs, "_local_files", True)
    monkeypatch.chdir(tmp_path)
    for value in (str(audio), audio.as_uri(), "my talk.wav", "./my talk.wav"):
        parsed = jobs.parse_job({**job, "audio": value})
        assert parsed.audio == audio.as_uri()
        ref = parse_media_ref(parsed.audio, field="audio")
        (scratch_dir := tmp_path / "scratch").mkdir(exist_ok=True)
        copied = fetch(ref, scratch_dir, s3=None)
        assert copied == scratch_dir / "audio.wav" and copied.read_bytes() == AUDIO
    assert audio.read_bytes() == AUDIO  # the user's file is read, never moved
    with pytest.raises(InvalidInput, match="no such file"):
        fetch(parse_media_ref((tmp_path / "gone.wav").as_uri(), field="audio"), tmp_path, s3=None)
    with pytest.raises(FetchFailed, match="MEDIA_WORKER_MAX_MEDIA_BYTES"):
        fetch(
            parse_media_ref(audio.as_uri(), field="audio"), tmp_path / "s2", s3=None, max_bytes=10
        )


@pytest.mark.parametrize(
    ("size", "cap"),
    [(1000, 999), (9, 4), (7, 6)],  # (9, 4): encoded length over; (7, 6): decoded over
)
def test_data_uri_over_cap(tmp_path: Path, size: int, cap: int) -> None:
    ref = parse_media_ref(_data(b"a" * size), field="ref")
    with pytest.raises(FetchFailed, match="cap") as info:
        fetch(ref, tmp_path, s3=None, max_bytes=cap)
    assert info.value.field == "ref"
    assert _files(tmp_path) == []


def test_data_uri_cap_defaults_to_config(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_WORKER_MAX_MEDIA_BYTES", "10")
    with pytest.raises(FetchFailed, match="10 byte cap"):
        fetch(parse_media_ref(_data(b"a" * 50), field="ref"), tmp_path, s3=None)


def test_data_uri_html_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMedia):
        fetch(parse_media_ref(_data(b"<html>", "text/html"), field="ref"), tmp_path, s3=None)
    assert _files(tmp_path) == []


def test_data_uri_not_base64_is_invalid_even_if_built_by_hand(tmp_path: Path) -> None:
    # parse_media_ref rejects this already; fetch's strict decoder is the second line.
    ref = MediaRef("data", "ref", media_type="audio/wav", data="AB=C")
    with pytest.raises(InvalidInput) as info:
        fetch(ref, tmp_path, s3=None)
    assert info.value.field == "ref"


def test_s3_ref_without_credentials(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="s3Config") as info:
        fetch(parse_media_ref("s3://bucket/k.wav", field="video"), tmp_path, s3=None)
    assert info.value.field == "video"


# --- s3:// on SeaweedFS ----------------------------------------------------------------------


def _put(server, settings, key: str, body: bytes, content_type: str = "audio/wav") -> None:
    server.client().put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType=content_type)


@pytest.mark.slow
def test_s3_fetch(s3_server, s3_bucket, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    _put(s3_server, s3_bucket, "in/voice.flac", AUDIO, "audio/flac")
    ref = parse_media_ref(f"s3://{s3_bucket.bucket}/in/voice.flac", field="reference_audio")
    path = fetch(ref, tmp_path, s3=s3_bucket)
    assert path == tmp_path / "reference_audio.flac"
    assert path.read_bytes() == AUDIO
    assert s3_server.secret_key not in caplog.text


@pytest.mark.slow
def test_s3_missing_key_names_the_key(s3_server, s3_bucket, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ref = parse_media_ref(f"s3://{s3_bucket.bucket}/in/nope.wav", field="video")
    with pytest.raises(FetchFailed) as info:
        fetch(ref, tmp_path, s3=s3_bucket)
    assert "'in/nope.wav'" in str(info.value) and "does not exist" in str(info.value)
    assert info.value.field == "video"
    assert _files(tmp_path) == []
    assert s3_server.secret_key not in caplog.text + str(info.value) + repr(info.value)


@pytest.mark.slow
def test_s3_object_over_cap(s3_server, s3_bucket, tmp_path: Path) -> None:
    _put(s3_server, s3_bucket, "big.wav", b"b" * 5000)
    ref = parse_media_ref(f"s3://{s3_bucket.bucket}/big.wav", field="video")
    with pytest.raises(FetchFailed, match="5000 bytes, over the 4999 byte cap"):
        fetch(ref, tmp_path, s3=s3_bucket, max_bytes=4999)
    assert _files(tmp_path) == []


@pytest.mark.slow
def test_s3_html_object_is_unsupported(s3_server, s3_bucket, tmp_path: Path) -> None:
    _put(s3_server, s3_bucket, "page.html", b"<html>", "text/html")
    ref = parse_media_ref(f"s3://{s3_bucket.bucket}/page.html", field="video")
    with pytest.raises(UnsupportedMedia):
        fetch(ref, tmp_path, s3=s3_bucket)


@pytest.mark.slow
def test_s3_wrong_secret(s3_server, s3_bucket, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-zzz-0123456789"
    bad = settings_for(s3_server, s3_bucket.bucket, secret=wrong)
    ref = parse_media_ref(f"s3://{s3_bucket.bucket}/any.wav", field="video")
    with pytest.raises(FetchFailed) as info:
        fetch(ref, tmp_path, s3=bad)
    text = caplog.text + str(info.value) + repr(info.value) + repr(bad)
    assert wrong not in text and s3_server.secret_key not in text


# --- A full scratch disk (issue 20: it was `internal`) ----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["data", "https", "s3"])
def test_a_full_scratch_disk_names_the_field_and_the_setting(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "https":
        origin = request.getfixturevalue("origin")
        ref, s3 = parse_media_ref(f"{origin.https}/voice.wav", field="audio"), None
    elif kind == "s3":
        server, s3 = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        _put(server, s3, "in/big.wav", AUDIO)
        ref = parse_media_ref(f"s3://{s3.bucket}/in/big.wav", field="audio")
    else:
        ref, s3 = parse_media_ref(_data(AUDIO), field="audio"), None
    with small_tmpfs(tmp_path / "scratch", "8k") as disk:  # AUDIO is 16 KiB
        with pytest.raises(StorageFailed) as info:
            fetch(ref, disk, s3=s3)
        assert info.value.field == "audio"
        assert info.value.message.startswith("audio: no space left on device while fetching")
        assert f"scratch directory {disk};" in info.value.message
        assert "MEDIA_WORKER_SCRATCH_DIR" in info.value.message
        assert _files(disk) == [], "a partial input was left behind"
