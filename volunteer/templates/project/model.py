"""The project's model: a LightningModule that every volunteer trains. Replace the network with yours.

volunteer wraps the optimizer from ``configure_optimizers`` in ``hivemind.Optimizer``: return exactly one
optimizer and never step it yourself; a scheduler must depend on the step count only (no ReduceLROnPlateau).
Import the project's other files relatively (``from .data import ...``): each project is a package of its own.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn

from .data import NUM_CLASSES, NUM_FEATURES


class Model(pl.LightningModule):
    """A small MLP classifier; ``[model] init_args`` in volunteer.toml are its arguments."""

    def __init__(self, hidden: int = 64, lr: float = 0.003) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(NUM_FEATURES, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # one step of this optimizer uses target_batch_size samples: tune the learning rate for that batch
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
