"""What an image file claims to be, read from its first bytes, before anything decodes it.

PyAV (FFmpeg) learns a still image's size only by decoding it: FFmpeg's image
demuxers leave the dimensions to the decoder, so ``av.open`` on a 1.9 MB PNG
claiming 16000x16000 16-bit RGBA decodes all of it, 2 GB resident, before any cap
is looked at (issue 20). Pillow's lazy ``Image.open`` would read just the header,
but no profile environment carries Pillow (and these runners need nothing else
from it), so the few header layouts of the images a job may send (png, jpeg, webp,
plus gif and bmp, which FFmpeg also decodes) are read here with the stdlib:
fixed offsets, no decompression, at most :data:`MAX_SCAN_BYTES` read.

Formats FFmpeg decodes that are not listed here (tiff, ppm, exr...) are bounded by
the decoder's own ``max_pixels`` option (:func:`decoder_options`), which every PyAV
open of user media passes.

Stdlib only: runner environments import it (no pydantic there).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from errors import UnsupportedMedia

# JPEG puts EXIF/ICC segments (64 KiB each at most) before its frame header.
MAX_SCAN_BYTES = 1 << 20
# The most pixels a decoder may allocate for media that should hold no picture
# (audio inputs; a video's frames are not needed to transcribe its audio): 4096²,
# 134 MB for a 16-bit RGBA frame, what a 4K video's frames pass.
AUDIO_MAX_PIXELS = 4096 * 4096

# JPEG start-of-frame markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageHeader:
    """An image's format and the size its header claims; 0x0 when the header is cut."""

    format: str  # "png", "jpeg", "webp", "gif", "bmp"
    width: int
    height: int

    @property
    def readable(self) -> bool:
        return self.width > 0 and self.height > 0


def read(path: Path) -> ImageHeader | None:
    """The header of ``path`` when it is one of the known image formats, else None."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head.startswith(b"\xff\xd8"):
            return _jpeg(head + f.read(MAX_SCAN_BYTES - len(head)))
    return parse(head)


def parse(head: bytes) -> ImageHeader | None:
    """:func:`read` on the file's first bytes (64 are enough except for JPEG). Pure."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        # IHDR is the first chunk: length, b"IHDR", width, height (big-endian).
        if head[12:16] == b"IHDR" and len(head) >= 24:
            return ImageHeader("png", *struct.unpack(">II", head[16:24]))
        return ImageHeader("png", 0, 0)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(head) >= 10:
            return ImageHeader("gif", *struct.unpack("<HH", head[6:10]))
        return ImageHeader("gif", 0, 0)
    if head[:2] == b"BM" and len(head) >= 26 and struct.unpack("<I", head[14:18])[0] >= 12:
        if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
            width, height = struct.unpack("<hh", head[18:22])
        else:
            width, height = struct.unpack("<ii", head[18:26])
        return ImageHeader("bmp", abs(width), abs(height))  # negative height: top-down
    return None


def _jpeg(data: bytes) -> ImageHeader:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return ImageHeader("jpeg", 0, 0)
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return ImageHeader("jpeg", width, height)
        if marker in (0xD9, 0xDA) or length < 2:  # end, or scan data before a frame
            return ImageHeader("jpeg", 0, 0)
        i += 2 + length
    return ImageHeader("jpeg", 0, 0)


def _webp(head: bytes) -> ImageHeader:
    chunk, body = head[12:16], head[20:]
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return ImageHeader("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        (bits,) = struct.unpack("<I", body[1:5])
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(body) >= 10:
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        return ImageHeader("webp", width, height)
    return ImageHeader("webp", 0, 0)


def decoder_options(max_pixels: int) -> dict[str, str]:
    """PyAV ``options`` that make FFmpeg's decoders refuse a picture over ``max_pixels``.

    Passed to ``av.open`` it bounds the decoding ``avformat_find_stream_info`` does;
    set as ``stream.codec_context.options`` it bounds every frame decoded after
    (FFmpeg's ``max_pixels``: the decoder fails instead of allocating).
    """
    return {"max_pixels": str(max_pixels)}


def refuse_as_audio(path: Path, *, field: str) -> None:
    """Refuse an image sent where audio is expected, before FFmpeg decodes it.

    Raises:
        UnsupportedMedia: ``path`` is a png, jpeg, webp, gif or bmp image (field ``field``).
    """
    header = read(path)
    if header is not None:
        size = f" ({header.width}x{header.height})" if header.readable else ""
        raise UnsupportedMedia(
            f"{field}: the file is a {header.format} image{size}, not audio; send wav, "
            "flac, mp3, ogg, m4a, webm or a video with an audio track",
            field=field,
        )
