"""Model artefacts: ``STORE/models/<name>/weights.safetensors`` + ``card.json``.

The card holds everything needed to rebuild and use the network: its architecture (the
registry name), the input normalisation, the probability threshold ``dlth``, the crystal check
applied after it (empty: none), the label rules, the training tiles and split, the metrics, and
the semlive and torch versions. Weights are
safetensors, so loading never unpickles. A card whose architecture is unknown, whose weights do
not fit the architecture, or whose normalisation is not what the caller expects is refused
with the difference named.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semlive._version import __version__
from semlive.errors import InputDataError
from semlive.models._networks import ARCHITECTURES, build_network

__all__ = ["CARD_FORMAT", "ModelCard", "Normalisation", "load_model", "save_model"]

CARD_FORMAT = "semlive.model/1"


@dataclass(frozen=True, slots=True)
class Normalisation:
    """Network input = (BSE in DN − mean_dn) / std_dn."""

    mean_dn: float
    std_dn: float
    kind: str = "affine-dn"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean_dn) and math.isfinite(self.std_dn) and self.std_dn > 0):
            raise InputDataError(
                f"normalisation needs a finite mean and a positive std, got {self.mean_dn}, "
                f"{self.std_dn}",
                got=(self.mean_dn, self.std_dn),
            )


@dataclass(frozen=True, slots=True)
class ModelCard:
    architecture: str
    normalisation: Normalisation
    dlth: float
    task: str = "olivine"
    label_rules: dict[str, float] = field(default_factory=dict)
    training_tiles: list[str] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    crystal_check: dict[str, float] = field(default_factory=dict)
    grey_landmarks_dn: list[float] = field(default_factory=list)  # [] in older cards
    outline: dict[str, float] = field(default_factory=dict)  # {} in older cards: off
    semlive_version: str = __version__
    torch_version: str = torch.__version__
    format: str = CARD_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=float)

    @classmethod
    def from_json(cls, text: str, path: Path) -> ModelCard:
        try:
            data = json.loads(text)
            if data.get("format") != CARD_FORMAT:
                raise InputDataError(
                    f"{path} is not a semlive model card: expected format {CARD_FORMAT!r}, "
                    f"got {data.get('format')!r}",
                    path=path,
                    expected=CARD_FORMAT,
                    got=data.get("format"),
                )
            data["normalisation"] = Normalisation(**data["normalisation"])
            return cls(**data)
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise InputDataError(
                f"{path} is not a readable model card ({exc}); retrain with semlive train",
                path=path,
            ) from None


def save_model(folder: Path, model: nn.Module, card: ModelCard) -> None:
    """Write weights then card, each atomically (a reader never sees half a model)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = folder / "weights.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": CARD_FORMAT})
    tmp.replace(folder / "weights.safetensors")
    tmp = folder / "card.json.tmp"
    tmp.write_text(card.to_json())
    tmp.replace(folder / "card.json")


def load_model(
    folder: Path,
    *,
    architecture: str | None = None,
    normalisation: Normalisation | None = None,
) -> tuple[nn.Module, ModelCard]:
    """Rebuild a saved model on the CPU. ``architecture`` / ``normalisation``, when given, are
    what the caller expects; a card that differs is refused with the difference named."""
    card_path = folder / "card.json"
    if not card_path.is_file():
        have = sorted(p.name for p in folder.parent.iterdir()) if folder.parent.is_dir() else []
        raise InputDataError(
            f"no model at {folder} (card.json missing); models in this store: "
            f"{', '.join(have) or 'none'} — train one with semlive train",
            path=folder,
        )
    card = ModelCard.from_json(card_path.read_text(), card_path)
    if card.architecture not in ARCHITECTURES:
        raise InputDataError(
            f"{card_path} names architecture {card.architecture!r}, which this semlive does "
            f"not have (known: {', '.join(sorted(ARCHITECTURES))})",
            path=card_path,
            expected=sorted(ARCHITECTURES),
            got=card.architecture,
        )
    if architecture is not None and architecture != card.architecture:
        raise InputDataError(
            f"{card_path} is a {card.architecture} model, not {architecture}; use --arch "
            f"{card.architecture} or train a new model under another name",
            path=card_path,
            expected=architecture,
            got=card.architecture,
        )
    if normalisation is not None and normalisation != card.normalisation:
        raise InputDataError(
            f"{card_path} normalises BSE as {card.normalisation}, expected {normalisation}; "
            "the network would see different input than it was trained on — retrain",
            path=card_path,
            expected=normalisation,
            got=card.normalisation,
        )
    from safetensors.torch import load_file

    state = load_file(str(folder / "weights.safetensors"))
    model = build_network(card.architecture)
    _check_fits(model, state, card, folder)
    model.load_state_dict(state)
    model.eval()
    return model, card


def _check_fits(
    model: nn.Module, state: dict[str, torch.Tensor], card: ModelCard, folder: Path
) -> None:
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(own.keys() - got.keys()), sorted(got.keys() - own.keys())
    shapes = [(k, own[k], got[k]) for k in sorted(own.keys() & got.keys()) if own[k] != got[k]]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing (first {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (first {extra[0]})")
        if shapes:
            k, want, have = shapes[0]
            parts.append(f"{len(shapes)} of another shape (first {k}: {have}, expected {want})")
        raise InputDataError(
            f"the weights in {folder} do not fit the card's architecture {card.architecture}: "
            f"{'; '.join(parts)}; the card or the weights were changed — retrain",
            path=folder,
        )
