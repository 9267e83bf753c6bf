"""Tiny LightningModules and data shared by the strategy tests and the peer script."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinyRegressor(L.LightningModule):
    def __init__(self, lr: float = 0.05, schedule: str | None = None, step_sleep: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)  # every peer starts from the same parameters
        self.layer = nn.Linear(16, 1)
        self.lr = lr
        self.schedule = schedule
        self.step_sleep = step_sleep

    def training_step(self, batch, batch_idx):
        if self.step_sleep:
            import time

            time.sleep(self.step_sleep)
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        if self.schedule == "halving":
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if self.schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "loss"}}
        return optimizer


class TwoOptimizers(TinyRegressor):
    """Lightning allows several optimizers only with manual optimization."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def configure_optimizers(self):
        return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.SGD(self.parameters(), lr=0.1)]


def regression_data(num_samples: int = 4096, batch_size: int = 8, seed: int = 1) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, 16, generator=generator)
    w = torch.linspace(-1, 1, 16).unsqueeze(1)
    y = x @ w + 0.01 * torch.randn(num_samples, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)


def quiet_trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    defaults.update(kwargs)
    return L.Trainer(**defaults)


class _LastEpoch(L.Callback):
    def __init__(self) -> None:
        self.local_epoch = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.local_epoch = trainer.strategy.hivemind_optimizer.local_epoch


def update_per_global_step(max_steps: int = 24, strategy_options: dict | None = None, **trainer_kwargs):
    """Train ``TinyRegressor`` alone under ``HivemindStrategy``; how far one global step moves its weights.

    Returns ``(mean norm of the weight change per global step, global steps taken, the precision plugin)``.
    Gradients that reach the optimizer still multiplied by an fp16 loss scale move weights thousands of
    times further than fp32 does: comparing this figure across precisions catches that.
    """
    from volunteer.strategy import HivemindStrategy

    strategy = HivemindStrategy(
        target_batch_size=32,
        matchmaking_time=0.5,
        averaging_timeout=5.0,
        host_maddrs="/ip4/127.0.0.1/tcp/0",
        print_join_message=False,
        **(strategy_options or {}),
    )
    model = TinyRegressor(lr=0.001)
    before = model.layer.weight.detach().clone()
    last = _LastEpoch()
    trainer = quiet_trainer(strategy=strategy, max_steps=max_steps, callbacks=[last], **trainer_kwargs)
    trainer.fit(model, regression_data(batch_size=8))
    weight = model.layer.weight.detach()
    assert torch.isfinite(weight).all()
    change = (weight - before.to(weight.device)).norm().item()
    return change / max(1, last.local_epoch), last.local_epoch, strategy.precision_plugin
