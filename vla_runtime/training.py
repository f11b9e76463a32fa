"""The one training harness behind `vla train policy`, `vla train verifier` and `vla train value`.

A `Run` owns what every trainer needs besides its loss: the run folder beside the model folder
(`<out>.training_state/`: `state.safetensors` with every module's weights, the optimizer moments and
the RNG; `trainer.json` with the step and the run's meta; `metrics.jsonl`), atomic checkpoints, a
`--resume` that continues bit-for-bit, a progress bar and a stop on a non-finite loss. A trainer
supplies `train_step() -> loss`, `validate() -> metrics` and `save_model(last metrics)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

from vla_runtime.checkpoint import metrics_log, optimizer_tensors, restore_optimizer
from vla_runtime.io import atomic_write_bytes, atomic_write_text

STATE_DIR = "training_state"


def state_dir(out: str | Path) -> Path:
    """`<out>.training_state`: beside the model folder, so replacing the model never touches it."""
    out = Path(out)
    return out.parent / f"{out.name}.{STATE_DIR}"


class Run:
    """One training run of `modules` under `opt`; `meta` (JSON-able: the training config, the data summary)
    must match on `--resume`, since a resumed run only continues the same run (its schedule depends on it)."""

    def __init__(self, out: str | Path, modules: dict[str, nn.Module], opt: torch.optim.Optimizer,
                 gen: torch.Generator, meta: dict) -> None:
        self.out, self.modules, self.opt, self.gen, self.meta = Path(out), modules, opt, gen, meta
        self.step = 0
        self.sdir = state_dir(self.out)

    def save_state(self) -> None:
        state = {f"{name}.{k}": v.detach().contiguous().clone()
                 for name, m in self.modules.items() for k, v in m.state_dict().items()}
        state.update(optimizer_tensors(self.opt, self.gen))
        self.sdir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.sdir / "state.safetensors", save(state))
        atomic_write_text(self.sdir / "trainer.json", json.dumps({"step": self.step, **self.meta}, indent=2))

    def load_state(self) -> None:
        meta_path, state_path = self.sdir / "trainer.json", self.sdir / "state.safetensors"
        if not meta_path.is_file() or not state_path.is_file():
            raise FileNotFoundError(f"--resume: no training state in {self.sdir}")
        stored = json.loads(meta_path.read_text())
        given = json.loads(json.dumps(self.meta))  # as stored: tuples become lists
        diff = {k: (stored.get(k), v) for k, v in given.items() if stored.get(k) != v}
        if diff:
            raise ValueError(f"--resume with different data or parameters (stored, given): {diff}")
        state = load_file(str(state_path))
        for name, m in self.modules.items():
            m.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")})
        restore_optimizer(self.opt, self.gen, state)
        self.step = int(stored["step"])

    def loop(self, steps: int, train_step: Callable[[], float], validate: Callable[[], dict],
             save_model: Callable[[dict], None], val_every: int, ckpt_every: int, resume: bool,
             progress: bool, desc: str) -> dict:
        """Run to `steps`; every `val_every` append a metrics line, every `ckpt_every` save the model
        (`save_model(last metrics)`) and the training state. -> the last metrics."""
        t0 = time.perf_counter()
        if resume:
            self.load_state()
        metrics_path = metrics_log(self.sdir / "metrics.jsonl", self.step if resume else None)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=self.step, desc=desc, unit="step")
        last: dict = {}
        losses: list[float] = []
        with metrics_path.open("a") as mf:
            while self.step < steps:
                loss = train_step()
                if not np.isfinite(loss):
                    raise FloatingPointError(f"{desc}: loss is {loss} at step {self.step}; lower the learning rate")
                losses.append(loss)
                self.step += 1
                if bar is not None:
                    bar.update(1)
                if self.step % val_every == 0 or self.step == steps:
                    last = {"step": self.step, "loss": float(np.mean(losses)), **validate(),
                            "elapsed_s": round(time.perf_counter() - t0, 1)}
                    losses = []
                    mf.write(json.dumps(last) + "\n")
                    mf.flush()
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k.startswith("val_")})
                if self.step % ckpt_every == 0 or self.step == steps:
                    save_model(last)
                    self.save_state()
        if bar is not None:
            bar.close()
        return last
