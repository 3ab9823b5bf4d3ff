"""`talkfarm report`'s page: ONE self-contained HTML file of a batch job's manifest.

Every picture is an inline ``data:`` URI (contact sheets and matplotlib plots as PNG, the
animated preview as animated WebP, or GIF where Pillow lacks WebP animation), no scripts, no
external requests. Rows that need a human (failed, or flagged by
:class:`workers.quality.thresholds.QualityThresholds`) come first.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.preview import contact_sheet
from workers.quality.frames import decode_frames
from workers.quality.presentation import METRICS, flagged_keys, format_metric
from workers.quality.qc import evaluate
from workers.quality.thresholds import DEFAULT_THRESHOLDS


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _png(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return _data_uri(buffer.getvalue(), "image/png")


def _animated(frames, fps: float) -> str:
    """Frames (N, h, w, 3) as an inline animated WebP (GIF if WebP animation is unavailable)."""
    images = [Image.fromarray(f) for f in frames]
    duration = int(round(1000.0 / fps))
    buffer = io.BytesIO()
    try:
        images[0].save(buffer, format="WEBP", save_all=True, append_images=images[1:], duration=duration,
                       loop=0, quality=70, method=2)
        return _data_uri(buffer.getvalue(), "image/webp")
    except (OSError, ValueError, KeyError):
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
        return _data_uri(buffer.getvalue(), "image/gif")


def _plots(result, fps: float) -> str:
    """Two stacked panels: mouth opening over the audio envelope; head yaw / pitch / roll."""
    import matplotlib  # heavy: loaded only when a report has curves to plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(result.opening)) / fps
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.2, 3.0), dpi=90, sharex=True)
    ok = np.isfinite(result.opening)
    top.plot(t[ok], result.opening[ok], color="#c0392b", lw=1.2, label="mouth opening")
    top.set_ylabel("opening", fontsize=7, color="#c0392b")
    top.tick_params(labelsize=6)
    env = top.twinx()
    env.fill_between(t, -60, np.nan_to_num(result.envelope_db, nan=-60), color="#3498db", alpha=0.25, lw=0)
    env.plot(t, result.envelope_db, color="#2471a3", lw=0.7, label="audio dB")
    env.set_ylim(-60, 6)
    env.set_ylabel("audio dB", fontsize=7, color="#2471a3")
    env.tick_params(labelsize=6)
    top.set_zorder(env.get_zorder() + 1)
    top.patch.set_visible(False)
    for k, (name, color) in enumerate((("yaw", "#8e44ad"), ("pitch", "#16a085"), ("roll", "#d35400"))):
        values = result.pose[:, k]
        good = np.isfinite(values)
        if good.any():
            bottom.plot(t[good], values[good] - np.median(values[good]), color=color, lw=1.0, label=name)
    bottom.set_ylabel("head deg", fontsize=7)
    bottom.set_xlabel("seconds", fontsize=7)
    bottom.tick_params(labelsize=6)
    bottom.legend(fontsize=6, ncol=3, loc="upper right", frameon=False)
    fig.tight_layout(pad=0.4)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return _data_uri(buffer.getvalue(), "image/png")


def _local(uri: str | None) -> Path | None:
    if not uri or "://" in uri and not uri.startswith("file://"):
        return None
    path = Path(uri[7:] if uri.startswith("file://") else uri)
    return path if path.is_file() else None


def _measure_row(row, stride: int):
    """(QCResult or None, note) for a done row whose video is a local file."""
    video = _local(row.output_uri)
    if video is None:
        return None, "video not local: not measured"
    audio = _local(row.audio_uri) or video
    image = _local(row.image_uri)
    try:
        return evaluate(video, audio, image, stride=stride), ""
    except Exception as err:  # noqa: BLE001 - one unreadable video must not stop the report
        return None, f"could not measure: {type(err).__name__}: {err}"


def _stage_summary(rows) -> tuple[list[tuple[str, int, float, float]], float | None]:
    per_stage = defaultdict(list)
    for row in rows:
        for stage, seconds in (row.seconds_per_stage or {}).items():
            per_stage[stage].append(seconds)
    table = [(stage, len(v), sum(v), statistics.median(v)) for stage, v in per_stage.items()]
    totals = [r.total_seconds for r in rows if r.total_seconds is not None]
    return table, (sum(totals) if totals else None)


_CSS = """
body{font:13px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:18px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 8px} h2{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#eee} .num{text-align:right;font-variant-numeric:tabular-nums}
.summary{display:flex;gap:28px;flex-wrap:wrap}
.render{background:#fff;border:1px solid #ccc;border-left:6px solid #2e7d32;margin:12px 0;padding:8px 10px}
.render.flagged{border-left-color:#e65100} .render.failed{border-left-color:#b71c1c}
.render h3{margin:0 0 6px;font-size:14px} .pics{display:flex;gap:10px;flex-wrap:wrap;align-items:flex-start}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;color:#fff;background:#2e7d32}
.flagged .badge{background:#e65100} .failed .badge{background:#b71c1c}
.flag{color:#b71c1c;font-weight:600} .metrics td{font-size:12px} .muted{color:#777}
ul.flags{margin:4px 0;padding-left:18px;color:#b71c1c}
"""


def build_report(rows, stride: int = 2, measure: bool = True, title: str = "talkfarm job report") -> str:
    """The HTML text for manifest rows (see module docstring)."""
    esc = html.escape
    entries = []
    for row in rows:
        result, note, metrics, row_flags, source = None, "", None, [], ""
        if row.status == "done":
            if measure:
                result, note = _measure_row(row, stride)
            if row.quality_json:
                metrics, row_flags, source = json.loads(row.quality_json), list(row.quality_flags or []), "batch QC"
            elif result is not None:
                metrics, row_flags, source = result.metrics, result.flags, f"measured now (stride {stride})"
            elif not note:
                note = "not measured"
        state = "failed" if row.status != "done" else ("flagged" if row_flags else "ok")
        entries.append((row, result, note, metrics, row_flags, source, state))
    order = {"failed": 0, "flagged": 1, "ok": 2}
    entries.sort(key=lambda e: (order[e[6]], e[0].request_id))

    counts = Counter(r.status for r in rows)
    flagged = sum(1 for e in entries if e[6] == "flagged")
    measured = sum(1 for e in entries if e[3] is not None)
    failures = Counter((r.error_stage or "unknown") for r in rows if r.status == "failed")
    examples = {}
    for r in rows:
        if r.status == "failed":
            examples.setdefault(r.error_stage or "unknown", r.error_message or "")
    flag_counts = Counter(f.split(" ")[0] for e in entries for f in e[4])
    stages, total = _stage_summary([r for r in rows if r.status == "done"])
    audio_total = sum(r.audio_seconds or 0 for r in rows if r.status == "done")
    jobs = sorted({r.job_id for r in rows})

    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           "<link rel='icon' href='data:,'>", f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{esc(title)}</h1>",
           f"<p class='muted'>job {esc(', '.join(jobs) or '-')} &middot; {len(rows)} requests</p>",
           "<div class='summary'><div><h2>Counts</h2><table>"]
    for label, value in ([("requests", len(rows))] + sorted(counts.items())
                         + [("flagged by QC", flagged), ("measured", measured)]):
        out.append(f"<tr><th>{esc(str(label))}</th><td class='num'>{value}</td></tr>")
    out.append("</table></div><div><h2>Timings (done renders)</h2><table><tr><th>stage</th><th>renders</th>"
               "<th>total s</th><th>median s</th></tr>")
    for stage, n, s, med in stages:
        out.append(f"<tr><td>{esc(stage)}</td><td class='num'>{n}</td><td class='num'>{s:.2f}</td>"
                   f"<td class='num'>{med:.2f}</td></tr>")
    if total is not None:
        rtf = f" (realtime factor {total / audio_total:.2f})" if audio_total else ""
        out.append(f"<tr><th>all</th><td></td><td class='num'>{total:.2f}</td><td class='muted'>"
                   f"{audio_total:.1f} s of audio{rtf}</td></tr>")
    out.append("</table></div><div><h2>Failures by stage</h2>")
    if failures:
        out.append("<table><tr><th>stage</th><th>count</th><th>example</th></tr>")
        for stage, n in failures.most_common():
            out.append(f"<tr><td>{esc(stage)}</td><td class='num'>{n}</td><td>{esc(examples[stage][:160])}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>none</p>")
    out.append("</div><div><h2>Flags by metric</h2>")
    if flag_counts:
        out.append("<table>" + "".join(f"<tr><td>{esc(k)}</td><td class='num'>{n}</td></tr>"
                                       for k, n in flag_counts.most_common()) + "</table>")
    else:
        out.append("<p>none</p>")
    out.append("</div></div>")
    t = DEFAULT_THRESHOLDS
    out.append(f"<p class='muted'>Thresholds: lip sync r &ge; {t.min_lipsync_r}, |lag| &le; {t.max_abs_lag_frames} "
               f"frames, face found &ge; {t.min_face_found}, head motion {t.min_head_motion}-{t.max_head_motion} "
               f"deg/frame, identity drift &le; {t.max_identity_drift_pct} % IOD, jitter &le; "
               f"{t.max_jitter_pct_iod} % IOD, flicker &le; {t.max_flicker_grey} grey levels, "
               f"|video - audio| &le; {t.max_duration_mismatch_s} s. Units: workers/quality/README.md.</p>")
    out.append("<h2>Renders (failed and flagged first)</h2>")

    for row, result, note, metrics, row_flags, source, state in entries:
        out.append(f"<div class='render {state}'><h3>{esc(row.request_id)} <span class='badge'>{state}</span> "
                   f"<span class='muted'>{esc(row.render_id or '')} {esc(row.output_uri or '')}</span></h3>")
        if row.status != "done":
            out.append(f"<p><b>{esc(row.status)}</b> at stage <b>{esc(row.error_stage or '?')}</b>: "
                       f"{esc(row.error_message or '')}</p></div>")
            continue
        out.append("<div class='pics'>")
        if result is not None and len(result.thumbs):
            fps = float(result.metrics.get("fps") or 25.0)
            labels = [f"{i / fps:.1f}s" for i in result.thumb_index]
            sheet = contact_sheet(list(result.thumbs[:12]), columns=6, tile=96, labels=labels[:12])
            out.append(f"<figure><img alt='contact sheet' src='{_png(sheet)}' width='{sheet.width}'>"
                       "<figcaption class='muted'>frames across the clip</figcaption></figure>")
            frames, fps_video = _preview_frames(row, result)
            if frames is not None:
                out.append(f"<figure><img alt='preview' src='{_animated(frames, fps_video)}' width='128' "
                           "height='128' style='object-fit:contain'><figcaption class='muted'>preview "
                           "(first seconds, half rate)</figcaption></figure>")
            out.append(f"<figure><img alt='curves' src='{_plots(result, fps)}' width='468'>"
                       "<figcaption class='muted'>mouth opening (red) over audio level (blue); head pose"
                       "</figcaption></figure>")
        elif note:
            out.append(f"<p class='muted'>{esc(note)}</p>")
        out.append("</div>")
        if metrics is None:
            out.append("<p class='muted'>metrics: not measured</p></div>")
            continue
        marked = flagged_keys(row_flags)
        if row_flags:
            out.append("<ul class='flags'>" + "".join(f"<li>{esc(f)}</li>" for f in row_flags) + "</ul>")
        cells = []
        for key, unit, _, what in METRICS:
            if key not in metrics:
                continue
            cls = " class='flag'" if key in marked else ""
            cells.append(f"<td title='{esc(what)}'>{esc(key)}</td><td{cls}>{esc(format_metric(key, metrics[key]))}"
                         f"</td><td class='muted'>{esc(unit)}</td>")
        half = (len(cells) + 1) // 2
        out.append("<table class='metrics'>")
        for i in range(half):
            right = cells[half + i] if half + i < len(cells) else "<td></td><td></td><td></td>"
            out.append(f"<tr>{cells[i]}{right}</tr>")
        out.append(f"</table><p class='muted'>metrics: {esc(source)} &middot; audio {row.audio_seconds or 0:.2f} s, "
                   f"{row.frames or '-'} frames, render {row.total_seconds or 0:.2f} s</p></div>")
    out.append("</body></html>")
    return "\n".join(out)


def _preview_frames(row, result):
    """Up to 50 frames (every 2nd, 128 px) from the start of the video, and their display fps."""
    video = _local(row.output_uri)
    if video is None:
        return None, 0.0
    try:
        frames, fps = decode_frames(video, 128)
    except ValueError:
        return None, 0.0
    if not len(frames):
        return None, 0.0
    return np.ascontiguousarray(frames[:100:2]), fps / 2


__all__ = ["build_report"]
