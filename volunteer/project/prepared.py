"""What project preparation yields: a resolved project, its peers, and (once built) its module and data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from volunteer.project.manifest import MANIFEST_NAME, Manifest
from volunteer.project.peersources import PeerList
from volunteer.stats import ProjectInfo

if TYPE_CHECKING:
    from lightning.pytorch import LightningDataModule, LightningModule


@dataclass(frozen=True)
class ResolvedProject:
    """A project found, downloaded and validated; its code has not been imported."""

    id: str
    """The id as typed (``--project``)."""
    repo: str
    """The Hub repository id, the local folder's absolute path, or "demo"."""
    revision: str
    """The commit sha the files are at ("" for a local folder and the demo)."""
    root: Path
    """The folder holding the manifest and code."""
    manifest: Manifest
    files: tuple[str, ...]
    """The project's Python files, relative to ``root``: the code that may run."""
    from_cache: bool = False
    """True when the Hub could not be reached and a cached snapshot is used."""
    warnings: tuple[str, ...] = ()
    kind: Literal["builtin", "local", "hub"] = "hub"
    endpoint: str = ""
    """The Hub's address, for a Hub project."""
    data_files: int = 0
    """Files that are neither code nor the manifest: data the code may read (a Hub project's come after consent)."""
    data_bytes: int = 0
    complete: bool = True
    """False for a Hub project whose data files are not downloaded yet (they are, once consent is given)."""

    def info(self) -> ProjectInfo:
        return ProjectInfo(
            name=self.manifest.name,
            repo=self.repo,
            revision=self.revision,
            run_id=self.manifest.run_id,
            target_batch_size=self.manifest.target_batch_size,
            files=self.files,
            training_mode=self.manifest.training.mode,
        )

    def where(self, file: str = MANIFEST_NAME) -> str:
        """How messages name a file of the project: ``org/name@1a2b3c4:file``, a path, or ``demo:file``."""
        return describe_file(self.kind, self.repo, self.revision, self.root, file)


def describe_file(kind: str, repo: str, revision: str, root: Path, file: str) -> str:
    """``org/name@1a2b3c4:file`` for a Hub project, ``demo:file`` for the demo, else the file's path."""
    if kind == "hub":
        return f"{repo}@{revision[:7]}:{file}"
    if kind == "builtin":
        return f"demo:{file}"
    return str(root / file)


@dataclass(frozen=True)
class BuiltProject:
    """A project's code imported and instantiated, ready for ``Trainer.fit``."""

    module: LightningModule
    datamodule: LightningDataModule | None
    """Set when the manifest names ``data.datamodule``."""
    train_dataloaders: Any | None
    """Set when the manifest names ``data.dataloader``: what that function returned."""
    batch_size: int
    """Samples per local step, as passed to the data source."""

    def fit(self, trainer: Any) -> None:
        """``trainer.fit`` on this project's module with whichever data source it has."""
        if self.datamodule is not None:
            trainer.fit(self.module, datamodule=self.datamodule)
        else:
            trainer.fit(self.module, train_dataloaders=self.train_dataloaders)


@dataclass(frozen=True)
class PreparedProject:
    """A resolved project the volunteer consented to run, and the peers to join."""

    project: ResolvedProject
    peers: PeerList
    consent: str = ""
    """How running the code was allowed: "builtin", "local", "remembered", "--trust" or "asked"."""

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.project.warnings + self.peers.warnings
