"""`FERDataset`: a whole dataset held as one uint8 tensor, plus targets and metadata."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class FERDataset(Dataset):
    """A decoded facial-expression dataset.

    Attributes:
        images: uint8 tensor ``(N, C, H, W)``.
        targets: ``(N,)`` long class indices, or ``(N, K)`` float votes (FERPlus).
        classes: class names, index ``i`` naming target ``i`` (canonical order, fercore.labels).
        meta: per-image numpy arrays of length N (``usage``, ``file``, ``subject``, ...).
        name, split: where it came from, for messages and ``metrics.json``.
        protocol: one sentence saying how this dataset is meant to be split and reported.
        label_mode: how ``targets`` were made from votes (FERPlus: ``majority``, ``probability``,
            ``crossentropy``, ``multi_target``), which picks the training loss (fercore.losses);
            None for datasets of hard labels.

    ``dataset[i]`` returns ``(image, target)``; ``image`` is the uint8 ``(C, H, W)`` tensor
    unless a ``transform`` is given. Training code reads ``images`` and ``targets`` directly
    and augments whole batches on the device (fercore.data.augment).
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        classes: Sequence[str],
        meta: dict[str, np.ndarray] | None = None,
        *,
        name: str = "",
        split: str = "",
        protocol: str = "",
        label_mode: str | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        meta = dict(meta or {})
        for key, value in meta.items():
            if len(value) != len(images):
                raise ValueError(f"meta[{key!r}] has {len(value)} entries for {len(images)} images")
        self.images = images
        self.targets = targets
        self.classes = list(classes)
        self.meta = meta
        self.name = name
        self.split = split
        self.protocol = protocol
        self.label_mode = label_mode
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, target = self.images[index], self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def labels(self) -> torch.Tensor:
        """Hard labels ``(N,)``: the targets, or the arg-max of vote targets."""
        return self.targets if self.targets.ndim == 1 else self.targets.argmax(1)

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels(), minlength=self.num_classes)
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def subset(self, indices) -> "FERDataset":
        """A new dataset holding the given rows (indices, or a boolean mask)."""
        idx = torch.as_tensor(indices)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        np_idx = idx.numpy()
        return FERDataset(
            self.images[idx], self.targets[idx], self.classes,
            {k: v[np_idx] for k, v in self.meta.items()},
            name=self.name, split=self.split, protocol=self.protocol, label_mode=self.label_mode,
            transform=self.transform, target_transform=self.target_transform,
        )

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return f"FERDataset({self.name!r}, split={self.split!r}, n={len(self)}, image={c}x{h}x{w}, classes={len(self.classes)})"
