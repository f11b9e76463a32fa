"""Hub-standard checkpoints: `huggingface_hub`'s model-hub mixin over our own checkpoint folder.

A checkpoint folder (config.json with our schema, model.safetensors, normalization.json, README.md) is
already a Hub model repo; what this adds is loading one by repo id from the local Hugging Face cache
and model cards whose YAML front matter the Hub reads. `ModelHubMixin` carries the card metadata per
class; its own save and load are replaced: its save is not atomic and writes its own config.json and
card, and its load feeds config.json into `__init__`, past our config checks, and may download.
Nothing here touches the network: a repo id must already be cached (`hf download org/name`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin, constants, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

LIBRARY_NAME = "vla_steering"
LICENSE = "apache-2.0"
PIPELINE_TAG = "robotics"


class HubMixin(ModelHubMixin, library_name=LIBRARY_NAME, license=LICENSE, pipeline_tag=PIPELINE_TAG,
               tags=[LIBRARY_NAME]):
    """What every model class shares: the card metadata (subclasses add `tags=[...]` in their class
    statement). Each class keeps its own typed `save_pretrained` / `from_pretrained`."""

    @classmethod
    def card_data(cls) -> ModelCardData:
        """A copy of this class's card metadata (library_name, license, pipeline_tag, tags)."""
        return ModelCardData(**cls._hub_mixin_info.model_card_data.to_dict())

    def card_text(self, text: str, datasets: Iterable[str] = (), metrics: Iterable[str] = ()) -> str:
        """`text` with this class's card metadata plus `datasets` and `metrics` (`with_metadata`)."""
        return with_metadata(text, self.card_data(), datasets, metrics)

    def push_to_hub(self, *args, **kwargs):
        """Refused: the mixin's push re-saves through its own signature; upload the folder instead."""
        raise NotImplementedError("save_pretrained writes a Hub-ready folder; upload it with "
                                  "`hf upload <org/name> <folder>`")


def with_metadata(text: str, data: ModelCardData, datasets: Iterable[str] = (),
                  metrics: Iterable[str] = ()) -> str:
    """The card `text` with YAML front matter: `data` (library_name, license, pipeline_tag, tags), the
    training `datasets` and the names of the held-out `metrics` (their values stay in the text).
    Front matter already in `text` is kept and added to, so applying this twice changes nothing."""
    body = text
    if text.startswith("---\n"):
        card = ModelCard(text)
        existing, body = card.data.to_dict(), card.text
    else:
        existing = {}
    merged = {**existing, **{k: v for k, v in data.to_dict().items() if k != "tags"}}
    for key, extra in (("tags", data.tags or ()), ("datasets", datasets), ("metrics", metrics)):
        had = existing.get(key) or []
        values = list(dict.fromkeys([*([had] if isinstance(had, str) else had), *(str(v) for v in extra)]))
        if values:
            merged[key] = values
    return f"---\n{ModelCardData(**merged).to_yaml()}\n---\n{body}"


def resolve_checkpoint(name_or_path: str | Path, what: str, revision: str | None = None,
                       cache_dir: str | Path | None = None) -> Path:
    """The folder to load: `name_or_path` when it is an existing folder (or cannot be a repo id: the
    caller reports the missing folder), else the snapshot of that repo id in the local Hugging Face cache
    (`cache_dir`, default HF_HUB_CACHE / HF_HOME) at `revision` (branch, tag or commit; default main).
    Never downloads."""
    path = Path(name_or_path).expanduser()
    repo_id = str(name_or_path)
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"{what} {path} is a local folder; revision {revision!r} applies to a repo id only")
        return path
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return path
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError as exc:
        raise FileNotFoundError(
            f"{what} checkpoint folder {path} does not exist, and repo {repo_id} (revision {revision or 'main'}) "
            f"is not complete in the Hugging Face cache {cache_dir or constants.HF_HUB_CACHE}; nothing is "
            f"downloaded at run time: fetch it first with `hf download {repo_id}`") from exc
