"""Named steering methods -> a `SteeredPolicy`, on any backend.

- `none`: the policy's one sample, unsteered.
- `mean`: the mean of the policy's n samples, gripper by majority vote: the free baseline steering
  must beat (same samples, no scorer).
- `robomonkey`: n policy samples -> m GaussianVote candidates (+ the n samples with `keep_samples`)
  -> the action verifier -> argmax.
- `vgps`: the policy's own n samples (Identity) -> the value function's Q -> argmax or softmax.
- `both`: GaussianVote candidates scored by verifier and value, summed as z-scores.
`safety` adds the geometric `SafetyScorer` (it reads depth, so the environment must render it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from verifiers.pipeline import SteeredPolicy
from verifiers.proposals import GaussianVote, Identity
from verifiers.selection import MODES, Selector
from vla_runtime.checkpoint import weights_fingerprint
from vla_runtime.policy.config import check_steps

# method -> the learned scorers (checkpoint folders) it reads; also what the ROS node checks at configure
LEARNED_SCORERS: dict[str, tuple[str, ...]] = {"none": (), "mean": (), "robomonkey": ("verifier",),
                                               "vgps": ("value",), "both": ("verifier", "value")}
METHODS = tuple(LEARNED_SCORERS)


@dataclass(frozen=True)
class SteeringConfig:
    method: str = "robomonkey"
    n: int = 16  # policy samples per decision
    m: int = 16  # candidates scored (vgps: m <= n of the policy's own samples)
    verifier: str = "models/verifier"
    value: str = "models/value"
    selection: str = "argmax"
    temperature: float = 1.0
    weights: tuple[tuple[str, float], ...] = ()  # `both`: (scorer, weight) pairs for the z-score sum; default 1
    safety: bool = False
    keep_samples: bool = False  # GaussianVote also hands the n samples to the scorers (robomonkey, both)
    rephrasings: int = 0  # k: the n samples are split over the instruction and k rephrasings of it (CoVer)
    margin: float = 0.0  # argmax keeps the samples' mean unless the best candidate beats it by more (`Selector`)
    # DDIM steps of the n samples; None: the policy's own `inference_steps`. Fewer make candidates cheaper and
    # worse (benchmarks/results/steering.md, "Cheaper candidates")
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown steering method {self.method!r}; known: {METHODS}")
        if self.n < 1 or self.m < 1:
            raise ValueError(f"n and m must be >= 1, got n={self.n} m={self.m}")
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise ValueError(f"margin must be a finite number >= 0, got {self.margin}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or self.steps < 1):
            raise ValueError(f"steps must be None (the policy's own) or an integer >= 1, got {self.steps!r}")
        if not 0 <= self.rephrasings < self.n:
            raise ValueError(f"rephrasings must be in 0..n-1 (each wording gets a sample), got {self.rephrasings} "
                             f"with n={self.n}")
        if self.method == "vgps" and self.m > self.n:
            raise ValueError(f"vgps ranks the policy's own samples: m={self.m} must be <= n={self.n}")
        if self.selection not in MODES:
            raise ValueError(f"unknown selection {self.selection!r}; known: {MODES}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")
        for name in LEARNED_SCORERS[self.method]:
            if not Path(getattr(self, name)).is_dir():
                raise FileNotFoundError(f"steering {self.method!r} needs a {name} checkpoint: --{name} "
                                        f"{getattr(self, name)} does not exist")
        unknown = sorted({name for name, _ in self.weights} - set(self.scorer_names))
        if unknown:
            raise ValueError(f"weights name scorers {unknown} that method {self.method!r} does not use "
                             f"({list(self.scorer_names)})")

    @property
    def scorer_names(self) -> tuple[str, ...]:
        return LEARNED_SCORERS[self.method] + (("safety",) if self.safety else ())


def load_scorer(kind: str, path: str | Path, policy):
    """A learned scorer checkpoint, refused when it was trained on another policy's tokens or scores other
    chunk shapes. A verifier folder may also hold a verifier that reads the observation itself: an
    `HFVLMVerifier` (a transformers VLM + reward head) or a `PerceptionVerifier` (its own encoder)."""
    from verifiers.action_verifier import ActionVerifier
    from verifiers.value import ValueFunction

    kind_of_folder = _config_type(Path(path))
    if kind == "verifier" and kind_of_folder == "vla_steering.hf_vlm_verifier":
        from verifiers.hf_verifier import HFVLMVerifier

        return HFVLMVerifier.from_pretrained(path)
    if kind == "verifier" and kind_of_folder == "vla_steering.perception_verifier":
        from verifiers.perception_verifier import PerceptionVerifier

        scorer = PerceptionVerifier.from_pretrained(path)
        _check_chunk_shape(kind, path, scorer.config, policy.action_spec)
        return scorer
    if not getattr(policy, "provides_token", True):
        raise ValueError(f"the {kind} at {path} scores the policy's conditioning token, and a "
                         f"{type(policy).__name__} keeps its token on the server: steer it with scorers that read "
                         f"the observation (a perception or VLM verifier, safety)")
    scorer = (ActionVerifier if kind == "verifier" else ValueFunction).from_pretrained(path)
    trained_on = scorer.config.policy
    if trained_on and trained_on != weights_fingerprint(policy):
        raise ValueError(f"{kind} {path} was trained on another policy's features (fingerprint {trained_on}, "
                         f"this policy {weights_fingerprint(policy)}); retrain it with --policy")
    _check_chunk_shape(kind, path, scorer.config, policy.action_spec)
    if scorer.config.cond_dim != policy.config.d_model:
        raise ValueError(f"{kind} {path} reads {scorer.config.cond_dim}-d tokens, the policy makes "
                         f"{policy.config.d_model}-d ones")
    return scorer


def _check_chunk_shape(kind: str, path, config, spec) -> None:
    if (config.horizon, config.action_dim) != (spec.chunk_length, spec.dim):
        raise ValueError(f"{kind} {path} scores chunks of {config.horizon} x {config.action_dim}, "
                         f"the policy makes {spec.chunk_length} x {spec.dim}")


def _config_type(path: Path) -> str | None:
    try:
        return json.loads((path / "config.json").read_text()).get("type")
    except (OSError, ValueError, AttributeError):
        return None  # from_pretrained reports what is wrong with the folder


def build_steered(policy, cfg: SteeringConfig, scorers: dict | None = None,
                  rephrase: Callable[[str, int], list[str]] | None = None) -> SteeredPolicy:
    """scorers: already loaded scorers by name (tests, caches); the rest load from cfg's paths. rephrase:
    (instruction, k) -> other wordings, needed when cfg.rephrasings > 0 (the simulator's is
    `sim.language.rephrase`)."""
    if cfg.rephrasings and rephrase is None:
        raise ValueError(f"rephrasings={cfg.rephrasings} needs a rephraser (instruction, k) -> wordings")
    if cfg.steps is not None:  # refused when the pipeline is built (the node's configure), not at a decision
        check_steps(cfg.steps, policy.config.train_timesteps)
    words = {"rephrase": rephrase, "rephrasings": cfg.rephrasings, "steps": cfg.steps}
    if cfg.method in ("none", "mean"):  # no scorer: the one sample, or the mean of n
        n = 1 if cfg.method == "none" else cfg.n
        return SteeredPolicy(policy, Identity(policy.action_spec), [], Selector(), n, 1, **words)
    given = dict(scorers or {})
    chosen = []
    for name in cfg.scorer_names:
        if name in given:
            chosen.append(given[name])
        elif name == "safety":
            from verifiers.safety import SafetyScorer

            chosen.append(SafetyScorer(policy.config.action_spec))
        else:
            chosen.append(load_scorer(name, getattr(cfg, name), policy))
    if not getattr(policy, "provides_token", True):
        needs_token = [s.name for s in chosen if getattr(s, "reads", "token") == "token"]
        if needs_token:
            raise ValueError(f"scorer(s) {needs_token} read the policy's conditioning token, which a "
                             f"{type(policy).__name__} does not provide: steer it with scorers that read the "
                             f"observation (a perception or VLM verifier, safety)")
    spec = policy.config.action_spec
    proposal = Identity(spec) if cfg.method == "vgps" else GaussianVote(spec, keep_samples=cfg.keep_samples)
    # One learned scorer: its raw scores (V-GPS's softmax over Q-values); several: z-scores on a common scale.
    learned = [s for s in cfg.scorer_names if s != "safety"]
    selector = Selector(mode=cfg.selection, temperature=cfg.temperature, weights=dict(cfg.weights),
                        zscore=len(learned) > 1, margin=cfg.margin)
    return SteeredPolicy(policy, proposal, chosen, selector, cfg.n, cfg.m, **words)


def ensure_export(policy_dir: str | Path, scorer_dirs: dict[str, str], root: str | Path = "runs/onnx",
                  steps: int | None = None) -> Path:
    """The ONNX export of this policy + its learned scorers, made once (`vla_runtime.backends.cached_export`),
    with a sampler for `steps` DDIM steps beside the policy's own when given."""
    from vla_runtime.backends import cached_export
    from vla_runtime.export import export_onnx
    from vla_runtime.policy.model import VLAPolicy

    def make(out: Path) -> None:
        policy = VLAPolicy.from_pretrained(policy_dir)
        scorers = {name: (load_scorer(name, folder, policy), folder) for name, folder in scorer_dirs.items()}
        export_onnx(policy_dir, out, scorers, replace=False, sample_steps=sample_steps)

    sample_steps = () if steps is None else (steps,)
    variant = f"sample_steps {sample_steps}" if sample_steps else ""
    return cached_export({"policy": policy_dir, **scorer_dirs}, make, root, variant=variant)


def steered_pipeline(policy_dir: str | Path, cfg: SteeringConfig, backend: str = "torch",
                     export_dir: str | Path | None = None, threads: int | None = None,
                     trt_cache: str | Path = "runs/tensorrt",
                     rephrase: Callable[[str, int], list[str]] | None = None) -> SteeredPolicy:
    """`build_steered` on a backend: the policy and its learned scorers from the same backend (onnx /
    tensorrt: from `export_dir`, or an export made and cached on first use)."""
    from vla_runtime.backends import check_backend, load_exported_scorer, load_policy

    check_backend(backend)
    if backend in ("torch", "remote"):  # the scorers run in torch beside the policy (or its client)
        return build_steered(load_policy(policy_dir, backend), cfg, rephrase=rephrase)
    learned = {name: getattr(cfg, name) for name in cfg.scorer_names if name != "safety"}
    if export_dir is None:
        export_dir = ensure_export(policy_dir, learned, steps=cfg.steps)
    policy = load_policy(export_dir, backend, threads=threads, trt_cache=trt_cache)
    # The scorer heads run on the calling thread (see `OrtGraph`): their idle pools would spin on the cores
    # the sampler needs.
    scorers = {name: load_exported_scorer(backend, export_dir, name, trt_cache=trt_cache) for name in learned}
    return build_steered(policy, cfg, scorers=scorers, rephrase=rephrase)
