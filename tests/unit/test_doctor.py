"""``volunteer doctor`` on this machine: every network check stays on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tests.support.projects import write_project
from volunteer import __version__, cli, doctor, shm
from volunteer.datadir import DataDir
from volunteer.device import Gpu, cpu_fallback_warning
from volunteer.doctor import FAIL, OK, SKIP, WARN, CheckResult, Context
from volunteer.errors import ProjectError, TrustError
from volunteer.project import PreparedProject, prepare_project
from volunteer.project.hub import hub_url
from volunteer.project.loader import build_project
from volunteer.project.manifest import Requirements
from volunteer.settings import Settings, parse_run_args


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the machine, and nothing can reach a real Hub or a real data directory."""
    import os

    for name in list(os.environ):
        if name.startswith("VOLUNTEER_") or name.startswith("HF_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


class _Server:
    def __init__(self, code: int = 200, body: bytes = b"{}") -> None:
        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ctx_for(tmp_path: Path, **changes: object) -> Context:
    settings = Settings(data_dir=str(tmp_path / "data")).replace(**changes)
    return Context(settings=settings, timeout=2.0)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


# --- the whole command --------------------------------------------------------------------------------------


def test_json_report_parses_and_names_every_check(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture
) -> None:
    status = doctor.main(
        ["--json", "--data-dir", str(tmp_path / "data"), "--endpoint", f"http://127.0.0.1:{closed_port}"]
    )
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == __version__
    assert [c["name"] for c in report["checks"]] == [
        "gpu",
        "cuda",
        "data-dir",
        "hub",
        "project",
        "shm",
        "listen",
        "bandwidth",
    ]
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"}
        assert check["status"] in (OK, WARN, FAIL, SKIP)
        if check["status"] in (WARN, FAIL):
            assert check["fix"], check
    assert report["ok"] is (status == 0)


def test_table_and_exit_status_when_nothing_fails(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture
) -> None:
    status = doctor.main(["--data-dir", str(tmp_path / "data"), "--endpoint", f"http://127.0.0.1:{closed_port}"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "data-dir" in out and "listen" in out
    assert "0 failed" in out


def test_unwritable_data_dir_fails_with_a_fix(tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture) -> None:
    # a path below a regular file cannot be created, even by root (as in CI)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    status = doctor.main(
        ["--json", "--data-dir", str(blocker / "data"), "--endpoint", f"http://127.0.0.1:{closed_port}"]
    )
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert status == 1
    assert checks["data-dir"]["status"] == FAIL
    assert "not writable" in checks["data-dir"]["detail"]
    assert "--data-dir" in checks["data-dir"]["fix"] and "uid 1000" in checks["data-dir"]["fix"]
    assert checks["project"]["status"] == SKIP


def test_data_dir_comes_from_volunteer_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOLUNTEER_HOME", str(tmp_path / "home"))
    args = doctor.build_parser().parse_args([])
    settings = doctor.settings_from_namespace(args)
    result = doctor.check_data_dir(Context(settings=settings))
    assert result.status == OK
    assert str(tmp_path / "home") in result.detail


def test_low_disk_space_warns_then_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk(free: int):
        return lambda path: SimpleNamespace(total=100 * doctor.GIB, used=0, free=free)

    monkeypatch.setattr(doctor.shutil, "disk_usage", disk(5 * doctor.GIB))
    assert doctor.check_data_dir(ctx_for(tmp_path)).status == WARN
    monkeypatch.setattr(doctor.shutil, "disk_usage", disk(doctor.GIB // 2))
    result = doctor.check_data_dir(ctx_for(tmp_path))
    assert result.status == FAIL and "bigger disk" in result.fix


def test_damaged_identity_fails(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "identity.key").write_bytes(b"short")
    result = doctor.check_data_dir(ctx_for(tmp_path))
    assert result.status == FAIL and "rm " in result.fix


def test_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["doctor", "--no-such-flag"]) == 2
    assert "hint:" in capsys.readouterr().err


def test_a_crashing_check_is_reported_and_the_rest_still_run(tmp_path: Path) -> None:
    def check_boom(ctx: Context) -> CheckResult:
        raise RuntimeError("boom")

    results = doctor.run_checks(ctx_for(tmp_path), [check_boom, doctor.check_data_dir])
    assert results[0] == CheckResult("boom", FAIL, "the check itself crashed: RuntimeError: boom", results[0].fix)
    assert results[1].status == OK


# --- GPU and CUDA -------------------------------------------------------------------------------------------


def test_gpu_on_this_machine(tmp_path: Path) -> None:
    result = doctor.check_gpu(ctx_for(tmp_path))
    if torch.cuda.is_available():
        assert result.status in (OK, WARN) and "cuda:0" in result.detail
    else:
        assert result.status == WARN
        assert result.detail.startswith("no GPU visible: training will run on CPU")
        assert "--gpus all" in result.fix and "NVIDIA Container Toolkit" in result.fix


def test_gpu_fix_names_docker_flags_inside_a_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    ctx = ctx_for(tmp_path)
    ctx.in_container = True
    result = doctor.check_gpu(ctx)
    assert result.status == WARN and ctx.gpus == []
    assert result.fix.startswith("install the NVIDIA driver and the NVIDIA Container Toolkit on the host")


def test_a_cpu_only_image_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    ctx = ctx_for(tmp_path)
    ctx.in_container = True
    result = doctor.check_gpu(ctx)
    assert result.status == WARN and "CPU-only build" in result.detail and "linux/amd64" in result.fix


def test_gpu_warning_for_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.6")  # as in the image, started without --gpus
    warning = cpu_fallback_warning()
    assert warning is not None
    assert warning.startswith("no GPU visible: training will run on CPU") and "--gpus all" in warning


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> dict[int, int]:
    """Pretend PyTorch sees two 24 GB GPUs; the returned dict sets each one's free bytes."""
    free = {0: 23 * 10**9, 1: 23 * 10**9}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda i: SimpleNamespace(name=f"Test GPU {i}", total_memory=24 * 10**9),
    )
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (free[i], 24 * 10**9))
    return free


def test_gpus_are_listed_with_their_memory(tmp_path: Path, two_gpus: dict[int, int]) -> None:
    ctx = ctx_for(tmp_path)
    result = doctor.check_gpu(ctx)
    assert result.status == OK
    assert "cuda:0 Test GPU 0, 22.4 GiB" in result.detail and "cuda:1" in result.detail
    assert [g.index for g in ctx.gpus] == [0, 1]


def test_no_gpu_warning_when_a_gpu_is_there(two_gpus: dict[int, int]) -> None:
    assert cpu_fallback_warning() is None


def test_a_busy_gpu_warns(tmp_path: Path, two_gpus: dict[int, int]) -> None:
    two_gpus[1] = 2 * 10**9
    result = doctor.check_gpu(ctx_for(tmp_path))
    assert result.status == WARN and "cuda:1" in result.detail and "nvidia-smi" in result.fix


def test_a_missing_device_fails(tmp_path: Path, two_gpus: dict[int, int]) -> None:
    result = doctor.check_gpu(ctx_for(tmp_path, device="cuda:5"))
    assert result.status == FAIL and "cuda:0..cuda:1" in result.fix


def test_cuda_is_skipped_for_a_cpu_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    assert doctor.check_cuda(ctx_for(tmp_path)).status == SKIP


@pytest.mark.parametrize(
    ("driver", "status"),
    [((13, 0), OK), ((12, 6), OK), ((12, 4), WARN), ((11, 8), FAIL), (None, SKIP)],
)
def test_cuda_build_against_the_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver: tuple[int, int] | None, status: str
) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(doctor, "_driver_cuda_version", lambda: driver)
    monkeypatch.setattr(doctor, "_driver_release", lambda: "560.35.03")
    result = doctor.check_cuda(ctx_for(tmp_path))
    assert result.status == status, result
    if status in (WARN, FAIL):
        assert "driver" in result.fix


# --- Hub ----------------------------------------------------------------------------------------------------


def test_hub_reachable(tmp_path: Path, server: _Server) -> None:
    result = doctor.check_hub(ctx_for(tmp_path, endpoint=server.url))
    assert result.status == OK and server.url in result.detail


def test_hub_error_page_still_means_reachable(tmp_path: Path) -> None:
    s = _Server(code=404)
    try:
        result = doctor.check_hub(ctx_for(tmp_path, endpoint=s.url))
    finally:
        s.close()
    assert result.status == OK and "HTTP 404" in result.detail


def test_hub_endpoint_defaults_to_hf_endpoint(tmp_path: Path, server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", server.url)  # doctor asks the Hub the client downloads from
    assert hub_url(Settings().endpoint) == server.url
    assert doctor.check_hub(ctx_for(tmp_path)).status == OK


def test_unreachable_hub_warns_for_the_demo_and_fails_for_a_hub_project(tmp_path: Path, closed_port: int) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"
    demo = doctor.check_hub(ctx_for(tmp_path, endpoint=endpoint))
    assert demo.status == WARN and "cannot reach" in demo.detail and "HF_ENDPOINT" in demo.fix
    hub = doctor.check_hub(ctx_for(tmp_path, endpoint=endpoint, project="someorg/someproject"))
    assert hub.status == FAIL and "downloaded from it" in hub.detail


def test_offline_mode_skips_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert doctor.check_hub(ctx_for(tmp_path)).status == SKIP


@pytest.mark.parametrize(
    ("project", "uses_hub"),
    [("demo", False), ("./my-project", False), ("/abs/path", False), ("org/name", True), ("org/name@abc", True)],
)
def test_which_projects_need_the_hub(project: str, uses_hub: bool) -> None:
    assert doctor.project_uses_hub(project) is uses_hub


# --- project requirements -----------------------------------------------------------------------------------


def prepared_with(requirements: Requirements) -> Any:
    return SimpleNamespace(project=SimpleNamespace(manifest=SimpleNamespace(requirements=requirements)))


def project_ctx(tmp_path: Path, gpus: list[Gpu]) -> Context:
    ctx = ctx_for(tmp_path)
    assert doctor.check_data_dir(ctx).status == OK
    ctx.gpus = gpus
    return ctx


GPU_8GB = Gpu(0, "Small GPU", 8 * 10**9)


def test_project_loader_is_called_with_settings_and_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    calls = []
    fake = types.ModuleType("volunteer.project")
    fake.prepare_project = lambda settings, data_dir: (
        calls.append((settings, data_dir)) or prepared_with(Requirements())
    )
    monkeypatch.setitem(sys.modules, "volunteer.project", fake)
    ctx = project_ctx(tmp_path, [])
    assert doctor.check_project(ctx).status == OK
    assert calls == [(ctx.settings, ctx.data_dir)]


@pytest.mark.parametrize(
    ("requirements", "gpus", "status", "words"),
    [
        (Requirements(gpu="optional", min_gpu_memory_gb=4, min_client_version="0.1.0"), [GPU_8GB], OK, "met"),
        (Requirements(gpu="optional"), [], OK, "met"),
        (Requirements(gpu="required"), [], FAIL, "needs a GPU"),
        (Requirements(gpu="required", min_gpu_memory_gb=16), [GPU_8GB], FAIL, "16 GB"),
        (Requirements(gpu="optional", min_gpu_memory_gb=16), [GPU_8GB], WARN, "8.0 GB"),
        (Requirements(min_client_version="99.0"), [], FAIL, "99.0 or newer"),
    ],
)
def test_requirements_are_judged(
    tmp_path: Path, requirements: Requirements, gpus: list[Gpu], status: str, words: str
) -> None:
    result = doctor.check_project(project_ctx(tmp_path, gpus), load=lambda ctx: prepared_with(requirements))
    assert result.status == status, result
    assert words in result.detail
    if status != OK:
        assert result.fix


def test_project_errors_are_reported(tmp_path: Path) -> None:
    def missing(ctx: Context) -> object:
        raise ProjectError("repository org/nope not found", "check the project id")

    def untrusted(ctx: Context) -> object:
        raise TrustError("the project's code has not been trusted yet", "run with --trust after reading it")

    ctx = project_ctx(tmp_path, [])
    assert doctor.check_project(ctx, load=missing) == CheckResult(
        "project", FAIL, "project 'demo': repository org/nope not found", "check the project id"
    )
    assert doctor.check_project(ctx, load=untrusted).status == WARN


# --- listening address --------------------------------------------------------------------------------------


def test_listen_on_a_free_port(tmp_path: Path) -> None:
    result = doctor.check_listen(ctx_for(tmp_path))
    assert result.status == OK and "tcp 0.0.0.0:" in result.detail


def test_listen_on_the_image_addresses(tmp_path: Path, closed_port: int) -> None:
    maddrs = f"/ip4/127.0.0.1/tcp/{closed_port} /ip4/127.0.0.1/udp/{closed_port}/quic-v1"
    result = doctor.check_listen(ctx_for(tmp_path, host_maddrs=maddrs))
    assert result.status == OK
    assert f"tcp 127.0.0.1:{closed_port}" in result.detail and f"udp 127.0.0.1:{closed_port}" in result.detail


def test_listen_port_in_use_fails(tmp_path: Path, closed_port: int) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = doctor.check_listen(
            ctx_for(tmp_path, host_maddrs=f"/ip4/127.0.0.1/tcp/{port}", status_port=closed_port)
        )
    assert result.status == FAIL and "already in use" in result.detail and "--host-maddrs" in result.fix


def test_listen_port_in_use_by_our_own_client_is_fine(tmp_path: Path) -> None:
    status = _Server(body=b'{"state": "training"}')
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            result = doctor.check_listen(
                ctx_for(tmp_path, host_maddrs=f"/ip4/127.0.0.1/tcp/{port}", status_port=status.port)
            )
    finally:
        status.close()
    assert result.status == OK and "already running here (training)" in result.detail


def test_listen_on_an_address_of_another_host_fails(tmp_path: Path) -> None:
    result = doctor.check_listen(ctx_for(tmp_path, host_maddrs="/ip4/192.0.2.1/tcp/0"))
    assert result.status == FAIL and "does not belong to this host" in result.detail


def test_client_mode_listens_nowhere(tmp_path: Path) -> None:
    assert doctor.check_listen(ctx_for(tmp_path, client_mode=True)).status == SKIP


def test_listen_addresses_come_from_the_environment(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOLUNTEER_HOST_MADDRS", f"/ip4/127.0.0.1/tcp/{closed_port}")
    settings = doctor.settings_from_namespace(doctor.build_parser().parse_args(["--data-dir", str(tmp_path)]))
    result = doctor.check_listen(Context(settings=settings))
    assert result.status == OK and f"127.0.0.1:{closed_port}" in result.detail


# --- shared memory ---------------------------------------------------------------------------------------------


def _space(mib: int) -> shm.ShmSpace:
    return shm.ShmSpace("/dev/shm", mib * shm.MIB, mib * shm.MIB)


def _prepared(tmp_path: Path, parameters: int) -> PreparedProject:
    """The test project with a model of ``parameters`` parameters (one Linear layer to a single output)."""
    root = write_project(tmp_path / f"proj-{parameters}", {"model.init_args.width": parameters - 1})
    return prepare_project(Settings(project=str(root)), DataDir.open(tmp_path / "data"))


# the sizes of a 4096-4096-8 and a 1024-1024-8 MLP
BIG, SMALL = 4096 * 4096 + 4096 + 4096 * 8 + 8, 1024 * 1024 + 1024 + 1024 * 8 + 8


def test_shm_fails_with_the_fix_when_the_project_does_not_fit(tmp_path: Path) -> None:
    # 16.8 M parameters, two fp32 copies of 64 MiB each: Docker's 64 MB cannot hold them
    ctx = Context(settings=Settings(), prepared=_prepared(tmp_path, BIG))
    result = doctor.check_shm(ctx, _space(64))
    assert result.status == FAIL
    assert "16.8 M parameters" in result.detail and "needs about 132 MB" in result.detail
    assert "--shm-size=512m" in result.fix and "--ipc=host" in result.fix and "shm_size" in result.fix


def test_shm_ok_when_the_project_fits(tmp_path: Path) -> None:
    result = doctor.check_shm(Context(settings=Settings(), prepared=_prepared(tmp_path, SMALL)), _space(64))
    assert result.status == OK and "1.1 M parameters" in result.detail


def test_shm_without_a_project_warns_at_dockers_default_only() -> None:
    result = doctor.check_shm(Context(settings=Settings()), _space(64))
    assert result.status == WARN and "7.9 M parameters" in result.detail and "--shm-size" in result.fix
    assert doctor.check_shm(Context(settings=Settings()), _space(1024)).status == OK


def test_the_worker_refuses_a_model_too_big_for_shm(tmp_path: Path) -> None:
    from volunteer.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        shm.check_shm(build_project(_prepared(tmp_path, BIG).project).module, _space(64))
    assert raised.value.message.startswith("/dev/shm has 64 MB free of 64 MB")
    shm.check_shm(build_project(_prepared(tmp_path, SMALL).project).module, _space(64))


def test_bandwidth_limits_are_explained_and_a_tiny_one_warns() -> None:
    from volunteer.doctor import check_bandwidth

    assert check_bandwidth(Context(Settings())).status == "ok"
    capped = check_bandwidth(Context(parse_run_args(["--max-upload", "5Mbit", "--monthly-data", "500GB"])))
    assert capped.status == "ok" and "upload cap 5 Mbit/s" in capped.detail and "500 GB a month" in capped.detail
    assert "client peer" in capped.detail
    full = check_bandwidth(Context(parse_run_args(["--max-upload", "5Mbit", "--no-client-mode"])))
    assert "full peer (--no-client-mode)" in full.detail
    tiny = check_bandwidth(Context(parse_run_args(["--monthly-data", "100GB"])))  # 309 kbit/s on average
    assert tiny.status == "warn" and "309 kbit/s" in tiny.detail and tiny.fix
