"""Read a LeRobot v3 folder with LeRobot's own `LeRobotDataset` and dump what it returns to an .npz.

Runs in the reader venv (`scripts/lerobot_reader_env.sh`, module `ledataset` of the `lerobot-dataset`
package), never in .venv: that package pins a huggingface-hub transformers cannot use. It imports nothing
of this project, so the test compares our episodes with what an independent reader sees.

    .venv/lerobot-reader/bin/python scripts/lerobot_read.py DATASET_DIR OUT.npz

Every frame goes through `LeRobotDataset.__getitem__`; images come back as float32 CHW in [0, 1]
(`ToTensor` of the decoded PNG) and are stored back as uint8 HWC (`round(x * 255)`, exact for 8-bit values).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: the hub is never asked

import numpy as np
from ledataset.datasets.lerobot_dataset import LeRobotDataset


def main(root: str, out: str) -> None:
    ds = LeRobotDataset("local/vla_steering_export", root=root)
    cameras = list(ds.meta.camera_keys)
    vectors = [k for k, ft in ds.features.items() if k not in cameras and ft["dtype"] in ("float32", "int64", "bool")]
    columns: dict[str, list] = {k: [] for k in [*cameras, *vectors]}
    tasks = []
    for i in range(len(ds)):
        item = ds[i]
        for cam in cameras:
            columns[cam].append((item[cam].numpy() * 255.0).round().astype(np.uint8).transpose(1, 2, 0))
        for k in vectors:
            columns[k].append(item[k].numpy())
        tasks.append(item["task"])
    arrays = {k: np.stack(v) for k, v in columns.items()}
    summary = {"fps": ds.fps, "num_episodes": ds.num_episodes, "num_frames": ds.num_frames, "cameras": cameras,
               "tasks": tasks, "episode_lengths": [int(e["length"]) for e in ds.meta.episodes]}
    np.savez(out, summary=np.array(json.dumps(summary)), **arrays)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: lerobot_read.py DATASET_DIR OUT.npz")
    main(sys.argv[1], sys.argv[2])
