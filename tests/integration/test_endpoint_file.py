"""A running session records its status endpoint in the data directory, for the health check and attach."""

from __future__ import annotations

import signal

import pytest

from tests.integration.volunteers import Volunteer
from volunteer import endpoint_file, healthcheck

pytestmark = pytest.mark.integration


def test_session_records_its_endpoint_while_it_runs(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    volunteer = Volunteer(tmp_path, "ada")
    try:
        volunteer.wait_training()
        # a port that is not 8471: the health check finds it through the record, with no port given
        assert endpoint_file.recorded_url(volunteer.data_dir) == volunteer.url
        monkeypatch.setenv("VOLUNTEER_HOME", str(volunteer.data_dir))
        monkeypatch.delenv("VOLUNTEER_STATUS_PORT", raising=False)
        assert healthcheck.main([]) == 0
        assert "healthy: state is training" in capsys.readouterr().out
        volunteer.proc.popen.send_signal(signal.SIGTERM)  # as docker stop does
        assert volunteer.proc.popen.wait(timeout=30) == 0
        assert not endpoint_file.endpoint_path(volunteer.data_dir).exists(), "a clean stop removes the record"
    finally:
        volunteer.stop()
