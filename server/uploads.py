"""A visitor's upload: bytes in, an image within this server's limits out, or one sentence that says why not."""

from __future__ import annotations

import hashlib

from resnet_core.images import LoadedImage, load_image_with_notes
from server.settings import LIMITS


def limits_text() -> str:
    """What the upload widget says it accepts."""
    return f"At most {LIMITS.upload_max_bytes // 2**20} MB and {LIMITS.upload_max_pixels:,} pixels."


def load_upload(data: bytes) -> tuple[str, LoadedImage]:
    """The upload's identity (its content hash: the same picture under another name is the same image) and its
    image, decoded within RESNET_UPLOAD_MAX_BYTES and RESNET_UPLOAD_MAX_PIXELS; raises ImageError."""
    loaded = load_image_with_notes(data, max_bytes=LIMITS.upload_max_bytes, max_pixels=LIMITS.upload_max_pixels)
    return f"upload:{hashlib.sha256(data).hexdigest()}", loaded
