"""The project's data: three interleaved spirals generated from a seed. Replace with your data.

Every volunteer creates this with the same ``[data] init_args``. Download real data in ``prepare_data`` or
``setup``, never at import time; the batch size arrives as the argument ``batch_size_arg`` names.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

NUM_FEATURES = 2
NUM_CLASSES = 3


class Data(pl.LightningDataModule):
    """Points on three spirals, labelled by spiral."""

    def __init__(self, batch_size: int = 64, samples: int = 20000, noise: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.samples = samples
        self.noise = noise
        self.seed = seed
        self.dataset: TensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        labels = torch.randint(0, NUM_CLASSES, (self.samples,), generator=generator)
        radius = torch.rand(self.samples, generator=generator)
        angle = 4 * radius + labels * (2 * math.pi / NUM_CLASSES)
        points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
        points += self.noise * torch.randn(points.shape, generator=generator)
        self.dataset = TensorDataset(points, labels)

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None
        # shuffle differently on every volunteer's machine, so that they do not all compute the same batches
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, drop_last=True)
