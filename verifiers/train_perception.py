"""`vla train verifier --own-perception`: a `PerceptionVerifier` on relabelled decisions.

Same objective as the token verifier (RoboMonkey's preference loss over candidates ranked by NRMSE to the
expert's chunk, `train_verifier.decision_sets`), but the score reads the camera image, the instruction and
proprio through the verifier's own encoder, which starts as a copy of the policy's and keeps training.
Training-time image augmentation: random shifts of up to `image_shift` pixels and brightness/contrast
jitter of `color_jitter` (`vla_runtime.policy.vision.augment`); the evaluation splits never enter.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from verifiers.perception_verifier import CONFIG_TYPE, PerceptionVerifier
from verifiers.relabelled import read_decisions
from verifiers.train_verifier import VerifierTrainConfig, decision_sets, preference_update, rank_scores, subset
from vla_runtime.checkpoint import is_checkpoint_of
from vla_runtime.io import check_output_dir
from vla_runtime.policy.model import VLAPolicy, images_to_tensor, language_features
from vla_runtime.policy.vision import augment
from vla_runtime.training import Run

ENCODER_LR_SCALE = 0.3  # the copied encoder moves slower than the fresh head


def train_perception_verifier(policy_dir: str | Path, relabelled: list[str | Path], out: str | Path,
                              cfg: VerifierTrainConfig, resume: bool = False, progress: bool = True,
                              command: str = "", overwrite: bool = False) -> dict:
    if not relabelled:
        raise ValueError("the perception verifier trains on relabelled decisions: give --relabelled DIR")
    out = check_output_dir(out, is_checkpoint_of(CONFIG_TYPE), "perception verifier checkpoint",
                           inputs=[policy_dir, *relabelled], overwrite=overwrite)
    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    policy = VLAPolicy.from_pretrained(policy_dir)
    pc = policy.config
    d = read_decisions(list(relabelled), None, pc.horizon, pc.action_dim, observations=True)
    sets, val = decision_sets(d, pc.action_spec, policy.normalizer.action_low, policy.normalizer.action_high,
                              cfg.perturbations, cfg.val_fraction, cfg.seed)
    train_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    val_sets = subset(sets, val)
    unique = sorted(set(d.instructions))
    table = language_features(pc, unique)  # (U, language_dim) or (U, 1 + tokens, language_dim)
    lang = table[torch.tensor([unique.index(x) for x in d.instructions])]  # (S, ...)
    images = d.images  # (S, h, w, 3) uint8
    proprio = torch.from_numpy(d.proprio)
    cands = torch.from_numpy(sets.candidates)
    errs = torch.from_numpy(sets.errors)
    k = cands.shape[1]

    model = PerceptionVerifier.from_policy(policy, cfg.hidden, cfg.layers)
    enc_params = list(model.encoder.parameters())
    enc_ids = {id(p) for p in enc_params}
    head_params = [p for p in model.parameters() if id(p) not in enc_ids]
    opt = torch.optim.AdamW([{"params": enc_params, "scale": ENCODER_LR_SCALE}, {"params": head_params, "scale": 1.0}],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    meta = {"train_config": asdict(cfg), "relabelled": [str(x) for x in relabelled], "states": int(len(train_idx)),
            "val_states": int(len(val_idx))}
    run = Run(out, {"model": model}, opt, gen, meta)

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / 200)
        return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))

    def batch_images(idx: np.ndarray) -> torch.Tensor:
        return images_to_tensor(images[idx], tuple(pc.image_size))

    def train_step() -> float:
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(run.step) * g["scale"]
        pick = torch.randint(0, len(train_idx), (cfg.batch_states,), generator=gen).numpy()
        idx = train_idx[pick]
        imgs = augment(batch_images(idx), cfg.image_shift, cfg.color_jitter, gen)
        token = model.token(imgs, lang[idx], proprio[idx])  # (B, d)
        scores = model.head(token.repeat_interleave(k, 0), cands[idx].flatten(0, 1)).view(len(idx), k)
        return preference_update(model, opt, scores, errs[idx], cfg, gen)

    @torch.no_grad()
    def validate() -> dict:
        model.eval()
        if len(val_idx) == 0:
            return {}
        scores = []
        for b in range(0, len(val_idx), 64):
            idx = val_idx[b:b + 64]
            token = model.token(batch_images(idx), lang[idx], proprio[idx])
            scores.append(model.head(token.repeat_interleave(k, 0), cands[idx].flatten(0, 1)).view(len(idx), k))
        return rank_scores(torch.cat(scores).numpy(), val_sets, cfg.min_gap, prefix="relabelled")

    def save_model(last: dict) -> None:
        model.save_pretrained(out, model_card=perception_card(cfg, last, command, relabelled, policy_dir,
                                                              len(train_idx), k), overwrite=overwrite)

    last = run.loop(cfg.steps, train_step, validate, save_model, cfg.val_every, cfg.ckpt_every, resume, progress,
                    "train perception verifier")
    return {"out": str(out), "steps": run.step, "seconds": round(time.perf_counter() - t0, 1), **last, **meta}


def perception_card(cfg: VerifierTrainConfig, last: dict, command: str, relabelled, policy_dir, states: int,
                    k: int) -> str:
    m = {key: (round(v, 4) if isinstance(v, float) else v) for key, v in last.items()}
    return "\n".join([
        "# vla_steering perception verifier\n",
        "An action verifier with its own perception: a copy of the policy's conditioning stack (image with FiLM, "
        "instruction, proprio, object anchor), initialised from the policy and trained further, plus an MLP over "
        "its token and a candidate chunk -> a scalar (higher = closer to the expert's chunk from that state). "
        f"Trained on relabelled decisions (the policy's own states, `vla sim relabel`): per state the expert's "
        f"chunk, {cfg.perturbations} perturbations of it and the candidates steering scored there, RoboMonkey's "
        f"preference loss (alpha={cfg.alpha}); image augmentation: shifts up to {cfg.image_shift} px, "
        f"brightness/contrast jitter {cfg.color_jitter}.\n",
        f"- Encoder initialised from: `{policy_dir}`",
        f"- Data: {', '.join(str(x) for x in relabelled)}; {states} states x {k} candidates",
        f"- Command: `{command}`",
        f"- Held-out metrics at step {m.get('step')}: "
        + "; ".join(f"{key} {v}" for key, v in m.items() if key.startswith("relabelled_")),
    ]) + "\n"
