"""Named evaluation splits: `id` is the training distribution, the rest shift one factor each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variation:
    name: str
    description: str
    arm: str | None = None  # forces an arm (embodiment split); None keeps the env's arm
    unseen_distractors: bool = False
    appearance_shift: bool = False
    camera_jitter: float = 0.0  # metres of eye/target perturbation
    placement_x: tuple[float, float] = (0.40, 0.62)
    placement_y: tuple[float, float] = (-0.16, 0.16)
    held_out_language: bool = False


VARIATIONS: dict[str, Variation] = {
    v.name: v
    for v in (
        Variation("id", "training distribution"),
        Variation("distractors", "unseen distractor objects from pybullet_data/random_urdfs", unseen_distractors=True),
        Variation("appearance", "changed lighting, table colour and object shades", appearance_shift=True),
        Variation("camera", "static camera eye/target perturbed by up to 6 cm", camera_jitter=0.06),
        Variation("placement", "objects placed in a wider area than in training",
                  placement_x=(0.34, 0.68), placement_y=(-0.24, 0.24)),
        Variation("paraphrase", "unseen instruction paraphrases", held_out_language=True),
        Variation("embodiment", "the same tasks on the KUKA iiwa arm (training uses the Panda)", arm="kuka"),
    )
}


def get_variation(name: str) -> Variation:
    if name not in VARIATIONS:
        raise ValueError(f"unknown variation {name!r}; known variations: {sorted(VARIATIONS)}")
    return VARIATIONS[name]
