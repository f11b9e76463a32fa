"""Instruction templates. `paraphrase` templates are held out of training data."""

from __future__ import annotations

import re

TRAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick_lift": (
        "pick up the {obj}",
        "lift the {obj}",
        "grab the {obj} and lift it",
        "pick the {obj} up off the table",
        "raise the {obj}",
    ),
    "place_in": (
        "put the {obj} in the {container}",
        "place the {obj} into the {container}",
        "move the {obj} to the {container}",
        "drop the {obj} in the {container}",
        "put the {obj} inside the {container}",
    ),
    "push_to": (
        "push the {obj} to the {region} target",
        "slide the {obj} to the {region}",
        "push the {obj} onto the {region} pad",
        "move the {obj} to the {region} by pushing it",
        "nudge the {obj} over to the {region} target",
    ),
    "stack": (
        "stack the {obj} on the {base}",
        "put the {obj} on top of the {base}",
        "place the {obj} onto the {base}",
        "set the {obj} on the {base}",
        "stack the {obj} on top of the {base}",
    ),
}

PARAPHRASE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick_lift": (
        "could you hoist the {obj} into the air",
        "take hold of the {obj} and elevate it",
        "get the {obj} off the surface",
    ),
    "place_in": (
        "transfer the {obj} so it ends up within the {container}",
        "deposit the {obj} in the {container} please",
        "the {obj} belongs in the {container}, put it there",
    ),
    "push_to": (
        "shove the {obj} across to the {region} marker",
        "without lifting it, get the {obj} onto the {region} zone",
        "drag the {obj} along the table until it sits on the {region} pad",
    ),
    "stack": (
        "balance the {obj} atop the {base}",
        "build a tower with the {obj} over the {base}",
        "rest the {obj} upon the {base}",
    ),
}


def templates(task: str, held_out: bool) -> tuple[str, ...]:
    table = PARAPHRASE_TEMPLATES if held_out else TRAIN_TEMPLATES
    if task not in table:
        raise ValueError(f"no templates for task {task!r}; known: {sorted(table)}")
    return table[task]


_FIELD = re.compile(r"\{(\w+)\}")


def _pattern(template: str) -> re.Pattern:
    """'put the {obj} in the {container}' -> a regex with one named group per field."""
    parts, last = [], 0
    for m in _FIELD.finditer(template):
        parts += [re.escape(template[last:m.start()]), f"(?P<{m.group(1)}>.+?)"]
        last = m.end()
    parts.append(re.escape(template[last:]))
    return re.compile("^" + "".join(parts) + "$")


_PATTERNS = [(task, t, _pattern(t)) for task, pool in TRAIN_TEMPLATES.items() for t in pool]


def rephrase(instruction: str, k: int) -> list[str]:
    """Up to k other wordings of `instruction` from the training templates of the same task, the objects kept
    ('put the red cube in the bowl' -> 'place the red cube into the bowl', ...). The instruction is parsed
    against the training templates only: one it does not match (a held-out paraphrase, a user's own words)
    gets no rephrasings, so steering samples from the instruction alone."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    text = instruction.strip()
    for task, template, pattern in _PATTERNS:
        m = pattern.match(text)
        if m:
            others = [t for t in TRAIN_TEMPLATES[task] if t != template]
            return [t.format(**m.groupdict()) for t in others][:k]
    return []
