"""``volunteer attach``: a bad URL is one error line with a hint and exit 2; the token comes from the data dir."""

from __future__ import annotations

import pytest

from tui.launch import find_control_token
from volunteer.cli import main
from volunteer.control_token import read_token, remove_token, same_token, write_token
from volunteer.datadir import DataDir


@pytest.mark.parametrize(
    "url",
    ["::::", "ftp://x", "http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:port", "a b", "http://h/\x1b[2J"],
)
def test_a_bad_attach_url_is_one_line_with_a_hint_and_exit_2(url, capsys):
    assert main(["attach", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("error: ") and err[1].startswith("hint: "), err
    assert "Traceback" not in "\n".join(err)
    assert "host:port" in err[1]


def test_attach_to_nothing_is_one_line_with_a_hint(capsys, unused_tcp_port):
    assert main(["attach", f"127.0.0.1:{unused_tcp_port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: no volunteer answers") and err[1].startswith("hint: ")


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_token_file_is_private_and_found_by_attach(tmp_path, monkeypatch):
    monkeypatch.delenv("VOLUNTEER_CONTROL_TOKEN", raising=False)
    data_dir = DataDir.open(tmp_path)
    path = write_token(data_dir, "abc123")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_token(data_dir) == "abc123"
    assert find_control_token(str(tmp_path)) == "abc123"
    monkeypatch.setenv("VOLUNTEER_HOME", str(tmp_path))
    assert find_control_token(None) == "abc123"
    monkeypatch.setenv("VOLUNTEER_CONTROL_TOKEN", "from-env")
    assert find_control_token(str(tmp_path)) == "from-env"
    remove_token(data_dir, "not-ours")
    assert path.exists(), "a token file another session wrote is left alone"
    remove_token(data_dir, "abc123")
    assert not path.exists()
    monkeypatch.delenv("VOLUNTEER_CONTROL_TOKEN")
    assert find_control_token(str(tmp_path / "nowhere")) is None
    write_token(data_dir, "abc123")
    assert find_control_token(str(tmp_path), from_file=False) is None  # attaching elsewhere: never sent


def test_same_token():
    assert same_token("abc", "abc")
    assert not same_token("abd", "abc") and not same_token("", "abc") and not same_token(None, "abc")
    assert not same_token("é" * 10, "abc") and not same_token("x" * 300, "x" * 300)


def test_the_session_takes_the_token_out_of_its_environment(monkeypatch):
    import os

    from volunteer.control_token import take_token_from_env

    monkeypatch.setenv("VOLUNTEER_CONTROL_TOKEN", " handed-over ")
    assert take_token_from_env() == "handed-over"
    assert "VOLUNTEER_CONTROL_TOKEN" not in os.environ  # project code started later does not inherit it
    assert take_token_from_env() is None
