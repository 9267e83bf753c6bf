"""``volunteer [--project ID] ...``: prepare the project, then contribute, headless or with the TUI."""

from __future__ import annotations

from collections.abc import Sequence

from volunteer.datadir import DataDir
from volunteer.settings import Settings, parse_run_args


def main(argv: Sequence[str]) -> int:
    return run_client(parse_run_args(argv))


def run_client(settings: Settings) -> int:
    from volunteer.project import prepare_project

    data_dir = DataDir.open(settings.data_dir)
    prepared = prepare_project(settings, data_dir)
    from volunteer.session import run_session

    return run_session(settings, data_dir, prepared)
