"""Turn untrusted bytes into an RGB picture, or into one sentence that says why not.

The guarantee: for *any* bytes, `load_image_with_notes` either returns a new, fully decoded 8-bit RGB image
that owns its pixels (nothing refers back to the input buffer), or raises `ImageError`, whose message is a
single sentence a person can act on: no traceback, no Python repr.

How, in order:

1. The size in bytes is checked before anything is parsed.
2. The format is identified from the content, restricted to an allow-list (PNG, JPEG, WebP, BMP, GIF). The
   loader takes no file name, so a name can never decide how bytes are read. Content that is not an allowed
   image is only sniffed, never decoded, to say what it looks like ("it looks like HTML").
3. Width × height is read from the header and checked against a pixel budget *before* any pixel is decoded, so
   a 100-byte file claiming 50000 × 50000 pixels (a "decompression bomb") costs nothing. Pillow's own bomb
   check is kept and turned from a warning into an error as a second line.
4. Truncated or corrupt data becomes `ImageError`. Truncated images are never silently padded with grey:
   `ImageFile.LOAD_TRUNCATED_IMAGES` is left off.
5. The first frame of an animation is used, the EXIF orientation is applied, and every colour mode becomes 8-bit
   RGB: transparency is composited on white, and 16-bit, 32-bit and float images are *scaled*, not clipped
   (Pillow's own `convert("RGB")` clips a 16-bit image at 255, so it shows white). Each such step adds a note.

Also here: deterministic test patterns, and the bundled sample photos, which go through the same loader.
"""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .units import fmt_bytes

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")  # Pillow's format names
MAX_BYTES = 20 * 1024 * 1024  # the default limits; a server sets its own (server.settings)
MAX_PIXELS = 40_000_000  # width x height, checked from the header before any pixel is decoded
_DISPLAY_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF"}

# Transparent pixels are shown on white: that is what a browser puts behind a transparent PNG, so the network
# sees what the person sees (ImageNet photos have no alpha channel to learn another convention from).
_BACKGROUND = (255, 255, 255)

_ORIENTATION_TAG = 0x0112  # EXIF "Orientation"; 1 is "as stored", 2-8 are the mirrorings and rotations

# What Pillow raises for bytes it cannot decode. UnidentifiedImageError (an OSError) is handled before these.
# struct.error and IndexError come from headers shorter than they claim (e.g. in the GIF frame walker; found by
# fuzzing with mutated files, as tests/test_images.py does); like the others they only mean "corrupt".
_DECODE_ERRORS: tuple[type[Exception], ...] = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)

# EXIF parsing is looser still: a tag of an unexpected type can raise TypeError.
_METADATA_ERRORS: tuple[type[Exception], ...] = (*_DECODE_ERRORS, TypeError)


class ImageError(ValueError):
    """The bytes are not an image this app will show; the message is one sentence for the person who sent them."""


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, 8 bits per channel, fully decoded, owns its pixels
    format: str  # detected from the content: "PNG", "JPEG", "WEBP", "BMP" or "GIF"
    original_mode: str  # Pillow's mode before normalisation, e.g. "P", "I;16", "CMYK"
    original_size: tuple[int, int]  # (width, height) as stored in the file, before the EXIF rotation
    notes: tuple[str, ...]  # sentences on what was changed to show it, e.g. "Transparency composited on white."


# --- the loader ---------------------------------------------------------------------------------------


def load_image(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> Image.Image:
    """The RGB image of `load_image_with_notes`, without the metadata."""
    return load_image_with_notes(data, max_bytes=max_bytes, max_pixels=max_pixels, formats=formats).image


def load_image_with_notes(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> LoadedImage:
    """Decode untrusted bytes into an RGB image, or raise `ImageError` (see the module docstring)."""
    _check_limits(max_bytes=max_bytes, max_pixels=max_pixels, formats=formats)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageError(f"Expected the contents of a file as bytes; got {type(data).__name__}.")
    data = bytes(data)  # immutable: a caller may reuse a bytearray or memoryview once we return
    if not data:
        raise ImageError("The file is empty (0 bytes).")
    if len(data) > max_bytes:
        raise ImageError(f"The file is {fmt_bytes(len(data))}; the limit is {fmt_bytes(max_bytes)}.")

    # Pillow warns (DecompressionBombWarning) above Image.MAX_IMAGE_PIXELS and raises above twice that; the
    # warning becomes an error so nothing that large is ever decoded. catch_warnings() touches process-wide
    # state, but the filter it adds only concerns this one warning class, which only Pillow emits.
    # Pillow's UserWarnings ("Corrupt EXIF data", "Invalid APNG") are about the uploader's file: we either
    # recover or raise ImageError, so in a server's log they would only be noise that any visitor can cause.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(data, max_pixels=max_pixels, formats=formats)
        except ImageError:  # already worded; it is a ValueError, so it must pass before the line below
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(_bomb_message(exc, max_pixels)) from exc
        except MemoryError as exc:
            raise ImageError("The image needs more memory to decode than this server has free.") from exc
        except _DECODE_ERRORS as exc:
            raise ImageError(f"The file is truncated or corrupt: {_plain(exc)}") from exc


def _check_limits(*, max_bytes: int, max_pixels: int, formats: tuple[str, ...]) -> None:
    # A caller's mistake, not the upload's: plain ValueError, so it is not shown to the person as their fault.
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    if not formats or any(f not in ALLOWED_FORMATS for f in formats):
        raise ValueError(f"formats must be a non-empty subset of {ALLOWED_FORMATS}, got {formats!r}")


def _decode(data: bytes, *, max_pixels: int, formats: tuple[str, ...]) -> LoadedImage:
    img = _open(data, formats)
    try:
        # Only the header has been read so far: this is the bomb check, before a single pixel is decoded.
        width, height = img.size
        _check_pixels(width, height, max_pixels)
        fmt = str(img.format)
        animated = f"Animated {_DISPLAY_NAMES.get(fmt, fmt)}"
        notes: list[str] = []
        frames = _count_frames(img)
        if frames is None:
            # A later frame is damaged, but the first may be whole (a browser shows it too). Counting stopped
            # part-way through the file, so decode from a fresh start.
            img.close()
            img = _open(data, formats)
            notes.append(f"{animated}: showing the first frame; the later frames are damaged or cut off.")
        elif frames > 1:
            notes.append(f"{animated}: showing the first of {frames} frames.")
        img.load()
        original_mode = img.mode
        frame, orientation_note = _apply_orientation(img)
        if orientation_note:
            notes.append(orientation_note)
        rgb, mode_notes = to_rgb(frame)
    finally:
        img.close()
    rgb.load()
    return LoadedImage(rgb, fmt, original_mode, (width, height), (*notes, *mode_notes))


def _open(data: bytes, formats: tuple[str, ...]) -> Image.Image:
    """Identify the format from the content, among `formats` only; reads the header, decodes nothing."""
    try:
        return Image.open(io.BytesIO(data), formats=list(formats))
    except UnidentifiedImageError:
        raise ImageError(_unidentified_message(data, formats)) from None


def _count_frames(img: Image.Image) -> int | None:
    """Frames in an animation (1 for a still image), or None when a later frame's header is damaged.

    Counting walks the frame headers, not the pixels, and leaves `img` at its first frame when it succeeds.
    """
    try:
        return int(getattr(img, "n_frames", 1))
    except _DECODE_ERRORS:
        return None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"The image has no pixels: its header says {width} × {height}.")
    if width * height > max_pixels:
        raise ImageError(f"The image is {width} × {height} pixels; the limit is {_pixel_limit(max_pixels)}.")


def _pixel_limit(max_pixels: int) -> str:
    side = math.isqrt(max_pixels)  # the largest square that fits, as an example people can picture
    return f"{max_pixels:,} pixels (e.g. {side} × {side})"


def _bomb_message(exc: Exception, max_pixels: int) -> str:
    # Pillow refuses at its own limit, which is lower than ours when a host raises max_pixels above it; the
    # message names the limit that actually applied.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    limit = min(max_pixels, pillow_limit) if pillow_limit else max_pixels
    found = re.search(r"\((\d+) pixels\)", str(exc))  # "Image size (2500000000 pixels) exceeds limit of ..."
    declared = f"{int(found.group(1)):,} pixels" if found else "more pixels than that"
    return f"The image is too large to decode safely: it declares {declared}; the limit is {_pixel_limit(limit)}."


def _apply_orientation(img: Image.Image) -> tuple[Image.Image, str | None]:
    """Rotate/mirror as a photo viewer would (EXIF orientation); the note says what happened."""
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG)
        if orientation not in range(2, 9):
            return img, None
        return ImageOps.exif_transpose(img), "Rotated according to the EXIF orientation."
    except _METADATA_ERRORS:
        # The pixels decoded fine; only the metadata is broken. Show the image as stored rather than refuse it.
        return img, "The EXIF metadata is unreadable, so the image is shown as stored, without rotation."


def _plain(exc: BaseException) -> str:
    """Pillow's message as a plain sentence: first line, no object or bytes reprs, ending in a full stop."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = re.sub(r"<[^<>]*\bat 0x[0-9a-fA-F]+>", "…", text)  # <_io.BytesIO object at 0x7f...>
    text = re.sub(r"\bb(['\"]).*?\1", "…", text)  # b'\x00IHDR'
    text = text.strip().rstrip(".")[:200]
    return f"{text}." if text else "the decoder could not read it."


# --- telling people what they uploaded instead -----------------------------------------------------------------

# (magic bytes at offset 0, what to call it, Pillow format or None). Only used to word the error message.
_SIGNATURES: tuple[tuple[bytes, str, str | None], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "PNG"),
    (b"\xff\xd8\xff", "a JPEG image", "JPEG"),
    (b"GIF87a", "a GIF image", "GIF"),
    (b"GIF89a", "a GIF image", "GIF"),
    (b"BM", "a BMP image", "BMP"),
    (b"II*\x00", "a TIFF image", None),
    (b"MM\x00*", "a TIFF image", None),
    (b"II+\x00", "a TIFF image", None),  # BigTIFF
    (b"MM\x00+", "a TIFF image", None),
    (b"%PDF-", "a PDF document", None),
    (b"%!PS", "an EPS/PostScript file", None),
    (b"\xc5\xd0\xd3\xc6", "an EPS/PostScript file", None),  # DOS EPS binary header
    (b"PK\x03\x04", "a ZIP archive (or an Office document)", None),
    (b"PK\x05\x06", "a ZIP archive (or an Office document)", None),
    (b"8BPS", "a Photoshop (PSD) file", None),
    (b"\x00\x00\x01\x00", "an ICO icon", None),
    (b"\x1f\x8b", "a gzip archive", None),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")


def sniff(data: bytes) -> tuple[str, str | None] | None:
    """What the first bytes say a file is, e.g. ("a TIFF image", None) or ("a PNG image", "PNG").

    The second item is the Pillow format when it is one of ALLOWED_FORMATS. Nothing is decoded: this only words
    error messages, it never decides how bytes are read.
    """
    for magic, kind, fmt in _SIGNATURES:
        if data.startswith(magic):
            return kind, fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image", "WEBP"
    if data[4:8] == b"ftyp":  # ISO base media file: HEIC/AVIF photos and MP4/MOV videos share this header
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return "a HEIC/HEIF photo (the iPhone default; export it as JPEG)", None
        if brand in (b"avif", b"avis"):
            return "an AVIF image", None
        return "a video or other media file", None
    return _sniff_text(data[:2048])


def _sniff_text(head: bytes) -> tuple[str, str | None] | None:
    if b"\x00" in head:
        return None
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").lower()
    printable = sum(c.isprintable() or c in "\t\r\n" for c in text)
    if not text or printable < 0.95 * len(text):
        return None
    if text.startswith(("<!doctype html", "<html")):
        return "HTML", None
    if "<svg" in text:
        return "an SVG drawing", None
    if "<html" in text or "<body" in text or "<head" in text:
        return "HTML", None
    if text.startswith("<"):
        return "XML", None
    return "text", None


def _unidentified_message(data: bytes, formats: tuple[str, ...]) -> str:
    accepted = _join_or([_DISPLAY_NAMES[f] for f in formats])
    found = sniff(data)
    if found is None:
        return f"This file is not an image in a supported format ({accepted}); it matches no known image format."
    kind, fmt = found
    if fmt in formats:
        # Pillow knows this format but could not parse its header: the signature is right, the rest is not.
        return f"The file starts like {kind}, but its header is corrupt."
    return f"This file is not an image in a supported format ({accepted}); it looks like {kind}."


def _join_or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# --- colour modes ----------------------------------------------------------------------------------------


def to_rgb(image: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    """A new 8-bit RGB copy of an image in any Pillow mode, and notes on what had to change.

    Transparency is composited on white; 16-bit, 32-bit and float pixels are scaled to 0..255 (see `scale_to_8bit`).
    """
    mode = image.mode
    if mode == "RGB":
        return image.copy(), ()
    if mode in ("I", "F") or mode.startswith("I;16"):
        grey, note = scale_to_8bit(np.asarray(image), mode)
        return Image.fromarray(grey).convert("RGB"), (note,)
    if mode in ("La", "RGBa"):  # premultiplied alpha: un-premultiply first (Pillow converts La only to LA)
        image = image.convert("LA" if mode == "La" else "RGBA")
    try:
        if image.mode in ("LA", "PA", "RGBA") or "transparency" in image.info:
            rgba = image.convert("RGBA")  # also turns a palette's or a colour key's transparency into alpha
            if np.asarray(rgba.getchannel("A")).min() < 255:
                return _composite(rgba), ("Transparency composited on white.",)
            return rgba.convert("RGB"), ()
        rgb = image.convert("RGB")  # 1, L, P, CMYK, YCbCr, RGBX, LAB, HSV
    except ValueError as exc:  # "conversion from X to RGB not supported"
        raise ImageError(f"The image's colour mode ({mode}) cannot be shown as RGB.") from exc
    if mode == "CMYK":
        return rgb, ("CMYK colours converted to RGB without a colour profile, so they are approximate.",)
    return rgb, ()


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def scale_to_8bit(values: np.ndarray, mode: str) -> tuple[np.ndarray, str]:
    """(H, W) samples of a 16-bit, 32-bit integer or float image -> (H, W) uint8, and a note saying how.

    - "I;16*": 0..65535 -> 0..255 by dividing by 257 (65535 = 255 × 257), rounded: mid-grey stays mid-grey.
    - "I" within 0..65535: the same; that is how Pillow holds 16-bit samples in a 32-bit image.
    - "I" beyond that, and "F" outside 0..1: stretched from its own minimum..maximum, as the type's full range
      (±2³¹, or any float) would squeeze real data into one grey.
    - "F" within 0..1: times 255. NaN and ±inf count as 0.
    """
    if values.size == 0:
        return np.zeros(values.shape, np.uint8), "Empty image."
    if mode.startswith("I;16") or (mode == "I" and values.min() >= 0 and values.max() <= 65535):
        scaled = (values.astype(np.uint32) + 128) // 257
        return scaled.astype(np.uint8), "16-bit image scaled to 8 bits."
    floats = values.astype(np.float64)
    floats[~np.isfinite(floats)] = 0.0
    lo, hi = float(floats.min()), float(floats.max())
    kind = "32-bit integer" if mode == "I" else "Floating-point"
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return np.rint(floats * 255.0).astype(np.uint8), "Floating-point image scaled from 0..1 to 8 bits."
    if hi == lo:  # a flat image has no range to stretch: keep its value, clipped to 0..255
        return np.full(values.shape, np.clip(np.rint(lo), 0, 255), np.uint8), f"{kind} image of one value, {lo:g}."
    stretched = np.rint((floats - lo) * 255.0 / (hi - lo))
    return stretched.astype(np.uint8), f"{kind} image stretched from its range {lo:g}..{hi:g} to 8 bits."


# --- built-in inputs ---------------------------------------------------------------------------------------

TEST_PATTERNS: tuple[str, ...] = ("checkerboard", "edges", "gradient", "stripes")
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"
_SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def test_pattern(name: str, size: int = 224) -> Image.Image:
    """A deterministic size × size RGB pattern: what each kind of filter responds to, without a photo.

    checkerboard: 8 × 8 black and white squares. edges: a white square and a white disc on black.
    gradient: the hues of the rainbow from left to right. stripes: vertical black and white stripes.
    """
    if name not in TEST_PATTERNS:
        raise ValueError(f"unknown test pattern {name!r}; choose one of {', '.join(TEST_PATTERNS)}")
    if not 8 <= size <= 4096:
        raise ValueError(f"size must be 8..4096 pixels, got {size}")
    y, x = np.mgrid[0:size, 0:size]  # (size, size) each
    if name == "checkerboard":
        cell = size / 8
        grey = (((x // cell) + (y // cell)) % 2 * 255).astype(np.uint8)
    elif name == "stripes":
        grey = ((x // max(1, size // 16)) % 2 * 255).astype(np.uint8)
    elif name == "edges":
        square = (x >= 0.12 * size) & (x < 0.42 * size) & (y >= 0.35 * size) & (y < 0.65 * size)
        disc = (x - 0.71 * size) ** 2 + (y - 0.5 * size) ** 2 < (0.17 * size) ** 2
        grey = ((square | disc) * 255).astype(np.uint8)
    else:  # gradient
        hue = (x * 255 // max(1, size - 1)).astype(np.uint8)
        full = Image.new("L", (size, size), 255)  # full saturation and value
        return Image.merge("HSV", (Image.fromarray(hue), full, full)).convert("RGB")
    return Image.fromarray(grey).convert("RGB")


def sample_images() -> dict[str, Path]:
    """The bundled photos (see assets/samples/README.md), name -> path, sorted by name."""
    if not SAMPLES_DIR.is_dir():
        return {}
    files = sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in _SAMPLE_SUFFIXES)
    return {p.stem: p for p in files}


def load_sample(name: str) -> LoadedImage:
    """A bundled photo, decoded by the same loader as an upload."""
    samples = sample_images()
    if name not in samples:
        raise ValueError(f"unknown sample {name!r}; available: {', '.join(samples) or 'none'}")
    return load_image_with_notes(samples[name].read_bytes())
