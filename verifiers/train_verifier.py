"""`vla train verifier`: the action verifier on synthetic preferences from demonstration states.

Per held-in demonstration state the candidate set mixes what the verifier must rank at run time and
what teaches it the scale of mistakes: the expert chunk, perturbations of it (`preferences.perturb`),
the frozen policy's own samples and RoboMonkey Gaussian draws around them (`GaussianVote`). Every
candidate's label is its NRMSE to the expert chunk; pairs train with RoboMonkey's preference loss.
Validation reports held-out pairwise accuracy and, on the policy's candidates, the NRMSE of the
verifier's pick against a random pick and the oracle: the figure steering depends on.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from verifiers.action_verifier import CONFIG_TYPE, ActionVerifier, VerifierConfig
from verifiers.features import QUALITIES, FeatureTable, cache_key, cached_features
from verifiers.preferences import nrmse, perturb, preference_loss
from verifiers.proposals import GaussianVote
from verifiers.relabelled import Decisions, read_decisions
from vla_runtime.checkpoint import is_checkpoint_of, weights_fingerprint
from vla_runtime.io import check_output_dir
from vla_runtime.policy.model import VLAPolicy
from vla_runtime.training import Run, state_dir


@dataclass(frozen=True)
class VerifierTrainConfig:
    steps: int = 8000
    batch_states: int = 64  # states per step; every candidate of a state is scored
    pairs_per_state: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    alpha: float = 0.1  # RoboMonkey's preference-level weight (0 = plain Bradley-Terry)
    min_gap: float = 0.005  # NRMSE difference below which a pair is a tie and skipped
    max_states: int = 20_000  # demonstration states given candidate sets
    perturbations: int = 16  # expert perturbations per state
    policy_samples: int = 8  # frozen-policy samples per state
    gaussian: int = 8  # GaussianVote draws around the policy samples
    hidden: int = 256
    layers: int = 2
    val_fraction: float = 0.05
    val_every: int = 500
    ckpt_every: int = 1000
    seed: int = 0
    threads: int = 2
    image_shift: int = 4  # own-perception verifier: random image shift in pixels (training only)
    color_jitter: float = 0.1  # own-perception verifier: brightness/contrast jitter (training only)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_states", "pairs_per_state", "max_states", "perturbations", "policy_samples",
                     "hidden", "layers", "val_every", "ckpt_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gaussian < 0:
            raise ValueError(f"gaussian must be >= 0, got {self.gaussian}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.alpha < 0 or self.min_gap < 0:
            raise ValueError(f"alpha and min_gap must be >= 0, got alpha={self.alpha} min_gap={self.min_gap}")
        if self.image_shift < 0 or not 0 <= self.color_jitter < 1:
            raise ValueError(f"image_shift must be >= 0 and color_jitter in [0, 1), got {self.image_shift} and "
                             f"{self.color_jitter}")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")


@dataclass
class CandidateSets:
    cond: np.ndarray  # (S, d) the policy's token at each state
    candidates: np.ndarray  # (S, K, H, A) robot units; column 0 is the expert chunk
    errors: np.ndarray  # (S, K) NRMSE to the expert chunk
    policy_cols: slice  # the columns holding policy samples + Gaussian draws (what steering ranks)
    mean_col: int | None  # the samples' Gaussian mean (what `--average` executes), when Gaussian draws exist


@torch.inference_mode()
def build_candidates(policy: VLAPolicy, table: FeatureTable, rows: np.ndarray, cfg: VerifierTrainConfig,
                     seed: int, batch: int = 256) -> CandidateSets:
    """Candidate sets for the states `rows`: [expert, perturbations, policy samples, Gaussian draws]."""
    spec = policy.config.action_spec
    low, high = policy.normalizer.action_low, policy.normalizer.action_high
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    proposal = GaussianVote(spec)
    s_n, p_n, g_n = cfg.policy_samples, cfg.perturbations, cfg.gaussian
    k = 1 + p_n + s_n + g_n
    h, a = spec.chunk_length, spec.dim
    cands = np.empty((len(rows), k, h, a), np.float32)
    for b in range(0, len(rows), batch):
        r = rows[b:b + batch]
        cond = torch.from_numpy(table.cond[r]).repeat_interleave(s_n, dim=0)  # (B*s_n, d)
        noise = torch.randn((len(cond), h, a), generator=gen)
        x = policy.normalizer.unnormalize_actions(policy.denoise(cond, noise)).numpy()
        samples = np.clip(x, spec.low_array(), spec.high_array()).reshape(len(r), s_n, h, a)
        for i, row in enumerate(r):
            expert = table.actions[row]
            cands[b + i, 0] = expert
            cands[b + i, 1:1 + p_n] = perturb(expert, p_n, spec, low, high, rng)[0]
            cands[b + i, 1 + p_n:1 + p_n + s_n] = samples[i]
            if g_n:
                g = proposal.propose(samples[i], g_n, gen)
                cands[b + i, 1 + p_n + s_n:] = np.concatenate([g, np.repeat(g[:1], g_n - len(g), axis=0)])
    errors = np.stack([nrmse(c, c[0], low, high) for c in cands]).astype(np.float32)
    return CandidateSets(table.cond[rows], cands, errors, slice(1 + p_n, k), 1 + p_n + s_n if g_n else None)


def demonstration_rows(table: FeatureTable, rows: np.ndarray) -> np.ndarray:
    """Rows whose whole chunk is a valid expert label (expert or DART relabelled data, full chunk mask)."""
    demo = np.isin(table.quality[table.episode[rows]], [QUALITIES.index("expert"), QUALITIES.index("dart")])
    return rows[demo & table.chunk_mask[rows].all(axis=1)]


def _random_pairs(errors: torch.Tensor, n: int, min_gap: float, gen: torch.Generator):
    """errors (B, K) -> (state idx, winner col, loser col, d*) for random within-state pairs whose errors
    differ by more than min_gap."""
    b, k = errors.shape
    i = torch.randint(0, k, (b, n), generator=gen)
    j = torch.randint(0, k, (b, n), generator=gen)
    ei, ej = errors.gather(1, i), errors.gather(1, j)
    keep = (ei - ej).abs() > min_gap
    state = torch.arange(b)[:, None].expand(b, n)[keep]
    win = torch.where(ei < ej, i, j)[keep]
    lose = torch.where(ei < ej, j, i)[keep]
    d_star = (torch.maximum(ei, ej) - torch.minimum(ei, ej))[keep]
    return state, win, lose, d_star


def decision_sets(d: Decisions, spec, low: np.ndarray, high: np.ndarray, perturbations: int, val_fraction: float,
                  seed: int) -> tuple[CandidateSets, np.ndarray]:
    """Relabelled decisions -> (their candidate sets, the held-out mask: whole episodes). Per decision:
    [the expert's chunk, perturbations of it, the recorded candidates]; recorded candidate 0 is the samples'
    mean (what `--average n` executes), so validation compares the verifier's pick with it."""
    rng = np.random.default_rng(seed)
    episodes = np.unique(d.episode)
    n_val = max(1, round(val_fraction * len(episodes))) if len(episodes) > 1 else 0
    val_eps = rng.choice(episodes, size=n_val, replace=False)
    k_rec = d.candidates.shape[1]
    cands = np.empty((len(d.cond), 1 + perturbations + k_rec, *d.expert.shape[1:]), np.float32)
    cands[:, 0] = d.expert
    for i, e in enumerate(d.expert):
        cands[i, 1:1 + perturbations] = perturb(e, perturbations, spec, low, high, rng)[0]
    cands[:, 1 + perturbations:] = d.candidates
    errors = np.stack([nrmse(c, c[0], low, high) for c in cands]).astype(np.float32)
    sets = CandidateSets(d.cond, cands, errors, slice(1 + perturbations, cands.shape[1]), 1 + perturbations)
    return sets, np.isin(d.episode, val_eps)


def subset(sets: CandidateSets, mask: np.ndarray) -> CandidateSets:
    return CandidateSets(sets.cond[mask], sets.candidates[mask], sets.errors[mask], sets.policy_cols, sets.mean_col)


def relabelled_sets(dirs: list[str | Path], policy: VLAPolicy, perturbations: int, val_fraction: float,
                    seed: int) -> tuple[CandidateSets, CandidateSets]:
    """(train, val) candidate sets from `vla sim relabel` folders recorded with `policy` (`decision_sets`)."""
    spec = policy.config.action_spec
    d = read_decisions(dirs, weights_fingerprint(policy), spec.chunk_length, spec.dim)
    sets, val = decision_sets(d, spec, policy.normalizer.action_low, policy.normalizer.action_high, perturbations,
                              val_fraction, seed)
    return subset(sets, ~val), subset(sets, val)


def merge_sets(a: CandidateSets | None, b: CandidateSets | None) -> CandidateSets:
    """Both sets' states in one; the narrower is padded with copies of its expert column (ties, never a
    pair). The policy columns and mean column of `a` are kept (validation reads each set on its own)."""
    if a is None or b is None:
        return a if b is None else b
    k = max(a.candidates.shape[1], b.candidates.shape[1])

    def pad(s: CandidateSets) -> tuple[np.ndarray, np.ndarray]:
        extra = k - s.candidates.shape[1]
        return (np.concatenate([s.candidates, np.repeat(s.candidates[:, :1], extra, axis=1)], axis=1),
                np.concatenate([s.errors, np.zeros((len(s.errors), extra), np.float32)], axis=1))

    (ca, ea), (cb, eb) = pad(a), pad(b)
    return CandidateSets(np.concatenate([a.cond, b.cond]), np.concatenate([ca, cb]), np.concatenate([ea, eb]),
                         a.policy_cols, a.mean_col)


def preference_update(model: torch.nn.Module, opt: torch.optim.Optimizer, scores: torch.Tensor, errors: torch.Tensor,
                      cfg: VerifierTrainConfig, gen: torch.Generator) -> float:
    """One optimiser step of RoboMonkey's preference loss on random within-state pairs: scores (B, K) of
    candidates whose NRMSE to the expert is errors (B, K). -> the loss (0.0 when every pair drawn was a tie)."""
    state, win, lose, d_star = _random_pairs(errors, cfg.pairs_per_state, cfg.min_gap, gen)
    if len(state) == 0:  # every drawn pair a tie: nothing to learn from this batch
        return 0.0
    loss = preference_loss(scores[state, win], scores[state, lose], d_star, alpha=cfg.alpha)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def ranking_metrics(model: torch.nn.Module, sets: CandidateSets, min_gap: float, prefix: str = "val") -> dict:
    """How a token scorer (`model(cond (B, d), chunks (B, H, A)) -> (B,)`: the verifier or the value function)
    ranks held-out candidate sets (`rank_scores`)."""
    model.eval()
    with torch.no_grad():
        s, k = sets.errors.shape
        c = torch.from_numpy(sets.candidates)
        scores = model(torch.from_numpy(sets.cond).repeat_interleave(k, 0), c.flatten(0, 1)).view(s, k).numpy()
    return rank_scores(scores, sets, min_gap, prefix)


def rank_scores(scores: np.ndarray, sets: CandidateSets, min_gap: float, prefix: str = "val") -> dict:
    """scores (S, K) of held-out candidate sets -> pairwise accuracy over all pairs, and the NRMSE of the
    argmax among the policy's candidates against a random pick, the oracle and the Gaussian mean (and how
    often the pick is closer to the expert than the mean by more than min_gap, and the reverse)."""
    s = len(scores)
    e = sets.errors
    de = e[:, :, None] - e[:, None, :]  # (S, K, K) positive where column 1 is better
    ds = scores[:, None, :] - scores[:, :, None]
    valid = de > min_gap
    acc = float((ds[valid] > 0).mean()) if valid.any() else float("nan")
    pc = sets.policy_cols
    pe, ps = e[:, pc], scores[:, pc]
    picked = pe[np.arange(s), ps.argmax(1)]
    out = {"pair_acc": acc, "pick_nrmse": float(picked.mean()), "random_nrmse": float(pe.mean()),
           "oracle_nrmse": float(pe.min(1).mean())}
    if sets.mean_col is not None:
        out["mean_nrmse"] = float(e[:, sets.mean_col].mean())
        out["pick_beats_mean"] = float((picked < e[:, sets.mean_col] - min_gap).mean())
        out["mean_beats_pick"] = float((e[:, sets.mean_col] < picked - min_gap).mean())
    return {f"{prefix}_{k}": v for k, v in out.items()}


def train_verifier(policy_dir: str | Path, data: list[str | Path], out: str | Path, cfg: VerifierTrainConfig,
                   resume: bool = False, progress: bool = True, command: str = "",
                   feature_cache: str | Path | None = None, overwrite: bool = False,
                   relabelled: list[str | Path] = (), init: str | Path | None = None) -> dict:
    """data: demonstration datasets (expert / dart episodes); relabelled: `vla sim relabel` folders (the
    policy's own states with the expert's chunk); at least one of the two. init: a verifier checkpoint of
    the same shape to start from (fine-tuning the bundled one on relabelled states). feature_cache: where
    frame encodings are cached (default: beside the run); share one folder between the verifier and value
    trainers."""
    if not data and not relabelled:
        raise ValueError("give demonstration data (--data), relabelled decisions (--relabelled), or both")
    out = check_output_dir(out, is_checkpoint_of(CONFIG_TYPE), "action verifier checkpoint",
                           inputs=[policy_dir, *data, *relabelled, *([init] if init else [])], overwrite=overwrite)
    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    policy = VLAPolicy.from_pretrained(policy_dir)
    demo_train = demo_val = rel_train = rel_val = None
    if data:
        table = cached_features(policy_dir, data, Path(feature_cache or state_dir(out) / "features"), progress=progress)
        train_rows, val_rows = table.split(cfg.val_fraction, cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        train_rows = demonstration_rows(table, train_rows)
        val_rows = demonstration_rows(table, val_rows)
        if len(train_rows) == 0 or len(val_rows) == 0:
            raise ValueError("no demonstration states with a full expert chunk in the data (need expert or dart data)")
        train_rows = np.sort(rng.choice(train_rows, size=min(cfg.max_states, len(train_rows)), replace=False))
        val_rows = np.sort(rng.choice(val_rows, size=min(1024, len(val_rows)), replace=False))
        demo_train = build_candidates(policy, table, train_rows, cfg, seed=cfg.seed)
        demo_val = build_candidates(policy, table, val_rows, cfg, seed=cfg.seed + 1)
    if relabelled:
        rel_train, rel_val = relabelled_sets(list(relabelled), policy, cfg.perturbations, cfg.val_fraction, cfg.seed)
    train_sets = merge_sets(demo_train, rel_train)
    t_cand = time.perf_counter() - t0

    vcfg = VerifierConfig(cond_dim=policy.config.d_model, horizon=policy.config.horizon,
                          action_dim=policy.config.action_dim, hidden=cfg.hidden, layers=cfg.layers,
                          policy=weights_fingerprint(policy))
    model = ActionVerifier(vcfg, policy.normalizer)
    if init is not None:
        start = ActionVerifier.from_pretrained(init)
        if start.config != vcfg:
            raise ValueError(f"--init {init} is a verifier of another shape or policy ({start.config}); this run "
                             f"trains {vcfg}")
        model.load_state_dict(start.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    meta = {"train_config": asdict(cfg), "states": int(len(train_sets.cond)),
            "demonstration_states": 0 if demo_train is None else int(len(demo_train.cond)),
            "relabelled_states": 0 if rel_train is None else int(len(rel_train.cond)),
            "init": str(init) if init else None}
    if data:
        meta["features"] = cache_key(policy_dir, data)
    run = Run(out, {"model": model}, opt, gen, meta)
    cond_all = torch.from_numpy(train_sets.cond)
    cands_all = torch.from_numpy(train_sets.candidates)
    errs_all = torch.from_numpy(train_sets.errors)
    k = cands_all.shape[1]

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / 200)
        return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))

    def train_step() -> float:
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(run.step)
        idx = torch.randint(0, len(cands_all), (cfg.batch_states,), generator=gen)
        b_cond, b_cands, b_errs = cond_all[idx], cands_all[idx], errs_all[idx]
        scores = model(b_cond.repeat_interleave(k, 0), b_cands.flatten(0, 1)).view(len(idx), k)
        return preference_update(model, opt, scores, b_errs, cfg, gen)

    def validate() -> dict:
        metrics = {} if demo_val is None else ranking_metrics(model, demo_val, cfg.min_gap)
        if rel_val is not None and len(rel_val.cond):  # the states steering meets: pick vs the samples' mean
            metrics.update(ranking_metrics(model, rel_val, cfg.min_gap, prefix="relabelled"))
        return metrics

    def save_model(last: dict) -> None:
        card = verifier_card(cfg, last, command, [*data, *relabelled], policy_dir,
                             {"states": len(train_sets.cond), "candidates": k}, init)
        metrics = [name for name in last if name.startswith(("val_", "relabelled_"))]
        model.save_pretrained(out, model_card=model.card_text(card, datasets=[*data, *relabelled], metrics=metrics),
                              overwrite=overwrite)

    last = run.loop(cfg.steps, train_step, validate, save_model, cfg.val_every, cfg.ckpt_every, resume, progress,
                    "train verifier")
    return {"out": str(out), "steps": run.step, "seconds": round(time.perf_counter() - t0, 1),
            "candidates_s": round(t_cand, 1), **last, **meta}


def verifier_card(cfg: VerifierTrainConfig, last: dict, command: str, data, policy_dir, sizes: dict,
                  init: str | Path | None = None) -> str:
    m = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in last.items()}
    lines = [
        "# vla_steering action verifier\n",
        "RoboMonkey-style action verifier at our scale: an MLP over the frozen policy's conditioning token and a "
        "candidate chunk (normalised with the policy's action statistics) -> a scalar (higher = closer to what "
        "the expert would do). Trained on preferences ranked by NRMSE to the expert's chunk with RoboMonkey's "
        f"preference loss (alpha={cfg.alpha}): per demonstration state, the expert chunk, {cfg.perturbations} "
        f"perturbations of it, {cfg.policy_samples} frozen-policy samples and {cfg.gaussian} GaussianVote draws; "
        "per relabelled state (the policy's own, `vla sim relabel`), the expert's chunk from that state, "
        f"{cfg.perturbations} perturbations of it and the candidates steering scored there.\n",
        f"- Policy it reads: `{policy_dir}` (fingerprint in config.json `policy`; steering refuses other policies)",
        f"- Data: {', '.join(str(d) for d in data)}; {sizes['states']} states x {sizes['candidates']} candidates",
        f"- Command: `{command}`" + (f" (starting from `{init}`, whose card names its own command)" if init else ""),
        f"- Held-out metrics at step {m.get('step')}: "
        + "; ".join(f"{k} {v}" for k, v in m.items() if k.startswith(("val_", "relabelled_"))),
    ]
    return "\n".join(lines) + "\n"
