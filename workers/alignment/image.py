"""Reading portraits: any Pillow-readable photo (JPEG, PNG, WebP...), checked before decoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import BadInputError

MAX_PIXELS = 50_000_000


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a photo to RGB uint8 (H, W, 3), upright per its EXIF orientation.

    Raises BadInputError for a missing, empty, non-image, truncated or oversized file; the
    pixel limit is checked from the header, before any pixels are decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError("image file not found", path)
    if path.stat().st_size == 0:
        raise BadInputError("image file is empty", path)
    Image.MAX_IMAGE_PIXELS = None  # our own limit below replaces Pillow's bomb warning
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise BadInputError(
                    f"image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
                    f"the limit is {max_pixels / 1e6:.0f} megapixels", path)
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise BadInputError("not an image file (expected JPEG, PNG or WebP)", path) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadInputError(f"image file is corrupt or truncated ({err})", path) from None
