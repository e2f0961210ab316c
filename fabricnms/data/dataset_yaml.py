"""A ``dataset.yaml`` (written by ``fabricnms convert``, ``synth``'s releases converted, and
``adapt``): parsed and checked into a :class:`DataSpec` by :func:`load_data_yaml`.

Keys: ``path`` (the dataset root, relative to the file or absolute), ``image_root`` (relative to
``path``), ``train`` / ``val`` (COCO json paths relative to ``path``), ``nc``, ``names``
(category ``i + 1`` is ``names[i]``), ``scheme``, optional ``masks`` (true-mask sidecars).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fabricnms.config import load_yaml_mapping
from fabricnms.errors import FabricError


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``dataset.yaml``. All paths absolute; ``names[i]`` is category ``i + 1``.

    ``masks``: the true-mask sidecars (``Annotations/masks.json`` of ``synth --masks``
    releases, optional key ``masks``) for mask evaluation only; training never reads them.
    """

    yaml_path: Path
    root: Path
    image_root: Path
    splits: dict[str, Path]
    names: tuple[str, ...]
    scheme: int
    masks: tuple[Path, ...] = ()

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)

    def split_path(self, split: str) -> Path:
        """The COCO json of ``split``; a one-line error when absent or missing on disk."""
        if split not in self.splits:
            raise FabricError(
                f"{self.yaml_path}: no '{split}' split (has {', '.join(self.splits)})"
            )
        path = self.splits[split]
        if not path.is_file():
            raise FabricError(f"{self.yaml_path}: '{split}' annotation file {path} does not exist")
        return path


def load_data_yaml(path: str | Path) -> DataSpec:
    """Parse and check a ``dataset.yaml`` (contract: path, image_root, train, val, nc, names)."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        path = path / "dataset.yaml"
    data = load_yaml_mapping(path, "dataset file")
    for key in ("path", "train", "names"):
        if key not in data:
            raise FabricError(f"{path}: missing key '{key}'")
    root = Path(str(data["path"])).expanduser()
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    image_root = Path(str(data.get("image_root", root))).expanduser()
    if not image_root.is_absolute():
        image_root = (root / image_root).resolve()
    if not image_root.is_dir():
        raise FabricError(f"{path}: image_root {image_root} is not a directory")
    names = data["names"]
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise FabricError(f"{path}: 'names' must be a non-empty list of class names")
    nc = data.get("nc", len(names))
    if nc != len(names):
        raise FabricError(f"{path}: nc = {nc} but 'names' lists {len(names)} classes")
    splits = {
        split: (root / str(data[split])).resolve() for split in ("train", "val") if data.get(split)
    }
    masks = data.get("masks") or []
    if not isinstance(masks, list) or not all(isinstance(m, str) for m in masks):
        raise FabricError(f"{path}: 'masks' must be a list of masks.json paths")
    return DataSpec(
        yaml_path=path,
        root=root,
        image_root=image_root,
        splits=splits,
        names=tuple(names),
        scheme=int(data.get("scheme", len(names))),
        masks=tuple((root / m).resolve() for m in masks),
    )
