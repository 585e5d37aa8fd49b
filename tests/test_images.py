"""The upload loader against bad and odd inputs that the tests make themselves.

Every case ends in one of two ways: a correct RGB image (mode, size and pixel values checked), or an ImageError
whose message names the problem. A hypothesis test then feeds random and mutated bytes and checks that nothing
else ever comes out.
"""

from __future__ import annotations

import io
import math
import random
import re
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

# The module, not its names: pytest would collect a function called `test_pattern` imported into this file.
from resnet_core import images
from resnet_core.images import ALLOWED_FORMATS, ImageError, LoadedImage, load_image, load_image_with_notes, to_rgb

MiB = 1 << 20
GREY = (128, 128, 128)
RED = (255, 0, 0)


# --- helpers -------------------------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> bytes:
    """A PNG written byte by byte, for what Pillow cannot save (16-bit RGB) or would refuse to (huge headers)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\x00" + row for row in rows))  # filter type 0 (None) on every row
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def with_png_size(data: bytes, width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR now claims width × height (CRC fixed, so only the size is a lie)."""
    out = bytearray(data)
    out[16:24] = struct.pack(">II", width, height)
    out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def with_gif_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    out[6:10] = struct.pack("<HH", width, height)  # logical screen width and height
    return bytes(out)


def with_bmp_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    out[18:26] = struct.pack("<ii", width, height)  # BITMAPINFOHEADER biWidth, biHeight
    return bytes(out)


def pixels(img: Image.Image) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in p) for p in np.asarray(img).reshape(-1, len(img.getbands()))]


def refused(data: object, **limits: object) -> str:
    """The ImageError message for `data`, checked to be one plain sentence."""
    with pytest.raises(ImageError) as info:
        load_image_with_notes(data, **limits)  # type: ignore[arg-type]
    message = str(info.value)
    assert_plain_sentence(message)
    return message


def assert_plain_sentence(message: str) -> None:
    assert message and message[0].isupper() and message.endswith("."), message
    assert "\n" not in message and "Traceback" not in message, message
    assert not re.search(r"0x[0-9a-f]{6,}|\bb'|<\w+[ .]", message), message  # no object or bytes reprs


def loaded(data: bytes | bytearray | memoryview, **limits: object) -> LoadedImage:
    result = load_image_with_notes(data, **limits)  # type: ignore[arg-type]
    assert result.image.mode == "RGB"
    assert result.image.size[0] >= 1 and result.image.size[1] >= 1
    return result


# --- not an image, or not one we accept --------------------------------------------------------------------


def test_empty_bytes_are_refused() -> None:
    assert "empty" in refused(b"")


@pytest.mark.parametrize("value", ["a string", None, 42, [1, 2]])
def test_non_bytes_are_refused(value: object) -> None:
    assert refused(value) == f"Expected the contents of a file as bytes; got {type(value).__name__}."


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = encode(Image.new("RGB", (2, 2), RED), "PNG")
    assert pixels(loaded(bytearray(data)).image) == [RED] * 4
    assert pixels(loaded(memoryview(data)).image) == [RED] * 4


def test_random_bytes_are_refused() -> None:
    data = random.Random(0).randbytes(4096)
    assert refused(data).startswith("This file is not an image in a supported format (PNG, JPEG, WebP, BMP or GIF)")


def test_over_size_is_refused_before_parsing() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    message = refused(data, max_bytes=1000)
    assert message == f"The file is {len(data) / 1024:.1f} KiB; the limit is 1000 B."
    assert loaded(data, max_bytes=len(data)).image.size == (32, 32)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"<!DOCTYPE html>\n<html><head><title>Photo</title></head><body><img src=x.jpg></body></html>", "HTML"),
        (b"\n  <html lang='en'><body>404 Not Found</body></html>", "HTML"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<rect width="10" height="10"/></svg>',
            "SVG",
        ),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><circle r='4'/></svg>", "SVG"),
        (b'<?xml version="1.0"?><note>not an image</note>', "XML"),
        (b"just some words in a file called photo.jpg\n", "text"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "HEIC"),
        (b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1" + bytes(64), "AVIF"),
    ],
)
def test_text_and_other_kinds_are_named(content: bytes, kind: str) -> None:
    """Served as "photo.jpg" or not, the loader sees only the bytes and says what they look like."""
    message = refused(content)
    assert message.startswith("This file is not an image in a supported format") and kind in message


@pytest.mark.parametrize(("fmt", "kind"), [("TIFF", "TIFF"), ("EPS", "EPS"), ("PDF", "PDF")])
def test_formats_pillow_can_read_but_we_do_not_allow_are_refused(fmt: str, kind: str) -> None:
    data = encode(Image.new("RGB", (8, 8), RED), fmt)
    assert kind in refused(data)


def test_zip_is_named() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photo.jpg", b"\xff\xd8\xff")
    assert "ZIP archive" in refused(buf.getvalue())


def test_a_format_left_out_of_formats_is_refused_and_named() -> None:
    jpeg = encode(Image.new("RGB", (8, 8)), "JPEG")
    message = refused(jpeg, formats=("PNG",))
    assert "supported format (PNG)" in message and "a JPEG image" in message
    assert loaded(jpeg, formats=("JPEG",)).format == "JPEG"


def test_a_corrupt_header_after_a_valid_signature_is_named() -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dXXXX" + bytes(17)
    assert refused(data) == "The file starts like a PNG image, but its header is corrupt."


def test_truncated_jpeg_is_refused() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    jpeg = encode(Image.fromarray(noise), "JPEG", quality=90)
    assert loaded(jpeg).image.size == (64, 64)
    assert refused(jpeg[: len(jpeg) // 2]).startswith("The file is truncated or corrupt: ")


def test_truncated_png_is_refused() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    png = encode(Image.fromarray(noise), "PNG")
    assert refused(png[: len(png) // 2]).startswith("The file is truncated or corrupt: ")


# --- decompression bombs: refused from the header ----------------------------------------------------------


@pytest.fixture
def load_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every ImageFile.load() (the decode step), to prove a refusal came before it."""
    calls: list[str] = []
    real_load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        calls.append(str(self.format))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


def _refused_cheaply(data: bytes, **limits: object) -> str:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        message = refused(data, **limits)
    finally:
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    # tracemalloc sees Python's allocations, not Pillow's C buffers; the load() spy is the proof that nothing was
    # decoded, these two bound the rest.
    assert peak < 50 * MiB, peak
    assert seconds < 1.0, seconds
    return message


def test_bomb_png_50000_squared_is_refused_before_decoding(load_calls: list[str]) -> None:
    tiny = encode(Image.new("1", (1, 1)), "PNG")
    bomb = with_png_size(tiny, 50_000, 50_000)
    assert len(bomb) < 100
    message = _refused_cheaply(bomb, max_pixels=40_000_000)
    assert "2,500,000,000 pixels" in message and "the limit is 40,000,000 pixels (e.g. 6324 × 6324)" in message
    assert load_calls == []


@pytest.mark.parametrize(("fmt", "patch"), [("PNG", with_png_size), ("GIF", with_gif_size), ("BMP", with_bmp_size)])
def test_header_over_the_pixel_limit_is_refused_before_decoding(fmt: str, patch: object, load_calls: list[str]) -> None:
    """7000 × 7000 is under Pillow's own bomb limit (89 M pixels), so this is our check, with the exact size."""
    small = encode(Image.new("RGB", (4, 4), RED).convert("P" if fmt == "GIF" else "RGB"), fmt)
    bomb = patch(small, 7000, 7000)  # type: ignore[operator]
    message = _refused_cheaply(bomb, max_pixels=40_000_000)
    assert message == "The image is 7000 × 7000 pixels; the limit is 40,000,000 pixels (e.g. 6324 × 6324)."
    assert load_calls == []
    loaded(small)  # the spy does see a decode when there is one
    assert fmt in load_calls


def test_pillows_bomb_warning_becomes_a_refusal_with_the_limit_that_applied(load_calls: list[str]) -> None:
    """10000 × 10000 is over Pillow's warning limit; with a higher max_pixels, Pillow's limit is the one named."""
    bomb = with_png_size(encode(Image.new("L", (1, 1)), "PNG"), 10_000, 10_000)
    message = _refused_cheaply(bomb, max_pixels=200_000_000)
    assert "100,000,000 pixels" in message
    assert f"the limit is {Image.MAX_IMAGE_PIXELS:,} pixels" in message
    assert load_calls == []


def test_pixel_limit_is_inclusive() -> None:
    data = encode(Image.new("RGB", (10, 10), RED), "PNG")
    assert loaded(data, max_pixels=100).image.size == (10, 10)
    assert refused(data, max_pixels=99) == "The image is 10 × 10 pixels; the limit is 99 pixels (e.g. 9 × 9)."


def test_zero_width_header_is_refused() -> None:
    message = refused(with_png_size(encode(Image.new("L", (1, 1)), "PNG"), 0, 5))
    assert "no pixels" in message or "corrupt" in message


# --- EXIF orientation ----------------------------------------------------------------------------------------

# Where the red top-left pixel of a stored 3 × 2 image appears on screen, and the shown size, for each EXIF
# orientation (the TIFF/EXIF spec's eight cases: 1 as stored, 2 mirrored, 3 turned 180°, 4 flipped, 5 transposed,
# 6 turned 90° clockwise to view, 7 transversed, 8 turned 90° counter-clockwise).
ORIENTATIONS = {
    1: ((0, 0), (3, 2)),
    2: ((2, 0), (3, 2)),
    3: ((2, 1), (3, 2)),
    4: ((0, 1), (3, 2)),
    5: ((0, 0), (2, 3)),
    6: ((1, 0), (2, 3)),
    7: ((1, 2), (2, 3)),
    8: ((0, 2), (2, 3)),
}


def _with_orientation(img: Image.Image, fmt: str, orientation: int, **params: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif, **params)


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_puts_the_corner_where_a_viewer_shows_it(orientation: int) -> None:
    stored = Image.new("RGB", (3, 2), GREY)
    stored.putpixel((0, 0), RED)
    result = loaded(_with_orientation(stored, "PNG", orientation))  # PNG carries EXIF (eXIf) and is lossless
    corner, size = ORIENTATIONS[orientation]
    assert result.image.size == size
    assert result.original_size == (3, 2)
    shown = np.asarray(result.image)
    red_at = [(int(x), int(y)) for y, x in np.argwhere((shown == RED).all(axis=-1))]
    assert red_at == [corner]
    assert ("Rotated according to the EXIF orientation." in result.notes) == (orientation != 1)


def test_exif_orientation_in_a_jpeg() -> None:
    stored = Image.new("RGB", (32, 16), GREY)
    stored.paste(RED, (0, 0, 8, 8))
    result = loaded(_with_orientation(stored, "JPEG", 6, quality=95))
    assert result.image.size == (16, 32)
    shown = np.asarray(result.image).astype(int)
    assert np.abs(shown[3, 12] - RED).max() <= 12  # the top-left block is now top-right
    assert np.abs(shown[3, 3] - GREY).max() <= 12


def test_unreadable_exif_shows_the_image_as_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Image.Image) -> Image.Exif:
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    monkeypatch.setattr(ImageFile.ImageFile, "getexif", broken, raising=False)
    result = loaded(encode(Image.new("RGB", (3, 2), RED), "JPEG"))
    assert result.image.size == (3, 2)
    assert any("EXIF metadata is unreadable" in note for note in result.notes)


# --- colour modes, through real files ----------------------------------------------------------------------


def _palette(*colours: tuple[int, int, int]) -> list[int]:
    return [v for c in colours for v in c] + [0] * (768 - 3 * len(colours))


def _mode_1() -> bytes:
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    return encode(img, "PNG")


def _mode_p(fmt: str, **params: object) -> bytes:
    img = Image.new("P", (2, 1))
    img.putpalette(_palette((10, 20, 30), (200, 100, 50)))
    img.putpixel((1, 0), 1)
    return encode(img, fmt, **params)


def _mode_rgba(fmt: str, **params: object) -> bytes:
    img = Image.new("RGBA", (3, 1))
    for x, value in enumerate([(255, 0, 0, 128), (0, 0, 255, 0), (10, 20, 30, 255)]):
        img.putpixel((x, 0), value)
    return encode(img, fmt, **params)


def _mode_cmyk() -> bytes:
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    img.paste((0, 0, 0, 0), (0, 0, 8, 16))  # left half white
    return encode(img, "JPEG", quality=95)


def _on_white(colour: int, alpha: int) -> int:
    return round(colour * alpha / 255 + 255 * (1 - alpha / 255))


RGBA_ON_WHITE = [(255, _on_white(0, 128), _on_white(0, 128)), (255, 255, 255), (10, 20, 30)]

# (bytes, format, original mode, expected RGB pixels in reading order, tolerance, a note that must be there)
MODE_CASES = {
    "1": (_mode_1(), "PNG", "1", [(0, 0, 0), (255, 255, 255)], 0, None),
    "L": (encode(Image.new("L", (2, 1), 77), "PNG"), "PNG", "L", [(77, 77, 77)] * 2, 0, None),
    "LA": (
        encode(Image.new("LA", (1, 1), (0, 128)), "PNG"),
        "PNG",
        "LA",
        [(_on_white(0, 128),) * 3],
        1,
        "Transparency composited on white.",
    ),
    "P": (_mode_p("PNG"), "PNG", "P", [(10, 20, 30), (200, 100, 50)], 0, None),
    "P with transparency (PNG)": (
        _mode_p("PNG", transparency=0),
        "PNG",
        "P",
        [(255, 255, 255), (200, 100, 50)],
        0,
        "Transparency composited on white.",
    ),
    "P with transparency (GIF)": (
        _mode_p("GIF", transparency=0),
        "GIF",
        "P",
        [(255, 255, 255), (200, 100, 50)],
        0,
        "Transparency composited on white.",
    ),
    "RGB": (encode(Image.new("RGB", (2, 1), (1, 2, 3)), "PNG"), "PNG", "RGB", [(1, 2, 3)] * 2, 0, None),
    "RGBA": (_mode_rgba("PNG"), "PNG", "RGBA", RGBA_ON_WHITE, 1, "Transparency composited on white."),
    "RGBA (WebP)": (
        _mode_rgba("WEBP", lossless=True, exact=True),
        "WEBP",
        "RGBA",
        RGBA_ON_WHITE,
        1,
        "Transparency composited on white.",
    ),
    "RGB (BMP)": (encode(Image.new("RGB", (2, 1), (1, 2, 3)), "BMP"), "BMP", "RGB", [(1, 2, 3)] * 2, 0, None),
    "P (BMP)": (_mode_p("BMP"), "BMP", "P", [(10, 20, 30), (200, 100, 50)], 0, None),
    "CMYK (JPEG)": (_mode_cmyk(), "JPEG", "CMYK", [(255, 255, 255)] * 8 + [RED] * 8, 6, "CMYK colours converted"),
    "I;16 (PNG)": (
        encode(Image.fromarray(np.array([[0, 32768, 65535, 25700]], dtype=np.uint16)), "PNG"),
        "PNG",
        "I;16",
        [(0, 0, 0), (128, 128, 128), (255, 255, 255), (100, 100, 100)],
        0,
        "16-bit image scaled to 8 bits.",
    ),
}


@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_every_mode_becomes_the_right_rgb(case: str) -> None:
    data, fmt, mode, expected, tolerance, note = MODE_CASES[case]
    result = loaded(data)
    assert (result.format, result.original_mode) == (fmt, mode)
    got = np.array(pixels(result.image))
    if case.startswith("CMYK"):  # a 16 × 16 image: compare its first row
        got = got[:16]
    assert np.abs(got - np.array(expected)).max() <= tolerance, got.tolist()
    if note is None:
        assert result.notes == ()
    else:
        assert any(n.startswith(note) for n in result.notes), result.notes


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    """Pillow's own convert clips 16-bit samples at 255, so mid-grey 32768 would show as white."""
    grey16 = Image.fromarray(np.full((2, 2), 32768, dtype=np.uint16))
    assert grey16.convert("RGB").getpixel((0, 0)) == (255, 255, 255)  # the pitfall
    result = loaded(encode(grey16, "PNG"))
    assert result.image.getpixel((0, 0)) == (128, 128, 128)


def test_16_bit_colour_png() -> None:
    """A 16-bit RGB PNG (written by hand: Pillow cannot save one) keeps its mid-grey and its red."""
    rows = [struct.pack(">6H", 0x8000, 0x8000, 0x8000, 0xFFFF, 0x0000, 0x0000)]
    result = loaded(raw_png(2, 1, 16, 2, rows))
    assert result.format == "PNG"
    assert pixels(result.image) == [(128, 128, 128), RED]


# --- colour modes Pillow cannot write in an allowed format: the normaliser directly ----------------------------


def _pa() -> Image.Image:
    img = Image.new("PA", (2, 1))
    img.putpalette(_palette((0, 0, 0), (200, 100, 50)))
    img.putpixel((0, 0), (1, 255))
    img.putpixel((1, 0), (1, 0))
    return img


@pytest.mark.parametrize(
    ("img", "expected", "tolerance", "note"),
    [
        (_pa(), [(200, 100, 50), (255, 255, 255)], 0, "Transparency"),
        (Image.new("La", (1, 1), (100, 128)), [(227, 227, 227)], 1, "Transparency"),  # premultiplied: 100 + 127
        (Image.new("RGBa", (1, 1), (50, 0, 128, 128)), [(177, 127, 255)], 1, "Transparency"),
        (Image.frombytes("I;16B", (2, 1), struct.pack(">2H", 32768, 65535)), [(128,) * 3, (255,) * 3], 0, "16-bit"),
        (Image.frombytes("I;16L", (2, 1), struct.pack("<2H", 32768, 65535)), [(128,) * 3, (255,) * 3], 0, "16-bit"),
        (Image.fromarray(np.array([[0, 32768, 65535]], np.int32)), [(0,) * 3, (128,) * 3, (255,) * 3], 0, "16-bit"),
        (Image.fromarray(np.array([[-100, 0, 100]], np.int32)), [(0,) * 3, (128,) * 3, (255,) * 3], 0, "32-bit"),
        (Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), [(0,) * 3, (128,) * 3, (255,) * 3], 0, "Float"),
        (Image.fromarray(np.array([[-10.0, 0.0, 10.0]], np.float32)), [(0,) * 3, (128,) * 3, (255,) * 3], 0, "Float"),
        (Image.fromarray(np.array([[np.nan, 1.0, np.inf]], np.float32)), [(0,) * 3, (255,) * 3, (0,) * 3], 0, "Float"),
        (Image.fromarray(np.array([[300.0, 300.0]], np.float32)), [(255,) * 3] * 2, 0, "Float"),
        (Image.new("RGB", (1, 1), (30, 120, 210)).convert("YCbCr"), [(30, 120, 210)], 2, None),
        (Image.new("RGBX", (1, 1), (30, 120, 210, 0)), [(30, 120, 210)], 0, None),
        (Image.new("1", (1, 1), 1), [(255, 255, 255)], 0, None),
    ],
    ids=lambda v: v.mode if isinstance(v, Image.Image) else None,
)
def test_to_rgb(img: Image.Image, expected: list[tuple[int, ...]], tolerance: int, note: str | None) -> None:
    rgb, notes = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == img.size and rgb is not img
    assert np.abs(np.array(pixels(rgb)) - np.array(expected)).max() <= tolerance, pixels(rgb)
    if note is None:
        assert notes == ()
    else:
        assert len(notes) == 1 and note in notes[0], notes


def test_opaque_alpha_needs_no_note() -> None:
    rgb, notes = to_rgb(Image.new("RGBA", (2, 2), (1, 2, 3, 255)))
    assert pixels(rgb) == [(1, 2, 3)] * 4 and notes == ()


# --- animations --------------------------------------------------------------------------------------------


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (4, 4), c) for c in (RED, (0, 255, 0), (0, 0, 255))]


@pytest.mark.parametrize(
    ("fmt", "name", "params"), [("GIF", "GIF", {}), ("PNG", "PNG", {}), ("WEBP", "WebP", {"lossless": True})]
)
def test_animation_shows_its_first_frame(fmt: str, name: str, params: dict[str, object]) -> None:
    first, *rest = _frames()
    result = loaded(encode(first, fmt, save_all=True, append_images=rest, **params))
    assert pixels(result.image) == [RED] * 16
    assert result.notes == (f"Animated {name}: showing the first of 3 frames.",)


def test_gif_with_damaged_later_frames_shows_the_first() -> None:
    frames = [f.convert("P") for f in _frames()]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    separators = [i for i, byte in enumerate(gif) if byte == 0x2C]  # "," starts each image descriptor
    cut = gif[: separators[1] + 3]  # the second frame's descriptor is cut short
    result = loaded(cut)
    assert pixels(result.image) == [RED] * 16
    assert result.notes == ("Animated GIF: showing the first frame; the later frames are damaged or cut off.",)


# --- the result ----------------------------------------------------------------------------------------------


def test_result_is_detached_from_the_input_buffer() -> None:
    buffer = bytearray(encode(Image.new("RGB", (4, 4), RED), "PNG"))
    result = loaded(buffer)
    buffer[:] = bytes(len(buffer))
    assert pixels(result.image) == [RED] * 16
    assert getattr(result.image, "fp", None) is None  # a new in-memory image, not a lazily read file


def test_load_image_returns_just_the_image() -> None:
    img = load_image(encode(Image.new("L", (3, 2), 9), "GIF"))
    assert img.mode == "RGB" and img.size == (3, 2)


@pytest.mark.parametrize(
    "limits", [{"max_bytes": 0}, {"max_pixels": 0}, {"formats": ()}, {"formats": ("TIFF",)}, {"formats": ("png",)}]
)
def test_bad_limits_are_a_callers_error_not_the_uploads(limits: dict[str, object]) -> None:
    with pytest.raises(ValueError) as info:
        load_image_with_notes(encode(Image.new("RGB", (1, 1)), "PNG"), **limits)  # type: ignore[arg-type]
    assert type(info.value) is ValueError
    assert next(iter(limits)) in str(info.value)


# --- fuzzing: nothing but an RGB image or an ImageError --------------------------------------------------------


def _seeds() -> list[bytes]:
    base = Image.new("RGB", (8, 8), (200, 30, 30))
    base.putpixel((0, 0), (0, 0, 255))
    first, *rest = [f.convert("P") for f in _frames()]
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        encode(base, "PNG"),
        encode(base, "PNG", exif=exif),
        encode(base, "JPEG", exif=exif),
        encode(base, "JPEG", progressive=True),
        _mode_cmyk(),
        _mode_p("PNG", transparency=0),
        _mode_p("GIF", transparency=0),
        encode(first, "GIF", save_all=True, append_images=rest),
        encode(base, "PNG", save_all=True, append_images=[base.convert("RGBA")]),
        encode(base, "WEBP", lossless=True),
        encode(base, "BMP"),
        MODE_CASES["I;16 (PNG)"][0],
        MODE_CASES["LA"][0],
    ]


SEEDS = _seeds()
FUZZ_LIMITS = {"max_pixels": 4_000_000}  # a mutated header may claim millions of pixels; keep each example fast


def _rgb_or_image_error(data: bytes) -> None:
    try:
        result = load_image_with_notes(data, **FUZZ_LIMITS)  # type: ignore[arg-type]
    except ImageError as exc:
        assert_plain_sentence(str(exc))
        event(f"refused: {str(exc).split(':')[0].split(';')[0]}")
        return
    event("loaded")
    assert isinstance(result, LoadedImage)
    assert result.image.mode == "RGB"
    assert result.format in ALLOWED_FORMATS
    width, height = result.original_size
    assert result.image.size in ((width, height), (height, width))
    assert math.prod(result.image.size) <= FUZZ_LIMITS["max_pixels"]
    result.image.tobytes()  # fully decoded: no lazy read left to fail later


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    edits = st.tuples(
        st.sampled_from(("flip", "truncate", "insert", "delete")),
        st.integers(0, 1 << 16),
        st.binary(min_size=1, max_size=8),
    )
    for op, at, payload in draw(st.lists(edits, min_size=1, max_size=6)):
        at %= len(data) + 1
        if op == "flip" and at < len(data):
            data[at] ^= payload[0] or 0xFF
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = payload
        else:
            del data[at : at + len(payload) * 2]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_give_rgb_or_image_error(data: bytes) -> None:
    _rgb_or_image_error(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_images_give_rgb_or_image_error(data: bytes) -> None:
    _rgb_or_image_error(data)


def test_every_seed_loads() -> None:
    """The fuzz seeds themselves are valid, so the mutations start from real files of every format."""
    assert {loaded(seed).format for seed in SEEDS} == set(ALLOWED_FORMATS)


# --- built-in inputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", images.TEST_PATTERNS)
def test_test_patterns_are_deterministic_rgb(name: str) -> None:
    img = images.test_pattern(name)
    assert img.mode == "RGB" and img.size == (224, 224)
    assert images.test_pattern(name).tobytes() == img.tobytes()
    assert images.test_pattern(name, 64).size == (64, 64)
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) >= 2


def test_test_pattern_contents() -> None:
    board = np.asarray(images.test_pattern("checkerboard", 64))
    assert tuple(board[0, 0]) == (0, 0, 0) and tuple(board[0, 8]) == (255, 255, 255) and tuple(board[8, 8]) == (0, 0, 0)
    stripes = np.asarray(images.test_pattern("stripes", 64))
    assert (stripes == stripes[:1]).all()  # vertical: every row is the same
    assert set(np.unique(stripes)) == {0, 255}
    edges = np.asarray(images.test_pattern("edges", 100))
    assert set(np.unique(edges)) == {0, 255}
    assert tuple(edges[50, 27]) == (255,) * 3 and tuple(edges[50, 71]) == (255,) * 3 and tuple(edges[5, 5]) == (0,) * 3
    gradient = np.asarray(images.test_pattern("gradient", 64))
    assert (gradient == gradient[:1]).all()  # a horizontal ramp: every row is the same
    assert tuple(gradient[0, 0]) == RED and len(np.unique(gradient[0], axis=0)) > 32


@pytest.mark.parametrize(("name", "size"), [("noise", 224), ("gradient", 4), ("gradient", 10_000)])
def test_test_pattern_refuses_bad_arguments(name: str, size: int) -> None:
    with pytest.raises(ValueError, match=r"checkerboard, edges, gradient, stripes|8\.\.4096"):
        images.test_pattern(name, size)


def test_samples_are_bundled_with_a_readme() -> None:
    samples = images.sample_images()
    assert 4 <= len(samples) <= 6
    assert list(samples) == sorted(samples)
    readme = (images.SAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    for path in samples.values():
        assert path.stat().st_size < 600 * 1024, path
        assert path.name in readme, path.name


@pytest.mark.parametrize("name", list(images.sample_images()))
def test_every_sample_loads_as_rgb(name: str) -> None:
    result = images.load_sample(name)
    assert result.image.mode == "RGB"
    assert min(result.image.size) >= 224  # big enough for a ResNet's 224 × 224 crop
    assert result.format in ALLOWED_FORMATS


def test_unknown_sample_names_the_available_ones() -> None:
    with pytest.raises(ValueError, match="chelsea"):
        images.load_sample("no such photo")


def test_samples_dir_is_in_the_repository() -> None:
    assert images.SAMPLES_DIR.is_dir()
    assert images.SAMPLES_DIR.relative_to(Path(__file__).resolve().parents[1]) == Path("assets/samples")
