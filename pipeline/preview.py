"""Pictures people look at instead of numbers: contact sheets of rendered frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def contact_sheet(frames: Sequence[np.ndarray], columns: int = 6, tile: int = 192,
                  labels: Sequence[str] | None = None) -> Image.Image:
    """Tile frames (each (H, W, 3) uint8) into one image, optionally labelled."""
    rows = (len(frames) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile, rows * tile), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame)
        image.thumbnail((tile, tile))
        x, y = (i % columns) * tile, (i // columns) * tile
        sheet.paste(image, (x + (tile - image.width) // 2, y + (tile - image.height) // 2))
        if labels is not None:
            draw.text((x + 4, y + 4), labels[i], fill=(255, 255, 0))
    return sheet


def save_contact_sheet(frames: Sequence[np.ndarray], path: str | Path, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(frames, **kwargs).save(path)
    return path
