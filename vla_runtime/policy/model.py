"""`VLAPolicy`: encode an observation once, then draw many action chunks in one batched run.

Checkpoint folder = `config.json` + `model.safetensors` + `normalization.json`
+ `README.md` (model card). The frozen language encoder is referenced by
config, not copied into the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from vla_runtime.checkpoint import load_weights, parse_json_file, require_files, write_checkpoint
from vla_runtime.hub import HubMixin, resolve_checkpoint
from vla_runtime.policy.config import PolicyConfig, check_steps
from vla_runtime.policy.dit import DiTHead
from vla_runtime.policy.language import LanguageEncoder
from vla_runtime.policy.normalize import Normalizer
from vla_runtime.policy.protocol import Context
from vla_runtime.policy.roles import ROLES, RoleGrounding
from vla_runtime.policy.vision import VisionEncoder
from vla_runtime.types import Observation

CHECKPOINT_FILES = ("config.json", "model.safetensors", "normalization.json")
OBJECT_TARGET_DIM = 4  # target object xy + goal xy (table frame, metres), see `steps.object_targets`
_OBJECT_CENTRE, _OBJECT_SCALE = (0.5, 0.0), 0.15  # table xy -> roughly unit range
_LANGUAGE: dict[str, LanguageEncoder] = {}


def shared_language_encoder(model_dir: str) -> LanguageEncoder:
    """One frozen encoder (and one embedding cache) per process and model folder."""
    if model_dir not in _LANGUAGE:
        _LANGUAGE[model_dir] = LanguageEncoder(model_dir)
    return _LANGUAGE[model_dir]


def language_features(config: PolicyConfig, texts: list[str]) -> torch.Tensor:
    """The policy's `lang` input for each instruction: (B, language_dim) sentence embeddings, or for a
    role-grounding policy (B, 1 + max_length, language_dim) with the token states (`encode_tokens`)."""
    encoder = shared_language_encoder(config.language_model)
    return encoder.encode_tokens(texts) if config.role_grounding else encoder.encode(texts)


class VLAPolicy(nn.Module, HubMixin, tags=["vision-language-action", "diffusion-policy"]):
    def __init__(self, config: PolicyConfig, normalizer: Normalizer) -> None:
        super().__init__()
        if normalizer.action_low.shape != (config.action_dim,):
            raise ValueError(f"normalizer has {normalizer.action_low.shape[0]} action dims, config {config.action_dim}")
        if normalizer.proprio_mean.shape != (config.proprio_dim,):
            raise ValueError(f"normalizer has {normalizer.proprio_mean.shape[0]} proprio dims, "
                             f"config {config.proprio_dim}")
        self.config = config
        self.normalizer = normalizer
        d = config.d_model
        self.lang_proj = nn.Sequential(nn.Linear(config.language_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.proprio_mlp = nn.Sequential(nn.Linear(config.proprio_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.vision = VisionEncoder(config.vision_channels, config.vision_groups, config.keypoints, cond_dim=d,
                                    out_dim=d, strides=config.vision_strides)
        self.wrist_vision = (VisionEncoder(config.vision_channels, config.vision_groups, config.keypoints, cond_dim=d,
                                           out_dim=d, strides=config.wrist_vision_strides)
                             if config.wrist_camera else None)
        n_parts = 4 if config.wrist_camera else 3
        self.roles = self.role_proj = None
        if config.role_grounding:
            self.roles = RoleGrounding(config.language_dim, config.vision_channels[-1], d)
            self.role_proj = nn.Linear(len(ROLES) * self.roles.feature_dim, d)
            n_parts += 1
        self.fuse = nn.Sequential(nn.Linear(n_parts * d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))
        self.null_cond = nn.Parameter(torch.zeros(1, d))  # the "no condition" token for CFG
        self.register_buffer("proprio_keep", torch.tensor(config.proprio_keep, dtype=torch.float32),
                             persistent=False)
        # Training-only auxiliary head (see PolicyConfig.aux_weight); never used for sampling.
        self.aux_head = (nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, config.horizon * config.action_dim))
                         if config.aux_weight > 0 else None)
        self.aux_object_head = (nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, OBJECT_TARGET_DIM))
                                if config.aux_object_weight > 0 and not config.role_grounding else None)
        self.anchor_mlp = None
        if config.anchor:  # added to the fused token; zero output at init, so fine-tuning starts from the parent
            self.anchor_mlp = nn.Sequential(nn.Linear(2 * OBJECT_TARGET_DIM, d), nn.SiLU(), nn.Linear(d, d))
            nn.init.zeros_(self.anchor_mlp[-1].weight)
            nn.init.zeros_(self.anchor_mlp[-1].bias)
        self.head = DiTHead(config.action_dim, config.horizon, d, config.dit_layers, config.dit_heads,
                            config.dit_mlp_ratio, config.dropout)
        sched = {"num_train_timesteps": config.train_timesteps, "beta_schedule": config.beta_schedule,
                 "prediction_type": "epsilon", "clip_sample": True, "clip_sample_range": 1.0}
        self.train_scheduler = DDPMScheduler(**sched)
        # Sampling clips the predicted clean chunk per dimension to the ActionSpec bounds (`_bound_x0`),
        # not to the scheduler's +-1: the normalisation uses the q01..q99 range, so +-1 cut off real
        # actions (e.g. dx beyond -2.1 cm when the expert moves 3 cm per step) and every sampled
        # approach fell short.
        self.sample_scheduler = DDIMScheduler(**{**sched, "clip_sample": False}, set_alpha_to_one=True)
        self.sample_scheduler.set_timesteps(config.inference_steps)
        self._schedulers: dict[int, DDIMScheduler] = {}  # other step counts (`scheduler`)
        spec = config.action_spec
        bounds = normalizer.normalize_actions(torch.from_numpy(np.stack([spec.low_array(), spec.high_array()])))
        self.register_buffer("x0_low", bounds[0].float(), persistent=False)  # (A,) normalised ActionSpec bounds
        self.register_buffer("x0_high", bounds[1].float(), persistent=False)

    @property
    def action_spec(self):
        return self.config.action_spec

    @property
    def has_object_head(self) -> bool:
        """A target/goal xy head exists: the auxiliary head, or the role-grounding heads."""
        return self.aux_object_head is not None or self.roles is not None

    def reset(self) -> None:
        """The `Policy` contract's episode boundary: this model keeps no state between decisions."""

    # --- conditioning ------------------------------------------------------------
    def condition(self, images: torch.Tensor, lang: torch.Tensor, proprio: torch.Tensor,
                  wrist: torch.Tensor | None = None, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1], lang (see `language_features`), proprio (B, P) raw, wrist (B, 3, h, w)
        in [0, 1] when the config names a wrist camera, anchor (B, 4) metres (see `features`)
        -> cond (B, d_model)."""
        return self.features(images, lang, proprio, wrist=wrist, anchor=anchor)[1]

    def features(self, images: torch.Tensor, lang: torch.Tensor, proprio: torch.Tensor,
                 wrist: torch.Tensor | None = None, anchor: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (grounding features (B, G), cond (B, d_model)); the object head reads one of them (see
        `fused_features`).

        anchor (B, 4): an anchor policy's target + goal xy; None = this frame's own estimate (what the
        first decision of an episode uses)."""
        vis, cond = self.fused_features(images, lang, proprio, wrist)
        return vis, self.add_anchor(vis, cond, proprio, anchor)[0]

    def add_anchor(self, vis: torch.Tensor, cond: torch.Tensor, proprio: torch.Tensor,
                   anchor: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (cond with the anchor term added, the anchor (B, 4) used); the identity for other policies."""
        if self.anchor_mlp is None:
            if anchor is not None:
                raise ValueError("this policy was not trained with an anchor (config.anchor is false)")
            return cond, None
        if anchor is None:
            anchor = self.object_xy(vis).detach()
        elif tuple(anchor.shape) != (cond.shape[0], OBJECT_TARGET_DIM) or not bool(torch.isfinite(anchor).all()):
            raise ValueError(f"anchor must be finite with shape ({cond.shape[0]}, {OBJECT_TARGET_DIM}), "
                             f"got {tuple(anchor.shape)}")
        ee_xy = proprio[:, :2].to(cond.dtype).repeat(1, 2)  # PROPRIO_NAMES starts with ee_x, ee_y
        inputs = torch.cat([anchor - ee_xy, anchor - _object_centre(cond.dtype)], dim=-1) / _OBJECT_SCALE
        return cond + self.anchor_mlp(inputs), anchor

    def fused_features(self, images: torch.Tensor, lang: torch.Tensor, proprio: torch.Tensor,
                       wrist: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (grounding features (B, G), the fused token before any anchor term (B, d)): the part of
        `features` the ONNX encoder graph and the scorers' feature cache run on their own. The grounding
        features are what the object head reads: the main camera's vision features (G = d), or with role
        grounding the per-role image points and features (G = `grounding_dim`)."""
        if (wrist is None) != (self.wrist_vision is None):
            raise ValueError(f"this policy's wrist camera is {self.config.wrist_camera!r}: "
                             f"{'pass' if wrist is None else 'do not pass'} wrist images")
        want = 3 if self.roles is not None else 2
        if lang.dim() != want or lang.shape[-1] != self.config.language_dim:
            raise ValueError(f"lang must be {'(B, 1 + tokens, ' if want == 3 else '(B, '}"
                             f"{self.config.language_dim}) for this policy (role_grounding="
                             f"{self.config.role_grounding}; see language_features), got {tuple(lang.shape)}")
        lang_tok = self.lang_proj(lang[:, 0] if self.roles is not None else lang)
        vis, fmap = self.vision.features(images * 2 - 1, lang_tok)
        prop = self.proprio_mlp(self.normalizer.normalize_proprio(proprio) * self.proprio_keep)
        parts = [vis, lang_tok, prop]
        if self.wrist_vision is not None:
            parts.append(self.wrist_vision(wrist * 2 - 1, lang_tok))
        if self.roles is not None:
            vis = self.roles(lang[:, 1:], fmap).flatten(1)  # (B, R * feature_dim)
            parts.append(self.role_proj(vis))
        return vis, self.fuse(torch.cat(parts, dim=-1))

    @property
    def grounding_dim(self) -> int:
        """G: the width of the grounding features `fused_features` returns."""
        return len(ROLES) * self.roles.feature_dim if self.roles is not None else self.config.d_model

    def images_to_tensor(self, images: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, h, w) float [0, 1] at `size` (default: the main camera's)."""
        return images_to_tensor(images, tuple(size or self.config.image_size))

    @torch.inference_mode()
    def encode(self, obs: Observation, anchor: np.ndarray | None = None) -> Context:
        """anchor (4,) metres: the episode's latched anchor (anchor policies; None = estimate it here)."""
        check_observation(self.config, obs)
        lang = language_features(self.config, [obs.instruction])
        images = self.images_to_tensor(obs.images[self.config.camera][None])
        wrist = (self.images_to_tensor(obs.images[self.config.wrist_camera][None], self.config.wrist_image_size)
                 if self.config.wrist_camera else None)
        proprio = torch.from_numpy(obs.proprio)[None]
        vis, cond = self.fused_features(images, lang, proprio, wrist)
        anchor_t = None if anchor is None else torch.as_tensor(np.asarray(anchor, np.float32)).reshape(1, -1)
        cond, used = self.add_anchor(vis, cond, proprio, anchor_t)
        return Context(cond=cond, observation=obs, anchor=None if used is None else used[0].numpy().copy())

    @torch.inference_mode()
    def encode_batch(self, observations: list[Observation], anchors: list[np.ndarray | None]) -> list[Context]:
        """B decisions of B episodes in one encoder pass (the batched inference actor): anchors[b] is episode b's
        latched anchor or None (its first decision estimates one). Instructions are embedded one by one, so the
        language cache serves them and no padding differs from `encode`."""
        if len(observations) != len(anchors) or not observations:
            raise ValueError(f"need one anchor (or None) per observation, got {len(observations)} observations "
                             f"and {len(anchors)} anchors")
        for obs in observations:
            check_observation(self.config, obs)
        lang = torch.cat([language_features(self.config, [obs.instruction]) for obs in observations])
        images = self.images_to_tensor(np.stack([obs.images[self.config.camera] for obs in observations]))
        wrist = (self.images_to_tensor(np.stack([obs.images[self.config.wrist_camera] for obs in observations]),
                                       self.config.wrist_image_size) if self.config.wrist_camera else None)
        proprio = torch.from_numpy(np.stack([obs.proprio for obs in observations]))  # (B, P)
        vis, cond = self.fused_features(images, lang, proprio, wrist)
        anchor_t = None
        if self.anchor_mlp is not None:
            estimate = self.object_xy(vis).detach()  # (B, 4): used where an episode has none latched yet
            anchor_t = torch.stack([estimate[b] if a is None else torch.as_tensor(np.asarray(a, np.float32))
                                    for b, a in enumerate(anchors)])
        elif any(a is not None for a in anchors):
            raise ValueError("this policy was not trained with an anchor (config.anchor is false)")
        cond, used = self.add_anchor(vis, cond, proprio, anchor_t)
        return [Context(cond=cond[b:b + 1], observation=obs,
                        anchor=None if used is None else used[b].numpy().copy())
                for b, obs in enumerate(observations)]

    @torch.inference_mode()
    def sample_batch(self, contexts: list[Context], noises: list[torch.Tensor], steps: int | None = None
                     ) -> list[np.ndarray]:
        """One denoising run for B decisions: noises[b] (n_b, H, A) drawn by each episode's own generator, as
        `sample` draws it -> [(n_b, H, A)] in robot units."""
        if len(contexts) != len(noises) or not contexts:
            raise ValueError(f"need one noise tensor per context, got {len(contexts)} and {len(noises)}")
        counts = [int(x.shape[0]) for x in noises]
        cond = torch.cat([c.cond.expand(k, -1) for c, k in zip(contexts, counts)])  # (sum n_b, d)
        x = self.denoise(cond, torch.cat(noises), steps=steps)
        actions = self.normalizer.unnormalize_actions(x).numpy().astype(np.float32)
        spec = self.config.action_spec
        actions = np.clip(actions, spec.low_array(), spec.high_array())
        return np.split(actions, np.cumsum(counts)[:-1])

    # --- sampling ----------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, ctx: Context, n: int, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None, steps: int | None = None) -> np.ndarray:
        """n action chunks (n, H, A) float32 in robot units from ONE conditioning token.

        The condition is repeated n times and the DiT runs once per denoising
        step on the whole batch; the encoders never run here. steps: DDIM steps (None: the config's
        `inference_steps`); fewer make cheaper, worse candidates (`SteeringConfig.steps`).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        shape = (n, self.config.horizon, self.config.action_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=ctx.cond.dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        x = self.denoise(ctx.cond, noise, steps=steps)
        actions = self.normalizer.unnormalize_actions(x).numpy().astype(np.float32)
        spec = self.config.action_spec
        return np.clip(actions, spec.low_array(), spec.high_array())

    def denoise(self, cond: torch.Tensor, noise: torch.Tensor, head=None, steps: int | None = None) -> torch.Tensor:
        """DDIM (eta=0, deterministic given the noise) from noise (n, H, A) -> normalised actions. head: the
        denoiser `(x, t, cond) -> eps` (default `self.head`; the ONNX export passes its static form);
        steps: None = `config.inference_steps`."""
        head = head or self.head
        scheduler = self.scheduler(steps)
        n = noise.shape[0]
        cond_n = cond.expand(n, -1)  # one token for every chunk, or (sample_batch) one per chunk already
        guided = self.config.guidance_scale != 1.0
        if guided:
            cond_n = torch.cat([cond_n, self.null_cond.expand(n, -1)])
        x = noise
        for t in scheduler.timesteps:
            xin = torch.cat([x, x]) if guided else x
            eps = head(xin, t.expand(xin.shape[0]), cond_n)
            if guided:
                eps_c, eps_u = eps.chunk(2)
                eps = eps_u + self.config.guidance_scale * (eps_c - eps_u)
            x = scheduler.step(self._bound_x0(x, eps, t), t, x).prev_sample
        return x

    def scheduler(self, steps: int | None = None) -> DDIMScheduler:
        """The DDIM scheduler for `steps` denoising steps (one per step count, made on first use)."""
        if steps is None:
            return self.sample_scheduler
        check_steps(steps, self.config.train_timesteps)
        if steps == self.config.inference_steps:
            return self.sample_scheduler
        if steps not in self._schedulers:
            sched = DDIMScheduler.from_config(self.sample_scheduler.config)
            sched.set_timesteps(steps)
            self._schedulers[steps] = sched
        return self._schedulers[steps]

    def _bound_x0(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise estimate whose implied clean chunk is clipped per dimension to the ActionSpec bounds
        (what DDIM's clip_sample does with one scalar range); x, eps (n, H, A)."""
        a = self.sample_scheduler.alphas_cumprod[int(t)].to(x.dtype)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return (x - a.sqrt() * torch.clamp(x0, self.x0_low, self.x0_high)) / (1 - a).clamp_min(1e-12).sqrt()

    # --- training ----------------------------------------------------------------
    def loss(self, images: torch.Tensor, lang: torch.Tensor, proprio: torch.Tensor, actions: torch.Tensor,
             generator: torch.Generator | None = None, object_xy: torch.Tensor | None = None,
             object_mask: torch.Tensor | None = None, chunk_mask: torch.Tensor | None = None,
             wrist: torch.Tensor | None = None, anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Epsilon-prediction DDPM loss + the weighted auxiliary losses (see `PolicyConfig`).

        actions (B, H, A) robot units; chunk_mask (B, H) bool: chunk positions with valid labels
        (None: all); object_xy (B, 4) metres and object_mask (B,) bool: which rows carry valid
        object labels (None: no object loss); wrist (B, 3, h, w), anchor (B, 4): see `features` (an
        anchor policy trains on given anchors: the labels plus noise, `train.Trainer`).
        """
        b = actions.shape[0]
        if self.anchor_mlp is not None and anchor is None:
            raise ValueError("an anchor policy trains on given anchors (pass anchor=)")
        vis, cond = self.features(images, lang, proprio, wrist=wrist, anchor=anchor)
        target = self.normalizer.normalize_actions(actions)
        weight = (torch.ones(target.shape[:2]) if chunk_mask is None else chunk_mask.to(target.dtype)).unsqueeze(-1)
        denom = (weight.sum() * target.shape[-1]).clamp_min(1.0)
        aux = cond.new_zeros(())
        if self.aux_head is not None:
            sq = (self.aux_head(cond).view_as(target) - target) ** 2
            aux = aux + self.config.aux_weight * (sq * weight).sum() / denom
        if self.has_object_head and object_xy is not None and object_mask is not None \
                and bool(object_mask.any()):
            aux = aux + self.config.aux_object_weight * self._object_error(vis, cond, object_xy, object_mask)
        if self.training and self.config.cond_dropout > 0:
            drop = torch.rand(b, 1, generator=generator) < self.config.cond_dropout
            cond = torch.where(drop, self.null_cond.expand(b, -1), cond)
        noise = torch.randn(target.shape, generator=generator)
        t = torch.randint(0, self.config.train_timesteps, (b,), generator=generator)
        noisy = self.train_scheduler.add_noise(target, noise, t)
        return ((self.head(noisy, t, cond) - noise) ** 2 * weight).sum() / denom + aux

    def object_loss(self, images: torch.Tensor, lang: torch.Tensor, proprio: torch.Tensor,
                    object_xy: torch.Tensor, wrist: torch.Tensor | None = None) -> torch.Tensor:
        """The object-localisation loss alone (unweighted), for grounding pre-training; object_xy (B, 4)."""
        if not self.has_object_head:
            raise ValueError("this policy has no object head (aux_object_weight=0)")
        vis, cond = self.fused_features(images, lang, proprio, wrist)
        return self._object_error(vis, cond, object_xy, torch.ones(len(object_xy), dtype=torch.bool))

    def _object_error(self, vis: torch.Tensor, cond: torch.Tensor, object_xy: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
        feats = vis if self.config.aux_object_input == "vision" else cond
        return (((self.object_xy(feats[mask]) - object_xy[mask]) / _OBJECT_SCALE) ** 2).mean()

    def object_xy(self, feats: torch.Tensor) -> torch.Tensor:
        """Features named by `aux_object_input` (see `features`) -> (B, 4) the object head's target-object +
        goal xy in metres (the auxiliary head, or the role heads of a role-grounding policy)."""
        if not self.has_object_head:
            raise ValueError("this policy has no object head (aux_object_weight=0)")
        xy = self.roles.xy(feats) if self.roles is not None else self.aux_object_head(feats)
        return xy * _OBJECT_SCALE + _object_centre(feats.dtype)

    # --- checkpoints -------------------------------------------------------------
    def save_pretrained(self, out_dir: str | Path, model_card: str = "", state_dict: dict | None = None,
                        overwrite: bool = False) -> Path:
        """Write the checkpoint folder atomically (`checkpoint.write_checkpoint`: it replaces only a policy
        checkpoint unless `overwrite`). `model_card` is written as given (`policy.card.policy_card` adds the
        Hub metadata); without one, a short card with the metadata."""
        return write_checkpoint(out_dir, self.config.to_dict(), self.normalizer.to_dict(),
                                state_dict or self.state_dict(),
                                model_card or self.card_text(default_model_card(self.config)), overwrite=overwrite)

    def extended(self, config: PolicyConfig) -> tuple[VLAPolicy, list[str]]:
        """A copy under `config` that may only ADD modules (e.g. `anchor`): every existing weight is kept,
        so fine-tuning starts from this policy -> (the new policy, the names of its new tensors)."""
        new = type(self)(config, self.normalizer)
        own, theirs = self.state_dict(), new.state_dict()
        lost = sorted(set(own) - set(theirs))
        reshaped = [k for k in set(own) & set(theirs) if own[k].shape != theirs[k].shape]
        if lost or reshaped:
            raise ValueError(f"config changes would drop or reshape trained weights: dropped {lost[:5]}, "
                             f"reshaped {sorted(reshaped)[:5]}; only additions (like anchor) can be fine-tuned")
        new.load_state_dict({**theirs, **own})
        return new.train(self.training), sorted(set(theirs) - set(own))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None) -> VLAPolicy:
        """A checkpoint folder, or a Hub repo id read from the local Hugging Face cache at `revision`
        (`hub.resolve_checkpoint`: never downloads)."""
        path = resolve_checkpoint(name_or_path, "policy", revision, cache_dir)
        require_files(path, CHECKPOINT_FILES, "policy")
        config, normalizer = read_policy_files(path)
        model = cls(config, normalizer)
        load_weights(model, path / "model.safetensors")
        return model.eval()


def read_policy_files(folder: Path) -> tuple[PolicyConfig, Normalizer]:
    """config.json + normalization.json of a policy checkpoint or export, each checked (with the file's name
    in every complaint) and checked against each other."""
    config = parse_json_file(folder / "config.json", PolicyConfig.from_dict)
    normalizer = parse_json_file(folder / "normalization.json", Normalizer.from_dict)
    parse_json_file(folder / "normalization.json",
                    lambda _: normalizer.check_dims(config.action_dim, config.proprio_dim))
    return config, normalizer


def images_to_tensor(images: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, h, w) float [0, 1] at `size` (antialiased bilinear when it differs);
    every backend prepares images through this one function."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x


def check_observation(config, obs: Observation) -> None:
    """What every backend's `encode` refuses: missing cameras, a wrong proprio shape."""
    missing = [c for c in config.cameras if c not in obs.images]
    if missing:
        raise ValueError(f"policy needs camera(s) {missing}, observation has {sorted(obs.images)}")
    if obs.proprio.shape != (config.proprio_dim,):
        raise ValueError(f"policy needs proprio of shape ({config.proprio_dim},), got {obs.proprio.shape}")


def _object_centre(dtype: torch.dtype) -> torch.Tensor:
    """(4,) the table-centre offset of target + goal xy in the object head's and the anchor's units."""
    return torch.tensor(_OBJECT_CENTRE * 2, dtype=dtype)


def default_model_card(config: PolicyConfig) -> str:
    return (f"# vla_steering policy\n\nCogACT-style VLA: language-FiLM CNN + frozen MiniLM + proprio -> one token; "
            f"DiT head ({config.dit_layers} layers, d={config.d_model}), DDIM {config.inference_steps} steps, "
            f"H={config.horizon}.\n")
