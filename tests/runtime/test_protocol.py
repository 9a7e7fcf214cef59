"""Runner protocol: JSON snapshots of every message, and a closed set on decode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import protocol as p

SNAPSHOTS = Path(__file__).parent / "snapshots" / "protocol.json"

EXAMPLES: dict[str, p.Message] = {
    "setup": p.Setup(p.PROTOCOL_VERSION, "runners.piper:PiperRunner", {"org/m": "/w"}),
    "run": p.Run(
        "job-1",
        {"task": "clone", "text": "Hi.", "reference_audio": "s3://b/ref.wav"},
        "/tmp/scratch",
        {"reference_audio": "/tmp/scratch/ref.wav"},
    ),
    "shutdown": p.Shutdown(),
    "ready": p.Ready(p.PROTOCOL_VERSION, 1234, 0.82),
    "progress": p.Progress("job-1", "synthesized part 1/3", None),
    "chunk": p.Chunk(
        "job-1",
        0,
        "/tmp/scratch/chunk-0000.wav",
        "audio/wav",
        "wav",
        24000,
        0.0,
        1.25,
        [{"word": "Hi", "start_s": 0.1, "end_s": 0.4}],
    ),
    "done": p.Done(
        "job-1",
        [p.OutputFile("/tmp/scratch/speech.wav", "audio/wav", 2.46)],
        0.27,
        {"words": [{"word": "Hi", "start_s": 0.1, "end_s": 0.4}]},
    ),
    "failed": p.Failed("job-1", "invalid_input", "voice: unknown", "voice"),
    "fatal": p.Fatal("out of memory"),
}


def test_wire_format_matches_snapshots():
    """A change to these bytes is a protocol change: bump PROTOCOL_VERSION with it."""
    encoded = {name: json.loads(p.encode(msg)) for name, msg in EXAMPLES.items()}
    assert encoded == json.loads(SNAPSHOTS.read_text())


@pytest.mark.parametrize("message", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_round_trip(message):
    assert p.decode(p.encode(message)) == message


@pytest.mark.parametrize(
    "data", [b"not json", b"{}", b'{"type": "exec"}', b'{"type": "ready"}', b"[1]"]
)
def test_decode_rejects_anything_outside_the_set(data):
    with pytest.raises(p.ProtocolError):
        p.decode(data)
