"""`vla train value`: the V-GPS value function by IQL on mixed-quality episodes.

Why IQL and not Cal-QL: IQL only ever evaluates dataset actions (an expectile backup through V), so
training needs no actor and no action samples; Cal-QL's conservative term needs policy samples at
every step, which for a diffusion policy is ten DiT passes per sample on a 2-core CPU. The price:
nothing pushes Q down on actions away from the data, so Q hardly depends on the action. The
option `cql_alpha > 0` adds Cal-QL's calibrated conservative term with cheap stand-ins for the
policy's actions: perturbed dataset chunks (Gaussian noise in normalised units, gripper flips).
Their Q is pushed down, but never below the state's Monte-Carlo return (the calibration).

Transitions are chunk-level: from the step-t observation, the recorded chunk actions[t:t+H] is the
action; the next state is k steps later (k = the executor's replanning interval), the reward the
discounted sum of the k per-step rewards. Rewards are V-GPS's (0 on the final step of a success, -1
elsewhere) or sparse (1 on the final step of a success). A success ends the episode (terminal); a
timeout does not: its last transition bootstraps from the last observed state.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from verifiers.features import QUALITIES, FeatureTable, cache_key, cached_features
from verifiers.train_verifier import VerifierTrainConfig, build_candidates, demonstration_rows, ranking_metrics
from verifiers.value import CONFIG_TYPE as VALUE_TYPE
from verifiers.value import HEADS, ValueConfig, ValueFunction, hl_gauss_target
from vla_runtime.checkpoint import is_checkpoint_of, weights_fingerprint
from vla_runtime.io import check_output_dir
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.training import Run, state_dir

REWARDS = ("vgps", "sparse")


@dataclass(frozen=True)
class ValueTrainConfig:
    steps: int = 20_000
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 1e-4
    gamma: float = 0.98  # per environment step
    k: int = 4  # environment steps per transition (the executor's replan interval)
    expectile: float = 0.7
    target_tau: float = 0.005  # Polyak rate of the target critics
    cql_alpha: float = 0.0  # weight of the calibrated conservative term (0 = plain IQL)
    cql_samples: int = 8  # perturbed chunks per state for it
    cql_noise: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8)  # their Gaussian stds (normalised units)
    reward: str = "vgps"
    head: str = "hlgauss"
    bins: int = 51
    hidden: int = 256
    layers: int = 2
    val_fraction: float = 0.05
    val_every: int = 1000
    ckpt_every: int = 2000
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "k", "bins", "hidden", "layers", "val_every", "ckpt_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")
        if not 0.5 <= self.expectile < 1:
            raise ValueError(f"expectile must be in [0.5, 1), got {self.expectile}")
        if not (self.cql_alpha >= 0 and math.isfinite(self.cql_alpha)) or self.cql_samples < 1:
            raise ValueError(f"cql_alpha must be >= 0 and cql_samples >= 1, got {self.cql_alpha}, {self.cql_samples}")
        if not self.cql_noise or any(not s > 0 for s in self.cql_noise):
            raise ValueError(f"cql_noise must be positive stds, got {self.cql_noise}")
        if not 0 < self.target_tau <= 1:
            raise ValueError(f"target_tau must be in (0, 1], got {self.target_tau}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")

    def return_range(self) -> tuple[float, float]:
        """The support of the returns: [-1/(1-gamma), 0] for V-GPS rewards, [0, 1] for sparse."""
        return (-1.0 / (1.0 - self.gamma), 0.0) if self.reward == "vgps" else (0.0, 1.0)


@dataclass
class Transitions:
    rows: np.ndarray  # (N,) feature-table rows of s_t (the action is table.actions[row])
    reward: np.ndarray  # (N,) float32 discounted reward over the k steps
    next_rows: np.ndarray  # (N,) rows of s_{t+k} (or the episode's last row, see module docstring)
    discount: np.ndarray  # (N,) float32 gamma^k, 0 where the transition ends in success
    mc_return: np.ndarray  # (N,) float32 discounted return from s_t to the episode end (Cal-QL's reference)


def step_rewards(length: int, success: bool, reward: str) -> np.ndarray:
    """(T,) per-step rewards of one episode."""
    last_ok = np.zeros(length, dtype=bool)
    last_ok[-1] = success
    if reward == "vgps":
        return np.where(last_ok, 0.0, -1.0).astype(np.float32)
    return last_ok.astype(np.float32)


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """(T,) per-step rewards -> (T,) discounted return from each step to the episode end."""
    out = np.zeros(len(rewards), dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out


def transitions(table: FeatureTable, rows: np.ndarray, cfg: ValueTrainConfig) -> Transitions:
    """Chunk-level transitions starting at `rows`. DART rows whose first k actions were relabelled (the
    recorded label is not what moved the arm) are dropped: their next state does not follow."""
    starts = np.concatenate([[0], np.cumsum(table.length)[:-1]])
    keep_r, rew, nxt, disc, mc = [], [], [], [], []
    per_episode = {e: step_rewards(int(table.length[e]), bool(table.success[e]), cfg.reward)
                   for e in np.unique(table.episode[rows])}
    returns = {e: discounted_returns(r, cfg.gamma) for e, r in per_episode.items()}  # Monte-Carlo, per step
    for r in rows:
        e, t = int(table.episode[r]), int(table.t[r])
        length = int(table.length[e])
        k = min(cfg.k, length - t)
        if k < table.chunk_mask.shape[1] and not table.chunk_mask[r, k]:
            continue  # a relabelled step among t..t+k-1
        r_steps = per_episode[e][t:t + k]
        mc.append(float(returns[e][t]))
        rew.append(float(np.sum(r_steps * cfg.gamma ** np.arange(k))))
        end = t + k >= length
        terminal = end and bool(table.success[e])
        nxt.append(starts[e] + (length - 1 if end else t + k))
        disc.append(0.0 if terminal else cfg.gamma ** k)
        keep_r.append(r)
    return Transitions(np.asarray(keep_r, np.int64), np.asarray(rew, np.float32), np.asarray(nxt, np.int64),
                       np.asarray(disc, np.float32), np.asarray(mc, np.float32))


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """IQL's asymmetric square: |tau - 1(diff < 0)| diff^2, diff = Q - V."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff**2).mean()


def critic_loss(model: ValueFunction, cond: torch.Tensor, chunks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Both critics against the TD target (B,): MSE, or HL-Gauss cross entropy."""
    outs = model.critic_outputs(cond, chunks)
    if model.config.head == "hlgauss":
        probs = hl_gauss_target(target, model.config)
        return sum(-(probs * F.log_softmax(o, -1)).sum(-1).mean() for o in outs)
    return sum(F.mse_loss(o.squeeze(-1), target) for o in outs)


def perturbed_chunks(model: ValueFunction, chunks: torch.Tensor, cfg: ValueTrainConfig, spec,
                     gen: torch.Generator) -> torch.Tensor:
    """chunks (B, H, A) robot units -> (B, J, H, A): Gaussian noise of a random std from `cql_noise` in
    normalised units on the motion dims (clipped to the bounds); in a tenth of them the gripper command
    flips from a random step on."""
    b, h, a = chunks.shape
    j = cfg.cql_samples
    x = model.normalizer.normalize_actions(chunks).unsqueeze(1).expand(b, j, h, a).clone()
    stds = torch.tensor(cfg.cql_noise)[torch.randint(0, len(cfg.cql_noise), (b, j, 1, 1), generator=gen)]
    noise = torch.randn((b, j, h, a), generator=gen) * stds
    noise[..., spec.gripper_index] = 0.0
    x = model.normalizer.unnormalize_actions(x + noise)
    flip = (torch.rand((b, j, 1), generator=gen) < 0.1) & \
        (torch.arange(h)[None, None] >= torch.randint(0, h, (b, j, 1), generator=gen))
    g = x[..., spec.gripper_index]
    x[..., spec.gripper_index] = torch.where(flip, 1.0 - (g > 0.5).to(g.dtype), g)
    low, high = torch.from_numpy(spec.low_array()), torch.from_numpy(spec.high_array())
    return torch.maximum(torch.minimum(x, high), low)


def calibrated_conservative_loss(model: ValueFunction, cond: torch.Tensor, chunks: torch.Tensor,
                                 ood: torch.Tensor, mc_return: torch.Tensor) -> torch.Tensor:
    """Cal-QL's term, summed over the critics: logsumexp over [data chunk, perturbed chunks] of Q (each
    perturbed Q floored at the Monte-Carlo return) minus Q of the data chunk. cond (B, d), chunks (B, H, A),
    ood (B, J, H, A), mc_return (B,)."""
    b, j = ood.shape[:2]
    q_data = model.q_values(cond, chunks)  # (2, B)
    q_ood = model.q_values(cond.repeat_interleave(j, 0), ood.flatten(0, 1)).view(2, b, j)
    q_ood = torch.maximum(q_ood, mc_return[None, :, None])
    return (torch.logsumexp(torch.cat([q_data[..., None], q_ood], -1), -1) - q_data).mean(1).sum()


def train_value(policy_dir: str | Path, data: list[str | Path], out: str | Path, cfg: ValueTrainConfig,
                resume: bool = False, progress: bool = True, command: str = "",
                feature_cache: str | Path | None = None, overwrite: bool = False) -> dict:
    out = check_output_dir(out, is_checkpoint_of(VALUE_TYPE), "value function checkpoint", inputs=[policy_dir, *data],
                           overwrite=overwrite)
    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    policy = VLAPolicy.from_pretrained(policy_dir)
    table = cached_features(policy_dir, data, Path(feature_cache or state_dir(out) / "features"), progress=progress)
    train_rows, val_rows = table.split(cfg.val_fraction, cfg.seed)
    tr, va = transitions(table, train_rows, cfg), transitions(table, val_rows, cfg)
    v_min, v_max = cfg.return_range()
    vcfg = ValueConfig(cond_dim=policy.config.d_model, horizon=policy.config.horizon,
                       action_dim=policy.config.action_dim, hidden=cfg.hidden, layers=cfg.layers, head=cfg.head,
                       bins=cfg.bins, v_min=v_min, v_max=v_max, policy=weights_fingerprint(policy))
    model = ValueFunction(vcfg, policy.normalizer)
    target = copy.deepcopy(model.critics).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    meta = {"train_config": asdict(cfg), "features": cache_key(policy_dir, data),
            "transitions": int(len(tr.rows)), "val_transitions": int(len(va.rows))}
    run = Run(out, {"model": model, "target": target}, opt, gen, meta)
    cond = torch.from_numpy(table.cond)
    actions = torch.from_numpy(table.actions)

    # Ranking diagnostics on held-out demonstration states (the verifier's synthetic preferences).
    rank_rows = demonstration_rows(table, val_rows)
    rank_rows = np.sort(np.random.default_rng(cfg.seed).choice(rank_rows, min(512, len(rank_rows)), replace=False))
    rank_sets = (build_candidates(policy, table, rank_rows, VerifierTrainConfig(), seed=cfg.seed + 1)
                 if len(rank_rows) else None)  # none without expert or dart episodes

    def losses(idx: torch.Tensor, trans: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(trans.rows)[idx]
        s, a = cond[rows], actions[rows]
        with torch.no_grad():
            q_t = model.q_values(s, a, critics=target).min(0).values
            y = torch.from_numpy(trans.reward)[idx] + torch.from_numpy(trans.discount)[idx] * \
                model.state_value(cond[torch.from_numpy(trans.next_rows)[idx]])
        v_loss = expectile_loss(q_t - model.state_value(s), cfg.expectile)
        return v_loss, critic_loss(model, s, a, y)

    def train_step() -> float:
        model.train()
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (run.step + 1) / 500)
        idx = torch.randint(0, len(tr.rows), (cfg.batch_size,), generator=gen)
        v_loss, q_loss = losses(idx, tr)
        loss = v_loss + q_loss
        if cfg.cql_alpha > 0:
            rows = torch.from_numpy(tr.rows)[idx]
            ood = perturbed_chunks(model, actions[rows], cfg, policy.config.action_spec, gen)
            loss = loss + cfg.cql_alpha * calibrated_conservative_loss(model, cond[rows], actions[rows], ood,
                                                                       torch.from_numpy(tr.mc_return)[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pt, pm in zip(target.parameters(), model.critics.parameters()):
                pt.lerp_(pm, cfg.target_tau)
        return loss.item()

    @torch.no_grad()
    def validate() -> dict:
        model.eval()
        idx = torch.arange(min(len(va.rows), 4096))
        v_loss, q_loss = losses(idx, va)
        out = {"val_v_loss": float(v_loss), "val_q_loss": float(q_loss), **success_auc(model, table, val_rows)}
        if rank_sets is not None:
            out.update(ranking_metrics(model, rank_sets, 0.005))
        return out

    def save_model(last: dict) -> None:
        card = value_card(cfg, last, command, data, policy_dir, meta)
        metrics = [name for name in last if name.startswith("val_")]
        model.save_pretrained(out, model_card=model.card_text(card, datasets=data, metrics=metrics),
                              overwrite=overwrite)

    last = run.loop(cfg.steps, train_step, validate, save_model, cfg.val_every, cfg.ckpt_every, resume, progress,
                    "train value")
    return {"out": str(out), "steps": run.step, "seconds": round(time.perf_counter() - t0, 1), **last, **meta}


@torch.no_grad()
def success_auc(model: ValueFunction, table: FeatureTable, rows: np.ndarray) -> dict:
    """ROC AUC of Q(s_t, recorded chunk) for "this episode ends in success", over held-out rows of
    policy rollouts (the data where both outcomes happen); NaN when they hold only one outcome."""
    policy_q = [QUALITIES.index(q) for q in ("base", "policy", "noisy")]
    r = rows[np.isin(table.quality[table.episode[rows]], policy_q)]
    if len(r) == 0:
        return {"val_success_auc": float("nan")}
    q = model(torch.from_numpy(table.cond[r]), torch.from_numpy(table.actions[r])).numpy()
    y = table.success[table.episode[r]]
    if y.all() or not y.any():
        return {"val_success_auc": float("nan")}
    order = np.argsort(q)
    ranks = np.empty(len(q))
    ranks[order] = np.arange(1, len(q) + 1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return {"val_success_auc": float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))}


def value_card(cfg: ValueTrainConfig, last: dict, command: str, data, policy_dir, meta: dict) -> str:
    m = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in last.items()}
    cql = (f", plus Cal-QL's calibrated conservative term (alpha {cfg.cql_alpha}, {cfg.cql_samples} perturbed "
           "chunks per state)" if cfg.cql_alpha > 0 else "")
    return (
        "# vla_steering value function (V-GPS)\n\n"
        f"Q(s, chunk) by IQL{cql} (expectile {cfg.expectile}, two critics, min at inference, head `{cfg.head}`"
        f"{f' with {cfg.bins} bins' if cfg.head == 'hlgauss' else ''}) over the frozen policy's conditioning "
        f"token. Rewards `{cfg.reward}`, gamma {cfg.gamma} per step, {cfg.k}-step chunk transitions.\n\n"
        f"- Policy it reads: `{policy_dir}` (fingerprint in config.json `policy`)\n"
        f"- Data: {', '.join(str(d) for d in data)}; {meta['transitions']} transitions\n"
        f"- Command: `{command}`\n"
        f"- Held-out metrics at step {m.get('step')}: success AUC on policy rollouts {m.get('val_success_auc')}, "
        f"pairwise accuracy on synthetic preferences {m.get('val_pair_acc')}, pick NRMSE among policy candidates "
        f"{m.get('val_pick_nrmse')} (random {m.get('val_random_nrmse')})\n"
    )
