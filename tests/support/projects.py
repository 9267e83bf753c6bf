"""Small, valid projects for tests, and a way to change one key of their manifest."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "projects.md"

PEER_A = "/ip4/203.0.113.5/tcp/31337/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
PEER_B = "/ip4/203.0.113.6/udp/31338/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
PEER_C = "/dns4/peers.example.org/tcp/4001/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"

MODEL_PY = """\
import lightning.pytorch as pl
import torch
from torch import nn


class TinyModel(pl.LightningModule):
    def __init__(self, width: int = 4, lr: float = 0.1) -> None:
        super().__init__()
        self.layer = nn.Linear(width, 1)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


VERSION = "model-v1"
"""

DATA_PY = """\
import lightning.pytorch as pl
from torch.utils.data import DataLoader

from .helpers import make_dataset


class TinyData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 8, width: int = 4, size: int = 64) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.width = width
        self.size = size

    def train_dataloader(self):
        return DataLoader(make_dataset(self.width, self.size), batch_size=self.batch_size)


def make_loader(batch_size: int, width: int = 4, size: int = 64):
    return DataLoader(make_dataset(width, size), batch_size=batch_size)
"""

HELPERS_PY = """\
import torch
from torch.utils.data import TensorDataset


def make_dataset(width: int, size: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(size, width, generator=generator)
    return TensorDataset(x, x.sum(dim=1, keepdim=True))
"""

MANIFEST: dict[str, Any] = {
    "name": "Tiny test project",
    "run_id": "tiny-test",
    "target_batch_size": 256,
    "batch_size": 8,
    "model": {"class_path": "model.py:TinyModel", "init_args": {"width": 4}},
    "data": {"datamodule": "data.py:TinyData", "init_args": {"width": 4, "size": 64}},
    "hivemind": {"matchmaking_time": 4.0, "averaging_timeout": 20.0, "grad_compression": "float16"},
    "requirements": {"gpu": "optional", "min_client_version": "0.1.0"},
}

FILES: dict[str, str] = {"model.py": MODEL_PY, "data.py": DATA_PY, "helpers.py": HELPERS_PY}

DELETE = object()
"""Use as a value in :func:`manifest` changes to remove a key (``None`` does the same)."""


def manifest(changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The test manifest with ``changes`` applied; keys are dotted (``"hivemind.matchmaking_time"``)."""
    data = copy.deepcopy(MANIFEST)
    for dotted, value in (changes or {}).items():
        *parents, leaf = dotted.split(".")
        table = data
        for parent in parents:
            table = table.setdefault(parent, {})
        if value is DELETE or value is None:  # TOML has no null: None removes the key too
            table.pop(leaf, None)
        else:
            table[leaf] = value
    return data


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML for the value types manifests use (strings, numbers, booleans, lists, tables)."""
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    for key, value in data.items():
        if key not in tables:
            lines.append(f"{key} = {_value(value)}")
    for key, value in tables.items():
        lines.append(f"\n[{key}]")
        for inner_key, inner in value.items():
            lines.append(f"{inner_key} = {_value(inner)}")
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def project_files(
    changes: Mapping[str, Any] | None = None, files: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """Every file of the test project: manifest with ``changes``, code with ``files`` replaced (None removes)."""
    result = {"volunteer.toml": to_toml(manifest(changes)), **FILES}
    for name, content in (files or {}).items():
        if content is None:
            result.pop(name, None)
        else:
            result[name] = content
    return result


def write_project(
    root: Path, changes: Mapping[str, Any] | None = None, files: Mapping[str, str | None] | None = None
) -> Path:
    """Write the test project into ``root`` (created) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in project_files(changes, files).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return root


def isolate_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No Hub token, endpoint, peers or volunteer settings from the machine running the tests."""
    import os

    for name in list(os.environ):
        if name.startswith(("VOLUNTEER_", "HF_")) or name == "INITIAL_PEERS":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


class StaticServer:
    """An HTTP server on 127.0.0.1 answering fixed routes: ``path -> (status, content type, body)``."""

    def __init__(self, routes: Mapping[str, tuple[int, str, bytes | str]] | None = None) -> None:
        self.routes: dict[str, tuple[int, str, bytes | str]] = dict(routes or {})
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.hits.append(self.path)
                status, content_type, body = server.routes.get(self.path, (404, "text/plain", "not found"))
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def closed_port_url() -> Iterator[str]:
    """The URL of a port on 127.0.0.1 where nothing listens (connections are refused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}"


def assert_user_error(capsys: pytest.CaptureFixture[str], code: int, error: str, hint: str) -> tuple[str, str]:
    """The CLI failed as a user error: status 2, exactly an ``error:`` and a ``hint:`` line, no traceback.

    ``error`` and ``hint`` must appear in those lines; returns both lines.
    """
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert len(lines) == 2, captured.err
    assert lines[0].startswith("error: "), captured.err
    assert lines[1].startswith("hint: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert error in lines[0], lines[0]
    assert hint in lines[1], lines[1]
    return lines[0], lines[1]


def doc_examples() -> dict[str, str]:
    """The files of the complete example in docs/projects.md (each follows ``<!-- example: NAME -->``)."""
    text = DOCS.read_text(encoding="utf-8")
    return dict(re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S))


TINY_PROJECT = str(Path(__file__).resolve().parents[1] / "fixtures" / "tiny_project")
"""A trained-in-seconds project folder for the tests that run whole volunteers."""


def headless_args(
    *,
    name: str,
    data_dir: Path,
    status_port: int,
    host_maddrs: str,
    project: str = TINY_PROJECT,
    peers: str | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The command line of a headless, trusting test volunteer (``python -m volunteer ...``)."""
    import sys

    args = [
        sys.executable, "-m", "volunteer", "--project", project, "--headless", "--trust",
        "--data-dir", str(data_dir), "--status-port", str(status_port), "--host-maddrs", host_maddrs,
        "--name", name, *extra,
    ]  # fmt: skip
    return [*args, "--initial-peers", peers] if peers else args
