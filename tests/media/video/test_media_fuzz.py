"""A fuzz pass over media inputs (issue 20): seeded mutations of small valid files
(truncations, bit flips, header lies, spliced bytes) through every path that opens
user media: restore's probe, caps and pipeline; transcribe's probe and decode; the
reference-audio decode.

Every outcome must be a clean error (a WorkerError: the job answers invalid_input
or unsupported_media naming the field) or a correct result (the restored file
passes the pipeline's own re-open check; decoded audio is finite). Anything else
would reach the caller as ``internal`` or ``runner_crashed``. The corpus runs in a
child process so that a crash inside FFmpeg fails the test naming the case instead
of killing pytest; each case's time and the child's peak memory are bounded.

The corpus is deterministic: ``SEED`` and the mutation count fix every file. A
failing case prints its name (``<seed file>-<mutation>-<n>``); rebuild it with
``mutate(seed_bytes, kind, random.Random(f"{SEED}-{name}"))``.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures import hostile
from tests.fixtures.clips import make_clip, make_image

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
SEED = 20
MUTATIONS_PER_KIND = 30
CASE_LIMIT_S = 30.0  # one case, all its paths; a hang would pass it
PEAK_LIMIT_MB = 1024  # the whole corpus in one process


# --- The seed files ------------------------------------------------------------------


def _audio(path: Path, codec: str, fmt: str) -> Path:
    from tests.media.test_reference_audio import encode, voice_like

    return encode(path, voice_like(1.0, 16_000, lead_s=0.2, tail_s=0.2), 16_000, codec=codec,
                  fmt=fmt)  # fmt: skip


SEEDS: dict[str, Callable[[Path], Path]] = {
    "h264-aac.mp4": lambda d: make_clip(d / "s.mp4", frames=6, width=48, height=32),
    "mpeg4-mp2.mkv": lambda d: make_clip(d / "s.mkv", frames=6, width=48, height=32,
                                         codec="mpeg4", audio="mp2"),
    "vp9-opus.webm": lambda d: make_clip(d / "s.webm", frames=4, width=48, height=32,
                                         codec="libvpx-vp9", audio="libopus"),
    "raw.h264": lambda d: hostile.resolution_switch(d / "s.h264", then=(48, 32), frames=3),
    "still.png": lambda d: make_image(d / "s.png", width=33, height=21),
    "still.jpg": lambda d: make_image(d / "s.jpg", width=33, height=21, codec="mjpeg"),
    "still.webp": lambda d: make_image(d / "s.webp", width=33, height=21, codec="libwebp"),
    "pcm.wav": lambda d: _audio(d / "s.wav", "pcm_s16le", "wav"),
    "flac.flac": lambda d: _audio(d / "s.flac", "flac", "flac"),
    "mp3.mp3": lambda d: _audio(d / "s.mp3", "libmp3lame", "mp3"),
}  # fmt: skip
_VISUAL = {"h264-aac.mp4", "mpeg4-mp2.mkv", "vp9-opus.webm", "raw.h264", "still.png",
           "still.jpg", "still.webp"}  # fmt: skip


# --- Mutations: pure functions of (bytes, rng) -----------------------------------------


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def _flip_bits(data: bytes, rng: random.Random, *, within: int | None = None) -> bytes:
    out = bytearray(data)
    span = min(len(out), within or len(out))
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(span)] ^= 1 << rng.randrange(8)
    return bytes(out)


_LIES = (0, 1, 0x7F, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 30_000, 1 << 24)


def _header_lie(data: bytes, rng: random.Random) -> bytes:
    """Overwrite a size-like field of the container's header with a plausible lie.

    PNG: IHDR's width or height, with a correct CRC, so the lie is well-formed.
    WAV: a chunk size, the rate or the channel count. Else a 32-bit field inside a
    known box/element of the first kilobytes (mp4 box sizes, durations, counts).
    """
    out = bytearray(data)
    lie = rng.choice(_LIES)
    if data.startswith(b"\x89PNG"):
        offset = 16 + 4 * rng.randrange(2)
        out[offset : offset + 4] = struct.pack(">I", lie & 0x7FFF_FFFF)
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])) & 0xFFFF_FFFF)
        return bytes(out)
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        offset = rng.choice((4, 22, 24, 28, 40))  # RIFF size, channels, rate, byte rate, data
        width = 2 if offset == 22 else 4
        out[offset : offset + width] = (lie & (0xFFFF if width == 2 else 0xFFFF_FFFF)).to_bytes(
            width, "little"
        )
        return bytes(out)
    boxes = [i for tag in (b"moov", b"mvhd", b"tkhd", b"mdhd", b"stsz", b"stco", b"stts",
                           b"\x1aE\xdf\xa3", b"\x18S\x80g", b"OggS", b"fLaC", b"ID3")
             for i in _find_all(data[:4096], tag)]  # fmt: skip
    offset = (rng.choice(boxes) + rng.randrange(4, 24)) if boxes else rng.randrange(64)
    offset = min(offset, max(0, len(out) - 4))
    out[offset : offset + 4] = struct.pack(">I", lie)
    return bytes(out)


def _find_all(data: bytes, tag: bytes) -> list[int]:
    found, start = [], 0
    while (i := data.find(tag, start)) >= 0:
        found.append(i)
        start = i + 1
    return found


def _splice(data: bytes, rng: random.Random) -> bytes:
    """A random stretch repeated or dropped (a misjoined download)."""
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 4096))
    return data[:a] + data[a:b] * rng.randint(0, 3) + data[b:]


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": _truncate,
    "bitflip": _flip_bits,
    "headerflip": lambda data, rng: _flip_bits(data, rng, within=256),
    "headerlie": _header_lie,
    "splice": _splice,
}


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    return MUTATORS[kind](data, rng)


def test_mutations_are_deterministic_and_change_the_file(tmp_path):
    data = SEEDS["still.png"](tmp_path).read_bytes()
    for kind in MUTATORS:
        first = mutate(data, kind, random.Random(f"{SEED}-x-{kind}"))
        assert first == mutate(data, kind, random.Random(f"{SEED}-x-{kind}")), kind
    lie = _header_lie(data, random.Random(3))
    assert lie[:16] == data[:16] and lie != data
    assert struct.unpack(">I", lie[29:33])[0] == zlib.crc32(lie[12:29]) & 0xFFFF_FFFF


# --- Running one case (in the child process) --------------------------------------------


def _restore_path(src: Path, scratch: Path) -> str:
    from media.restore import run_restore
    from runtime.runner import RunContext
    from tests.fixtures.clips import read_back

    def double(frames):
        return frames.repeat(2, axis=1).repeat(2, axis=2)

    ctx = RunContext("fuzz", scratch, lambda message, fraction: None, inputs={"video": src})
    try:
        (output,) = run_restore({}, ctx, max_scale=2.0, make_backend=lambda s, n: double,
                                default_batch=4)  # fmt: skip
    finally:
        left = {p.name for p in scratch.iterdir()} - {src.name, "restored.mp4", "restored.png"}
        assert not left, f"left in scratch: {sorted(left)}"
    got = read_back(Path(output.path))
    media = ctx.result["media"]
    assert (got.width, got.height) == (media["width"], media["height"])
    assert got.frames == media["frames"] >= 1
    return "ok"


def _transcribe_path(src: Path) -> str:
    import numpy as np

    from runners.whisper import decode_windows, probe

    probe(src)
    for _, samples in decode_windows(src, max_s=60.0):
        assert samples.dtype == np.float32 and np.isfinite(samples).all()
    return "ok"


def _reference_path(src: Path) -> str:
    import numpy as np

    from media.reference_audio import decode

    samples = decode(src, sample_rate=16_000)
    assert samples.dtype == np.float32 and np.isfinite(samples).all()
    return "ok"


def _outcome(run: Callable[[], str]) -> str:
    from errors import InvalidInput, UnsupportedMedia

    try:
        return run()
    except (InvalidInput, UnsupportedMedia) as exc:
        if exc.field not in ("video", "audio", "reference_audio"):
            return f"BAD no field: {exc.code}: {exc.message}"
        return exc.code
    except Exception as exc:  # what would reach the caller as internal/runner_crashed
        return f"BAD {type(exc).__name__}: {str(exc)[:300]}"


def run_corpus(work: Path) -> None:
    """Build the corpus under ``work`` and print one JSON line per case (flushed)."""
    import os

    os.environ["MEDIA_WORKER_RESTORE_MAX_SOURCE_SIDE"] = "512"  # small frames: fast, bounded
    seeds = work / "seeds"
    seeds.mkdir()
    for seed_name, make in SEEDS.items():
        data = make(seeds).read_bytes()
        suffix = "." + seed_name.rsplit(".", 1)[1]
        for kind in MUTATORS:
            for n in range(MUTATIONS_PER_KIND):
                name = f"{seed_name}-{kind}-{n}"
                case = work / name
                case.mkdir()
                src = case / f"input{suffix}"
                src.write_bytes(mutate(data, kind, random.Random(f"{SEED}-{name}")))
                started = time.perf_counter()
                paths = {
                    "restore": lambda src=src, case=case: _restore_path(src, case),
                    "transcribe": lambda src=src: _transcribe_path(src),
                    "reference": lambda src=src: _reference_path(src),
                }
                if seed_name not in _VISUAL:
                    del paths["restore"]
                outcomes = {path: _outcome(run) for path, run in paths.items()}
                status = Path("/proc/self/status").read_text().splitlines()
                hwm = next(line for line in status if line.startswith("VmHWM"))
                print(json.dumps({"case": name, "outcomes": outcomes,
                                  "s": round(time.perf_counter() - started, 3),
                                  "peak_mb": int(hwm.split()[1]) // 1024}), flush=True)  # fmt: skip


def test_fuzzed_media_gives_a_clean_error_or_a_correct_result(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from tests.media.video.test_media_fuzz import run_corpus; run_corpus(Path(sys.argv[1]))",
         str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    cases = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    expected = len(SEEDS) * len(MUTATORS) * MUTATIONS_PER_KIND
    # a crash inside FFmpeg ends the child: the next case in order is the culprit
    assert done.returncode == 0 and len(cases) == expected, (
        f"the corpus stopped after {len(cases)} of {expected} cases "
        f"(exit {done.returncode}):\n{done.stderr[-3000:]}"
    )
    bad = [(c["case"], path, o) for c in cases for path, o in c["outcomes"].items()
           if o.startswith("BAD")]  # fmt: skip
    assert not bad, "\n".join(f"{case} {path}: {o}" for case, path, o in bad)
    slow = [(c["case"], c["s"]) for c in cases if c["s"] > CASE_LIMIT_S]
    assert not slow, slow
    assert cases[-1]["peak_mb"] < PEAK_LIMIT_MB, cases[-1]
    # the corpus is worth its time: it reaches results and both error kinds
    seen = {o for c in cases for o in c["outcomes"].values()}
    assert {"ok", "unsupported_media"} <= seen, seen
