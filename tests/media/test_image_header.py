"""media/image_header.py: the size an image claims, read from its header by the stdlib,
checked against files FFmpeg's own encoders write (and against FFmpeg's reading)."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from errors import UnsupportedMedia
from media import image_header
from media.image_header import ImageHeader


def _encode(path: Path, codec: str, pix_fmt: str, width: int, height: int, **options) -> Path:
    # FFmpeg writes a GIF with its own muxer; the others as one image2 picture
    muxer = ("gif", {}) if codec == "gif" else ("image2", {"update": "1"})
    with av.open(str(path), mode="w", format=muxer[0], options=muxer[1]) as out:
        stream = out.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options
        image = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "options", "format"),
    [
        ("a.png", "png", "rgb24", {}, "png"),
        ("a.jpg", "mjpeg", "yuvj420p", {}, "jpeg"),
        ("lossy.webp", "libwebp", "yuv420p", {}, "webp"),
        ("lossless.webp", "libwebp", "bgra", {"lossless": "1"}, "webp"),
        ("a.gif", "gif", "rgb8", {}, "gif"),
        ("a.bmp", "bmp", "bgr24", {}, "bmp"),
    ],
)
@pytest.mark.parametrize(("width", "height"), [(33, 21), (1, 700), (640, 2)])
def test_the_header_size_is_the_size_ffmpeg_decodes(
    tmp_path, name, codec, pix_fmt, options, format, width, height
):
    path = _encode(tmp_path / name, codec, pix_fmt, width, height, **options)
    assert image_header.read(path) == ImageHeader(format, width, height)
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0))
    assert (decoded.width, decoded.height) == (width, height)


def test_jpeg_metadata_before_the_frame_header_is_skipped(tmp_path):
    jpeg = _encode(tmp_path / "a.jpg", "mjpeg", "yuvj420p", 40, 30).read_bytes()
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 60_000) + bytes(60_000)  # a big APP1
    assert image_header.parse(jpeg[:2] + exif + jpeg[2:]) == ImageHeader("jpeg", 40, 30)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"", None),
        (b"RIFF\0\0\0\0WAVEfmt ", None),  # audio
        (b"\x00\x00\x00\x18ftypmp42", None),  # video
        (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0", ImageHeader("png", 0, 0)),  # cut
        (b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR" + struct.pack(">II", 30_000, 30_000),
         ImageHeader("png", 30_000, 30_000)),  # a claim, whatever follows
        (b"\xff\xd8\xff\xd9", ImageHeader("jpeg", 0, 0)),  # ends before a frame
        (b"\xff\xd8\x00\x00", ImageHeader("jpeg", 0, 0)),  # not a marker
        (b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0", ImageHeader("webp", 0, 0)),
        (b"GIF89a\x01", ImageHeader("gif", 0, 0)),
        (b"GIF87a" + struct.pack("<HH", 65_535, 65_535), ImageHeader("gif", 65_535, 65_535)),
    ],
)  # fmt: skip
def test_parse_table(head, expected):
    assert image_header.parse(head) == expected


def test_a_lying_png_is_named_as_an_image_where_audio_is_expected(tmp_path):
    png = tmp_path / "x.wav"  # the name does not matter, the bytes do
    png.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR" + struct.pack(">II", 30_000, 30_000))
    with pytest.raises(UnsupportedMedia) as info:
        image_header.refuse_as_audio(png, field="audio")
    assert info.value.field == "audio"
    assert info.value.message.startswith("audio: the file is a png image (30000x30000), not")
    wav = tmp_path / "y.wav"
    wav.write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    image_header.refuse_as_audio(wav, field="audio")  # not an image: left to PyAV
