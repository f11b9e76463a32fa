"""Render a stored episode as an animated GIF (camera views side by side, with the instruction)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vla_runtime.dataset import EpisodeDataset
from vla_runtime.io import atomic_write_bytes


def episode_frames(ds: EpisodeDataset, k: int, min_width: int = 320) -> list[Image.Image]:
    if not 0 <= k < len(ds):
        raise IndexError(f"episode {k} out of range: the dataset has {len(ds)} episodes")
    ep = ds.load_episode(k)
    cams = sorted(ep.images)
    strip = np.concatenate([ep.images[c] for c in cams], axis=2)  # (T+1, H, W*cams, 3)
    scale = max(1, -(-min_width // strip.shape[2]))  # wide enough for the caption at any image size
    meta = ep.meta
    frames = []
    for t, img in enumerate(strip):
        im = Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
        canvas = Image.new("RGB", (im.width, im.height + 28), (20, 20, 20))
        canvas.paste(im, (0, 28))
        done = t > 0 and bool(ep.successes[t - 1])
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 2), meta["instruction"][: im.width // 6], fill=(255, 255, 255))
        draw.text((4, 14), f"{meta['task']} / {meta['variation']} / {meta['arm']}  t={t}"
                  + ("  SUCCESS" if done else ""), fill=(120, 255, 120) if done else (200, 200, 200))
        frames.append(canvas)
    return frames


def _check_gif_args(out: str | Path, fps: float) -> None:
    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if Path(out).is_dir():
        raise IsADirectoryError(f"GIF path {out} is a folder; give a file name")


def write_gif(frames: list[Image.Image], out: str | Path, fps: float = 10.0) -> Path:
    _check_gif_args(out, fps)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return atomic_write_bytes(out, buf.getvalue())


def replay_to_gif(dataset_dir: str | Path, k: int, out: str | Path, fps: float = 10.0) -> Path:
    _check_gif_args(out, fps)  # before the episode is read
    return write_gif(episode_frames(EpisodeDataset(dataset_dir), k), out, fps)
