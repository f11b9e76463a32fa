"""The demo's side-by-side GIFs: the unsteered episode beside the steered one on the same seed, the steered
side drawing every decision's candidates (grey), the one picked (green) and the samples' mean (blue) as
end-effector paths projected into the camera image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from verifiers.relabelled import pad_candidates
from vla_app.replay import episode_frames, write_gif
from vla_runtime.dataset import EpisodeDataset
from vla_runtime.io import atomic_write_bytes
from vla_runtime.types import CameraInfo


class DecisionLog:
    """Wraps a steered decision and keeps what the GIF draws: the TCP position, the candidates and the pick.
    `finish` writes them (one npz per episode, named by task and seed) once the episode ends."""

    def __init__(self, decide, out: Path) -> None:
        self.decide_inner, self.out = decide, out
        self.rows: list[tuple[int, np.ndarray, np.ndarray, int]] = []
        self.env = None

    def bind(self, env) -> None:
        self.env = env

    def decide(self, obs, generator):
        result = self.decide_inner(obs, generator)
        self.rows.append((self.env.steps, np.asarray(obs.proprio[:3], np.float64), result.candidates, result.index))
        return result

    def finish(self, env, summary) -> None:
        if not self.rows:
            return
        cands, _ = pad_candidates([r[2] for r in self.rows])
        buf = io.BytesIO()
        np.savez(buf, step=np.array([r[0] for r in self.rows]), tcp=np.stack([r[1] for r in self.rows]),
                 candidates=cands, chosen=np.array([r[3] for r in self.rows]))
        atomic_write_bytes(decision_file(self.out, summary.task, summary.seed), buf.getvalue())


def decision_file(folder: Path, task: str, seed: int) -> Path:
    return Path(folder) / f"decisions_{task}_{seed}.npz"


def project(points: np.ndarray, cam: CameraInfo) -> np.ndarray:
    """points (N, 3) in the base frame -> (N, 2) pixel coordinates (u right, v down); behind-camera points NaN."""
    p = np.c_[points, np.ones(len(points))] @ np.linalg.inv(cam.pose_base_cam).T  # (N, 4) camera frame
    z = np.where(p[:, 2] > 1e-6, p[:, 2], np.nan)
    return np.c_[cam.fx * p[:, 0] / z + cam.cx, cam.fy * p[:, 1] / z + cam.cy]


def _path(tcp: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """The TCP path a chunk commands: tcp (3,) + the cumulative (dx, dy, dz) of its steps -> (H + 1, 3)."""
    return np.vstack([tcp, tcp + np.cumsum(chunk[:, :3], axis=0)])


def _draw_decision(frame: Image.Image, decisions: dict, t: int, cam: CameraInfo, scale: float, top: int) -> None:
    steps = decisions["step"]
    i = int(np.searchsorted(steps, t, side="right")) - 1
    if i < 0:
        return
    draw = ImageDraw.Draw(frame)
    cands = decisions["candidates"][i]
    cands = cands[np.isfinite(cands).all(axis=(1, 2))]
    chosen = int(decisions["chosen"][i])
    tcp = decisions["tcp"][i]
    order = [(j, (150, 150, 150)) for j in range(len(cands)) if j not in (0, chosen)]
    order += [(0, (80, 140, 255))] + ([(chosen, (60, 230, 60))] if chosen >= 0 else [])
    for j, color in order:
        uv = project(_path(tcp, cands[j]), cam) * scale + np.array([0, top])
        if np.isfinite(uv).all():
            draw.line([tuple(x) for x in uv], fill=color, width=2 if color != (150, 150, 150) else 1)


def side_by_side_gif(unsteered: Path, steered: Path, decisions_dir: Path, task: str, seed: int, out: Path,
                     fps: float = 10.0) -> Path:
    """GIF: the unsteered episode (left) and the steered one with its candidates drawn (right), same seed."""
    panels = []
    for root in (unsteered, steered):
        ds = EpisodeDataset(root)
        k = next(i for i in ds.filter(task=task) if ds.meta(i)["seed"] == seed)
        panels.append((ds, k, episode_frames(ds, k)))
    ds, k, frames = panels[1]
    meta = ds.meta(k)
    cam = CameraInfo.from_dict(meta["cameras"]["static"])
    scale = frames[0].width / cam.width if len(meta["cameras"]) == 1 else 1.0
    f = decision_file(decisions_dir, task, seed)
    if f.is_file() and len(meta["cameras"]) == 1:  # the main camera fills the strip: draw on it
        with np.load(f) as z:
            decisions = {key: z[key] for key in z.files}
        for t, frame in enumerate(frames):
            _draw_decision(frame, decisions, t, cam, scale, top=28)
    left, right = panels[0][2], frames
    n = max(len(left), len(right))
    out_frames = []
    for t in range(n):
        a, b = left[min(t, len(left) - 1)], right[min(t, len(right) - 1)]
        canvas = Image.new("RGB", (a.width + b.width + 4, max(a.height, b.height) + 14), (0, 0, 0))
        canvas.paste(a, (0, 14))
        canvas.paste(b, (a.width + 4, 14))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 1), "unsteered: mean of the samples", fill=(220, 220, 220))
        draw.text((a.width + 8, 1), "steered: candidates grey, pick green, mean blue", fill=(220, 220, 220))
        out_frames.append(canvas)
    return write_gif(out_frames, out, fps)


def changed_outcomes(unsteered_rows: list[dict], steered_rows: list[dict]) -> dict[str, list[tuple[int, int, int]]]:
    """task -> [(seed, unsteered outcome, steered outcome)] where they differ (rows from the same seeds)."""
    out = {}
    for u, s in zip(unsteered_rows, steered_rows):
        if u["task"] != s["task"] or u["seed"] != s["seed"]:
            raise ValueError(f"rows are not paired: {u['task']}@{u['seed']} vs {s['task']}@{s['seed']}")
        out[u["task"]] = [(u["seed"] + i, a, b) for i, (a, b) in enumerate(zip(u["outcomes"], s["outcomes"])) if a != b]
    return out
