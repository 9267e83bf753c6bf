"""The demo's LightningModule and data: an MLP learns to imitate a fixed random "teacher" network.

The data is generated from a seed, so every volunteer has the same task with no download, and the loss
falls within a few global steps on a CPU.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class DemoClassifier(L.LightningModule):
    """A two-layer MLP classifier."""

    def __init__(self, input_dim: int = 32, hidden_dim: int = 128, num_classes: int = 8, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, num_classes),
        )
        self.loss_fn = nn.CrossEntropyLoss()

    def on_fit_start(self) -> None:
        if self.device.type == "cpu":
            # Layers this small gain nothing from splitting each operation across threads, and handing
            # work between threads costs more than the arithmetic: on 2 cores one thread trains this
            # model 1.45x as fast (19,486 vs 13,441 samples/s, docs/benchmarks.md).
            torch.set_num_threads(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        accuracy = (logits.argmax(dim=-1) == y).float().mean()
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_accuracy", accuracy)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])


class TeacherData(L.LightningDataModule):
    """Random inputs labelled by a fixed random teacher network; the same for every seed-sharing peer."""

    def __init__(
        self,
        batch_size: int = 32,
        num_samples: int = 16384,
        input_dim: int = 32,
        num_classes: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_samples = num_samples
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.seed = seed
        self.dataset: TensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = make_teacher_dataset(self.num_samples, self.input_dim, self.num_classes, self.seed)

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, drop_last=True)


def make_teacher_dataset(num_samples: int, input_dim: int, num_classes: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(input_dim, num_classes, generator=generator)
    x = torch.randn(num_samples, input_dim, generator=generator)
    y = (x @ teacher).argmax(dim=-1)
    return TensorDataset(x, y)
