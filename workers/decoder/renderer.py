"""The face decoder: motion latents -> RGB frames, by warping the real photo.

Per frame: target landmarks from the face model; a thin-plate-spline backward flow from
target to source positions of ~250 control points (face landmarks, a rigid ring around
the head for hair and ears, neck points that follow the head part of the way, fixed
anchors on the border of the face region so the background stays put), evaluated on a
coarse grid, upsampled and applied with ``grid_sample``; then the synthesised mouth
interior where the lips part and the irises redrawn inside the eye openings for gaze.
Everything is batched torch and runs unchanged on CPU or GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from workers.alignment.face import AlignedFace
from workers.decoder.mouth import (
    close_photo_mouth,
    map_lips,
    mouth_light,
    paint_mouth,
)
from workers.decoder.region import region_grid
from workers.decoder.shapes import (
    between_curves_distance,
    polyline_y,
    smoothstep,
    soft_inside,
    sorted_by_x,
    unit_grain,
)
from workers.decoder.spline import fit_thin_plate
from workers.decoder.teeth import mirrored_teeth, teeth_affine, teeth_plate, teeth_reach
from workers.face import topology as topo
from workers.face.latents import DYNAMICS, POSE_SLICE, dyn_index

DECODER_VERSION = "talkfarm-warp-decoder-18"
WARP_MAX_BLINK = 0.5
# Skull-fixed landmarks (nose base) the upper teeth follow, and chin landmarks (moved by the
# jaw's rotation alone, far from the lips) the lower teeth follow.
_SKULL = (1, 2, 4, 5, 98, 327, 195, 64, 294)
_MANDIBLE = (152, 175, 199, 200, 148, 377, 176, 400)
_MOUTH_DYNAMICS = [dyn_index(name) for name in DYNAMICS if name in (
    "jaw_open", "lip_stretch", "lip_pucker", "lip_press", "upper_lip_raise", "lower_lip_depress")]
# A set of teeth smaller than this (pixels) is too little of the photo to carry as a plate.
MIN_PLATE_PIXELS = 60
# ... and one smaller than this too little to give its own colour.
MIN_SET_PIXELS = 20
_EYES = (
    (topo.RIGHT_IRIS, topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER),
    (topo.LEFT_IRIS, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER),
)


@dataclass(frozen=True)
class DecoderConfig:
    """Decoder settings.

    Attributes:
        device: torch device for the warp ("cpu", "cuda", "cuda:1").
        batch_frames: frames warped per batched call.
        grid_step: pixels between flow-grid nodes; the flow is upsampled bilinearly.
        regularization: thin-plate smoothing (normalised units).
        region_margin: face-region half-size over the face's half-size.
        max_paste_side: longest side of paste-back output, pixels (bigger photos are scaled).
    """

    device: str = "cpu"
    batch_frames: int = 25
    grid_step: int = 10
    regularization: float = 1e-6
    region_margin: float = 1.45
    max_paste_side: int = 1920


class FaceRenderer:
    """Renders one aligned face for any motion latents. Build once per request."""

    def __init__(self, face: AlignedFace, config: DecoderConfig = DecoderConfig(),
                 distance: float = 1.0, paste_back: bool = False, redraw_eyes: bool = True):
        self.config = config
        # Without redraw_eyes the eyes are only warped, not painted (no iris sprite, no lid):
        # for a caller that keeps none of the frame's eye pixels (a dub's lower-face paste).
        self.redraw_eyes = redraw_eyes
        self.face = face
        self.model = face.model
        self.size = size = face.crop.shape[0]
        device = self.device = torch.device(config.device)
        self.dtype = torch.float32
        self.paste_back = paste_back
        self.source_u8 = torch.as_tensor(face.crop, device=device).permute(2, 0, 1)[None]
        source_motion = torch.as_tensor(self.model.source_latent[None], dtype=self.dtype, device=device)
        self.source_points = self.model.landmarks(source_motion)[0, :, :2]            # (478, 2)
        # The warp samples a copy of the photo whose mouth interior is lip, so a closed mouth
        # shows no squeezed strip of the photo's teeth (see close_photo_mouth).
        # The photo's own landmarks, not the source latent's decode: a barely parted photo's
        # model closes its lips (FaceModel.from_landmarks), while its pixels still show the gap.
        points = np.asarray(face.landmarks, dtype=np.float64)[:, :2]
        self.mouth = face.mouth
        # A mouth the photo hides (hand, microphone) or cuts off is left as it is: the mouth
        # dynamics stay the photo's and nothing is painted.
        self.keep_mouth = face.mouth.hidden is not None
        if self.keep_mouth:
            warp_source = face.crop
        else:
            warp_source = close_photo_mouth(face.crop, points[list(topo.LIP_INNER_UPPER)],
                                            points[list(topo.LIP_INNER_LOWER)])
        self._prepare_lips(points)
        self.source = self._image(warp_source)                                        # (1, 3, S, S)
        self.source_pose = source_motion[:, POSE_SLICE]
        self.control_index = torch.tensor(topo.WARP_CONTROL, device=device)
        # Inner-lip partners, as positions in the control list: closed lips put each on one spot.
        position = {landmark: i for i, landmark in enumerate(topo.WARP_CONTROL)}
        self.meeting_pairs = torch.tensor([[position[u], position[l]] for u, l in
                                           zip(topo.LIP_INNER_UPPER[1:-1], topo.LIP_INNER_LOWER[1:-1])],
                                          dtype=torch.long, device=device)
        self.blink_index = [dyn_index("blink_left"), dyn_index("blink_right")]

        # The region that may change: a box around the face, grown for hair, neck and the
        # head-distance control. Outside it every frame is the photo itself.
        oval = self.source_points[list(topo.FACE_OVAL)]
        center = (oval.amin(0) + oval.amax(0)) / 2
        half = float((oval.amax(0) - oval.amin(0)).max()) / 2 * config.region_margin * max(1.0, distance)
        x0, y0 = (center - half).floor().clamp(0, size).int().tolist()
        x1, y1 = (center + half).ceil().clamp(0, size).int().tolist()
        self.region = (x0, y0, x1, y1)
        identity = torch.as_tensor(self.model.identity, dtype=self.dtype, device=device)
        upper_oval = identity[list(topo.FACE_OVAL)]
        upper_oval = upper_oval[upper_oval[:, 1] < identity[1, 1]]
        # Rings around the upper face carry hair and ears rigidly with the head; they keep
        # the outline's depth so a turn moves them with the face edge, not against it.
        rings = [upper_oval * torch.tensor([f, f, 1.0], device=device) for f in (1.25, 1.45)]
        self.head_ring = torch.cat(rings)                                             # canonical
        chin = identity[152]
        offsets = torch.tensor([[-0.4, 0.4, 0.0], [0.0, 0.4, 0.0], [0.4, 0.4, 0.0],
                                [-0.55, 0.8, 0.0], [0.0, 0.8, 0.0], [0.55, 0.8, 0.0]], device=device)
        self.neck_follow = torch.tensor([0.55, 0.55, 0.55, 0.25, 0.25, 0.25], device=device)[:, None]
        self.chin = chin
        self.neck_source = self.model.project(chin + offsets, self.source_pose)[0, :, :2]
        self.ring_source = self.model.project(self.head_ring, self.source_pose)[0, :, :2]
        self.chin_source = self.model.project(chin[None], self.source_pose)[0, 0, :2]

        # The grid geometry depends on the region box alone: shared between renderers.
        grid = region_grid(size, self.region, config.grid_step, str(device), self.dtype)
        self.anchors = grid.anchors
        self.grid_shape, self.grid_points, self.taper = grid.shape, grid.points, grid.taper
        self.region_pixels, self.region_grid = grid.pixels, grid.sample_grid
        self.flow_grid, self.upsample_y, self.upsample_x = grid.flow_grid, grid.upsample_y, grid.upsample_x
        self.source_controls = torch.cat([self.source_points[self.control_index], self.ring_source,
                                          self.neck_source, self.anchors])              # (N, 2)

        if redraw_eyes:
            self._prepare_eyes()
        lips = self.source_points[list(topo.LIPS_ALL)]
        lx0, ly0 = (lips.amin(0) - 10).clamp(0, size - 1).int().tolist()
        lx1, ly1 = (lips.amax(0) + 10).clamp(1, size).int().tolist()
        self.light = mouth_light(self.source[0], (lx0, ly0, lx1, ly1))
        self._prepare_teeth()
        if paste_back:
            self._prepare_paste_back()

    def _prepare_lips(self, points: np.ndarray) -> None:
        """The photo's four lip lines as heights per crop column (see map_lips); only a photo
        whose lips are parted needs them (closed lips are carried whole by the spline)."""
        xs = np.arange(self.size) + 0.5
        rows = []
        for line in (topo.LIP_OUTER_UPPER, topo.LIP_INNER_UPPER, topo.LIP_INNER_LOWER, topo.LIP_OUTER_LOWER):
            xy = points[list(line)]
            order = np.argsort(xy[:, 0])
            rows.append(np.interp(xs, xy[order, 0], xy[order, 1]))
        rows[2] = np.maximum(rows[2], rows[1])
        parted = (rows[2] - rows[1]).max() > 1.0
        self.photo_lip_rows = (torch.as_tensor(np.stack(rows), dtype=self.dtype, device=self.device)
                               if parted and not self.keep_mouth else None)

    def _prepare_teeth(self) -> None:
        """The photo's own teeth as plates (upper on the skull, lower on the jaw), their colour
        under the photo's light for the teeth it never showed, and its grain."""
        mouth, crop = self.mouth, self.face.crop
        self.plates: list[tuple[torch.Tensor, tuple[int, ...]]] = []
        self.teeth_rgb, self.teeth_span, self.built_teeth, self.photo_opening = None, (1.0, 1.0), (), 0.0
        size = self.size
        xs = np.arange(size) + 0.5
        points = self.source_points.cpu().numpy()

        def line(index):
            xy = points[list(index)]
            order = np.argsort(xy[:, 0])
            return np.interp(xs, xy[order, 0], xy[order, 1])

        if mouth.teeth_visible and not self.keep_mouth:
            # Each set's own colour where the photo shows enough of it (the upper teeth of a
            # mid-speech photo are in the upper lip's shadow, the lower ones lit), else all teeth's.
            self.teeth_rgb = torch.as_tensor(np.stack([
                crop[teeth].mean(0) / 255.0 if teeth.sum() >= MIN_SET_PIXELS else mouth.teeth_rgb
                for teeth in (mouth.upper_teeth, mouth.lower_teeth)]), dtype=self.dtype, device=self.device)
            upper, lower = mouth.upper_teeth, mouth.lower_teeth
            inner = points[list(topo.LIP_INNER_UPPER), 0]
            middle, half = 0.5 * (inner.max() + inner.min()), max(0.5 * (inner.max() - inner.min()), 1.0)
            self.teeth_span = tuple(float(np.abs(xs[teeth.any(0)] - middle).max() / half)
                                    if teeth.sum() >= MIN_SET_PIXELS else 1.0 for teeth in (upper, lower))
            outer_up, inner_up, inner_low, outer_low = (line(index) for index in (
                topo.LIP_OUTER_UPPER, topo.LIP_INNER_UPPER, topo.LIP_INNER_LOWER, topo.LIP_OUTER_LOWER))
            self.photo_opening = float((inner_low - inner_up).max() / (2.0 * half))  # mouth widths, as paint_mouth's
            for teeth, anchors, toward in (
                    (lower, _MANDIBLE, teeth_reach(lower, upper, outer_low, inner_up, hangs=False)),
                    (upper, _SKULL, teeth_reach(upper, lower, outer_up, inner_low, hangs=True))):
                if teeth.sum() < MIN_PLATE_PIXELS:
                    continue
                plate = teeth_plate(crop, teeth, toward, mouth.noise, opening=mouth.interior if anchors == _SKULL else None,
                                    lip=inner_low if anchors == _MANDIBLE and upper.sum() < MIN_PLATE_PIXELS else None)
                self.plates.append((torch.as_tensor(plate, dtype=self.dtype, device=self.device).permute(2, 0, 1)[None],
                                    anchors))
            # A photo that shows its upper teeth well enough for a plate and not the lower: they build
            # the lower set it never showed, in their colour (workers/decoder/teeth.py). Showing only
            # its lower teeth (the upper in the lip's shade), or too little for a plate: the real
            # interiors, as for a photo without teeth, behind what plate it has. (decoder-13 built an
            # upper set from the lower: a bright ring round a flat tongue on webcam frames.)
            if len(self.plates) == 1 and self.plates[0][1] == _SKULL:
                self.built_teeth = (mirrored_teeth(self.plates[0][0], upper, inner_up, middle, half,
                                                   crop[upper].mean(0) / 255.0, self.teeth_span[0],
                                                   self.device, self.dtype),)
            elif len(self.plates) < 2:
                self.teeth_rgb, self.teeth_span = None, (1.0, 1.0)
        # The photo's softness at the crop's scale: a photo enlarged k times into the crop is
        # about k times as soft as its own half-pixel blur.
        enlarged = float(np.sqrt(abs(np.linalg.det(self.face.crop_from_photo[:, :2]))))
        self.blur = 0.5 * max(1.0, enlarged)
        self.grain = torch.as_tensor(max(mouth.noise, 0.004) * unit_grain(size), dtype=self.dtype, device=self.device)

    def _image(self, rgb: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(rgb, device=self.device).permute(2, 0, 1)[None].to(self.dtype) / 255.0

    def _prepare_eyes(self) -> None:
        """Split each eye into an iris sprite and an iris-free eyeball, so gaze can move the iris."""
        whole = self.face.crop
        points = self.source_points.cpu().numpy()
        # Everything below happens within a box around both eyes (their lids and irises grown
        # past the iris disc, the 5-px dilation and the inpainting radius), in its pixels.
        eye_points = points[[i for eye in _EYES for part in eye for i in part]]
        largest_iris = max(float(np.linalg.norm(points[list(iris[1:])] - points[iris[0]], axis=1).mean())
                           for iris, _, _ in _EYES)
        reach = 1.15 * largest_iris + 12.0
        (x0, y0), (x1, y1) = np.floor(eye_points.min(0) - reach), np.ceil(eye_points.max(0) + reach)
        x0, x1 = (int(np.clip(v, 0, whole.shape[1])) for v in (x0, x1))
        y0, y1 = (int(np.clip(v, 0, whole.shape[0])) for v in (y0, y1))
        if x1 - x0 < 2 or y1 - y0 < 2:
            x0, y0, x1, y1 = 0, 0, whole.shape[1], whole.shape[0]
        crop = whole[y0:y1, x0:x1]
        points = points - (x0, y0)
        sprite = crop.copy()
        hole = np.zeros(crop.shape[:2], np.uint8)
        self.iris_radius = []
        scleras = []
        yy, xx = np.mgrid[0:crop.shape[0], 0:crop.shape[1]] + 0.5
        for iris, upper, lower in _EYES:
            polygon = list(upper) + list(lower[-2:0:-1])
            center = points[iris[0]]
            radius = float(np.linalg.norm(points[list(iris[1:])] - center, axis=1).mean())
            self.iris_radius.append(radius)
            disc = (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= (1.15 * radius) ** 2
            opening = np.zeros_like(hole)
            cv2.fillPoly(opening, [np.round(points[polygon] * 4).astype(np.int32)], 1, shift=2)
            visible = disc & (cv2.erode(opening, np.ones((3, 3), np.uint8)) > 0)
            if visible.sum() >= 4:
                # Parts of the iris hidden by the lids get its median colour, so a lowered
                # gaze never drags eyelid skin into the eye.
                sprite[disc & ~visible] = np.median(crop[visible], axis=0).astype(np.uint8)
            eye_hole = disc & (cv2.dilate(opening, np.ones((5, 5), np.uint8)) > 0)
            hole |= eye_hole.astype(np.uint8)
            sclera = (opening > 0) & ~eye_hole
            scleras.append((eye_hole, np.median(crop[sclera], axis=0) if sclera.sum() >= 4 else None))
        eyeball = cv2.inpaint(crop, hole, 4, cv2.INPAINT_TELEA).astype(np.float32)
        # Inpainting pulls in the dark lashes around the iris; lean the filled-in eyeball
        # toward the colour of the sclera that is actually visible.
        for eye_hole, sclera_rgb in scleras:
            if sclera_rgb is not None:
                eyeball[eye_hole] = 0.35 * eyeball[eye_hole] + 0.65 * sclera_rgb
        eyeball = eyeball.round().clip(0, 255).astype(np.uint8)
        whole_sprite, whole_eyeball = whole.copy(), whole.copy()
        whole_sprite[y0:y1, x0:x1] = sprite
        whole_eyeball[y0:y1, x0:x1] = eyeball
        self.iris_sprite = self._image(whole_sprite)
        self.eyeball = self._image(whole_eyeball)

    def _prepare_paste_back(self) -> None:
        photo = self.face.photo
        height, width = photo.shape[:2]
        factor = min(1.0, self.config.max_paste_side / max(height, width))
        out_w, out_h = int(round(width * factor / 2)) * 2, int(round(height * factor / 2)) * 2
        scaled = cv2.resize(photo, (out_w, out_h), interpolation=cv2.INTER_AREA) if (out_w, out_h) != (width, height) else photo
        self.photo = self._image(scaled)
        matrix = self.face.crop_from_photo.astype(np.float64)
        # out pixel u -> photo pixel u * (width / out_w) -> crop pixel
        to_crop = matrix[:, :2] @ np.diag([width / out_w, height / out_h])
        offset = matrix[:, 2]
        x0, y0, x1, y1 = self.region
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)
        inverse = np.linalg.inv(to_crop)
        photo_corners = (corners - offset) @ inverse.T
        px0, py0 = np.floor(photo_corners.min(0)).clip(0, [out_w, out_h]).astype(int)
        px1, py1 = np.ceil(photo_corners.max(0)).clip(0, [out_w, out_h]).astype(int)
        self.paste_box = (int(px0), int(py0), int(px1), int(py1))
        u, v = np.meshgrid(np.arange(px0, px1) + 0.5, np.arange(py0, py1) + 0.5)
        crop_xy = np.stack([u, v], -1) @ to_crop.T + offset - 0.5                    # (h, w, 2) crop pixel
        inside = np.minimum.reduce([crop_xy[..., 0] - x0, x1 - crop_xy[..., 0], crop_xy[..., 1] - y0, y1 - crop_xy[..., 1]])
        self.paste_mask = torch.as_tensor(np.clip(inside / 6.0, 0, 1), dtype=self.dtype, device=self.device)[None, None]
        grid = (crop_xy + 0.5) / self.size * 2 - 1
        self.paste_grid = torch.as_tensor(grid, dtype=self.dtype, device=self.device)[None]

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the frames :meth:`render` returns."""
        if self.paste_back:
            return self.photo.shape[3], self.photo.shape[2]
        return self.size, self.size

    @torch.inference_mode()
    def render(self, motion: np.ndarray) -> np.ndarray:
        """Motion latents (T, MOTION_DIM) -> frames (T, H, W, 3) uint8 RGB."""
        width, height = self.output_size
        out = np.empty((len(motion), height, width, 3), np.uint8)
        for start in range(0, len(motion), self.config.batch_frames):
            chunk = torch.as_tensor(motion[start:start + self.config.batch_frames], dtype=self.dtype, device=self.device)
            frames = self.render_tensor(chunk).permute(0, 2, 3, 1)
            out[start:start + len(chunk)] = frames.cpu().numpy()
        return out

    def render_tensor(self, motion: torch.Tensor) -> torch.Tensor:
        """Motion latents (B, MOTION_DIM) on the device -> frames (B, 3, H, W) uint8."""
        region = self._render_region(motion)
        x0, y0, x1, y1 = self.region
        if self.paste_back:
            crops = self.source.expand(len(motion), -1, -1, -1).clone()
            crops[:, :, y0:y1, x0:x1] = region
            return _to_uint8(self._paste(crops))
        # Only the face region changes; everything else is the photo's own pixels.
        frames = self.source_u8.expand(len(motion), -1, -1, -1).clone()
        frames[:, :, y0:y1, x0:x1] = _to_uint8(region)
        return frames

    def _render_region(self, motion: torch.Tensor) -> torch.Tensor:
        """The face region of each frame, (B, 3, h, w) float in [0, 1]."""
        batch = motion.shape[0]
        if self.keep_mouth:
            motion = motion.clone()
            motion[:, _MOUTH_DYNAMICS] = torch.as_tensor(self.model.source_latent[_MOUTH_DYNAMICS], dtype=motion.dtype,
                                                         device=motion.device)
        target = self.model.landmarks(motion)[..., :2]                                 # (B, 478, 2)
        # The warp closes the lids only half way: a backward warp cannot fold the eyeball
        # away under a fully closed lid. The rest of a blink is painted in _paint_eyes.
        half_blink = motion.clone()
        half_blink[:, self.blink_index] = half_blink[:, self.blink_index].clamp(max=WARP_MAX_BLINK)
        warp_target = self.model.landmarks(half_blink)[..., :2]
        pose = motion[:, POSE_SLICE]
        ring = self.model.project(self.head_ring, pose)[..., :2]
        chin_move = self.model.project(self.chin[None], pose)[:, 0, :2] - self.chin_source
        neck = self.neck_source + self.neck_follow * chin_move[:, None, :]
        anchors = self.anchors.expand(batch, -1, -1)
        target_controls = torch.cat([warp_target[:, self.control_index], ring, neck, anchors], 1)
        scale = float(self.size)
        coefficients = fit_thin_plate(target_controls / scale, (self.source_controls - target_controls) / scale,
                                      self.config.regularization, self.meeting_pairs)
        # Flow in grid_sample's normalised units (2 / size per pixel), tapered to zero at the edge.
        flow = self.flow_grid(target_controls / scale, coefficients * 2.0)               # (B, gh * gw, 2)
        flow = flow.reshape(batch, *self.grid_shape, 2).permute(0, 3, 1, 2) * self.taper  # (B, 2, gh, gw)
        flow = self.upsample_y @ flow.reshape(batch * 2, *self.grid_shape) @ self.upsample_x  # (2B, h, w)
        height, width = flow.shape[1:]
        # grid_sample reads a channels-last grid about twice as fast when it is contiguous:
        # the add writes it that way in the same pass.
        grid = torch.empty(batch, height, width, 2, dtype=self.dtype, device=self.device)
        torch.add(flow.view(batch, 2, height, width).permute(0, 2, 3, 1), self.region_grid, out=grid)
        if self.photo_lip_rows is not None:
            self._map_lips(grid, target)
        region = F.grid_sample(self.source.expand(batch, -1, -1, -1), grid, mode="bilinear",
                               padding_mode="border", align_corners=False)
        if self.redraw_eyes:
            self._paint_eyes(region, target, warp_target, grid, motion)
        if not self.keep_mouth:
            self._paint_mouth(region, target)
        return region

    def _map_lips(self, grid: torch.Tensor, target: torch.Tensor) -> None:
        rx0, ry0 = self.region[:2]
        lines = [target[:, list(line)] for line in (topo.LIP_OUTER_UPPER, topo.LIP_INNER_UPPER,
                                                     topo.LIP_INNER_LOWER, topo.LIP_OUTER_LOWER)]
        reach = float(self.config.grid_step)
        bx0, by0, bx1, by1 = self._box(torch.cat([lines[0], lines[3]], 1), int(np.ceil(reach)) + 1)
        if bx1 <= bx0 or by1 <= by0:
            return
        box = grid[:, by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]
        map_lips(box, (bx0, by0), self.size, lines, self.photo_lip_rows, reach)

    def _box(self, points: torch.Tensor, pad: int) -> tuple[int, int, int, int]:
        """Integer box around (B, N, 2) points over the whole batch, clipped to the region."""
        x0, y0, x1, y1 = self.region
        bx0, by0 = (points.reshape(-1, 2).amin(0) - pad).floor().int().tolist()
        bx1, by1 = (points.reshape(-1, 2).amax(0) + pad).ceil().int().tolist()
        return max(bx0, x0), max(by0, y0), min(bx1, x1), min(by1, y1)

    def _paint_eyes(self, region: torch.Tensor, target: torch.Tensor, warp_target: torch.Tensor,
                    grid: torch.Tensor, motion: torch.Tensor) -> None:
        """Redraw each eye: the eyelid where a blink closes past the warp, then the opening
        with the iris-free eyeball warped and the iris sprite at the gaze position."""
        rx0, ry0 = self.region[:2]
        batch = len(grid)
        zoom = (motion[:, 5] - self.source_pose[0, 5]).exp()                              # (B,)
        for (iris, upper, lower), radius in zip(_EYES, self.iris_radius):
            lid_top, lid_bottom = target[:, list(upper)], target[:, list(lower)]
            warped_top = warp_target[:, list(upper)]
            bx0, by0, bx1, by1 = self._box(torch.cat([warped_top, lid_bottom], 1), 3)
            if bx1 <= bx0 or by1 <= by0:
                continue
            pixels = self.region_pixels[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]              # (h, w, 2)
            columns, rows = pixels[0, :, 0], pixels[:, 0, 1]
            view = region[:, :, by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]
            opening = soft_inside(between_curves_distance(columns, rows, lid_top, lid_bottom))[:, None]
            warped_opening = soft_inside(between_curves_distance(columns, rows, warped_top, lid_bottom))[:, None]
            closing = (warped_opening - opening).clamp_min(0.0)
            if float(closing.max()) > 0.0:
                # Lid skin from a little above the warped (half-closed) lash line down to the
                # real lid line, mirrored from the skin above it: the warped lashes and the
                # top of the iris they overlap are covered, and the lashes drawn again at the
                # real lid line.
                top_half = polyline_y(columns, sorted_by_x(warped_top))[:, None, :]        # (B, 1, w)
                top_full = polyline_y(columns, sorted_by_x(lid_top))[:, None, :]
                closure = smoothstep(0.5, 3.0, top_full - top_half)
                axis = top_half - 0.35 * (top_full - top_half).clamp_min(0.0) - 2.0
                y = rows[None, :, None]
                lid = closure * smoothstep(axis - 0.5, axis + 0.5, y) * (1.0 - smoothstep(top_full - 0.5, top_full + 0.5, y))
                lid = (lid * warped_opening.amax(2, keepdim=True)[:, 0].clamp(0, 1))[:, None]     # within the eye's width
                mirror = (2.0 * axis - y - 1.0 - ry0).round().long().clamp(0, grid.shape[1] - 1)   # (B, h, w)
                cols = torch.arange(bx0 - rx0, bx1 - rx0, device=grid.device)
                lid_grid = grid[torch.arange(batch, device=grid.device)[:, None, None], mirror, cols[None, None, :]]
                skin = F.grid_sample(self.source.expand(batch, -1, -1, -1), lid_grid, mode="bilinear",
                                     padding_mode="border", align_corners=False)
                lashes = torch.exp(-((y - top_full + 0.5) / 1.3).square())
                skin = skin * (1.0 - 0.6 * lashes[:, None])
                view.add_(lid * (skin - view))
            if float(opening.max()) == 0.0:
                continue
            eye_grid = grid[:, by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]
            eyeball = F.grid_sample(self.eyeball.expand(len(grid), -1, -1, -1), eye_grid, mode="bilinear",
                                    padding_mode="border", align_corners=False)
            center_t = target[:, iris[0]]                                                  # (B, 2)
            radius_t = radius * zoom                                                       # (B,)
            rel = pixels[None] - center_t[:, None, None, :]                                # (B, h, w, 2)
            source_xy = self.source_points[iris[0]] + rel / zoom[:, None, None, None]
            iris_rgb = F.grid_sample(self.iris_sprite.expand(len(grid), -1, -1, -1), source_xy / self.size * 2 - 1,
                                     mode="bilinear", padding_mode="border", align_corners=False)
            disc = soft_inside(rel.norm(dim=-1) - radius_t[:, None, None]).unsqueeze(1)
            inside = eyeball + disc * (iris_rgb - eyeball)
            # A closing eye is a dark slit of lashes and shadow, not a line of white.
            height = polyline_y(columns, sorted_by_x(lid_bottom)) - polyline_y(columns, sorted_by_x(lid_top))
            inside = inside * (0.3 + 0.7 * smoothstep(0.5, 5.0, height))[:, None, None, :]
            view.add_(opening * (inside - view))

    def _paint_mouth(self, region: torch.Tensor, target: torch.Tensor) -> None:
        rx0, ry0 = self.region[:2]
        upper = target[:, list(topo.LIP_INNER_UPPER)]
        lower = target[:, list(topo.LIP_INNER_LOWER)]
        # Padded by the blur's reach, so what is blurred inside the mouth never depends on the
        # box (the box spans the batch: frames must not depend on how they are batched).
        bx0, by0, bx1, by1 = self._box(torch.cat([upper, lower], 1), 3 + int(np.ceil(2.5 * self.blur)))
        if bx1 <= bx0 or by1 <= by0:
            return
        view = region[:, :, by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]
        plates = [(plate, teeth_affine(target, self.source_points, anchors, anchors == _MANDIBLE), anchors == _MANDIBLE)
                  for plate, anchors in self.plates]
        grain = self.grain[by0:by1, bx0:bx1][None, None]
        view.copy_(paint_mouth(view, (bx0, by0), upper, lower, self.light, self.teeth_rgb, plates, grain, self.blur,
                               self.photo_lip_rows is not None, self.teeth_span, self.built_teeth, self.photo_opening))

    def _paste(self, frames: torch.Tensor) -> torch.Tensor:
        """Crops (B, 3, S, S) float -> the full photo with the face region pasted back."""
        batch = frames.shape[0]
        px0, py0, px1, py1 = self.paste_box
        out = self.photo.expand(batch, -1, -1, -1).clone()
        warped = F.grid_sample(frames, self.paste_grid.expand(batch, -1, -1, -1), mode="bilinear",
                               padding_mode="border", align_corners=False)
        region = out[:, :, py0:py1, px0:px1]
        out[:, :, py0:py1, px0:px1] = region + self.paste_mask * (warped - region)
        return out


def _to_uint8(frames: torch.Tensor) -> torch.Tensor:
    return frames.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
