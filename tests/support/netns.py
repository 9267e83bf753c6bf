"""Separate hosts on one machine: every peer in a Linux network namespace of its own, on one bridge.

    bridge namespace  <prefix>-<tag>-br        (holds the bridge; nothing else routes through it)
        bridge "<prefix>br"  --veth--  host namespace <prefix>-<tag>-a   eth0 10.211.<net>.11/24
                             --veth--  host namespace <prefix>-<tag>-b   eth0 10.211.<net>.12/24
                             ...

The bridge lives in a namespace of its own, so the root namespace's firewall (dockerd sets its FORWARD
policy to DROP, with bridge netfilter on) never sees the traffic. The subnet is private and has no route
out: peers reach each other and nothing else. Every name starts with ``prefix`` so that parallel users of
one machine never collide, and :meth:`Network.close` removes everything, killing what still runs inside.

Faults: :meth:`Network.link_down` / :meth:`Network.link_up` cut a host's cable at the bridge (its processes
live on; TCP to it fails until the link returns), :meth:`Network.partition` does both around a pause, and
:func:`kill_tree` kills a process with every descendant at once, like a power cut.

Used by the fault-tolerance tests (``tests/integration/test_faults.py``) and ``benchmarks/failover.py``.
Needs root (``CAP_NET_ADMIN`` and ``CAP_SYS_ADMIN``) and iproute2; :func:`unavailable_reason` says why not.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or ``None`` when they can."""
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    probe = f"faultsprobe-{os.getpid()}"
    try:
        result = _ip("netns", "add", probe, check=False)
        if result.returncode != 0:
            return f"'ip netns add' failed: {result.stderr.strip() or result.returncode}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid``, its process group and every descendant (hivemind's DHT, averagers, p2pd).

    The descendants are listed before anything is signalled, so none escapes by being re-parented.
    """
    victims: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        parent = psutil.Process(pid)
        victims = [parent, *parent.children(recursive=True)]
    groups = {pid}
    for process in victims:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            groups.add(os.getpgid(process.pid))
    for process in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)
    for group in groups:
        if group != os.getpgrp():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)


@dataclass
class Host:
    """One network namespace with one address on the bridge."""

    name: str
    netns: str
    address: str
    bridge_port: str
    """The veth end in the bridge namespace: taking it down cuts this host off."""

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]

    def connect(self, port: int, address: str = "127.0.0.1", timeout: float = 2.0) -> socket.socket:
        """A TCP connection opened from inside this host (e.g. to a status endpoint on its loopback).

        A helper thread enters the namespace (``setns`` changes only the calling thread), opens the socket
        there and exits; the socket stays in the namespace it was created in.
        """
        box: dict[str, object] = {}

        def open_inside() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"{NETNS_DIR}/{self.netns}") as ns:
                    if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.netns} failed")
                sock = socket.create_connection((address, port), timeout=timeout)
                box["sock"] = sock
            except BaseException as e:
                box["error"] = e

        thread = threading.Thread(target=open_inside, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout + 5)
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        if "sock" not in box:
            raise TimeoutError(f"could not connect inside {self.netns}")
        return box["sock"]  # type: ignore[return-value]

    def http_json(self, port: int, path: str, timeout: float = 2.0) -> object:
        """GET ``path`` from a server on this host's loopback and decode its JSON."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.sock = self.connect(port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise OSError(f"HTTP {response.status} from {self.name}:{port}{path}")
            return json.loads(body)
        finally:
            conn.close()

    def interface_bytes(self, device: str = "eth0") -> tuple[int, int]:
        """Bytes ``device`` has sent and received so far (the kernel's counters, headers and all)."""
        result = _ip("-n", self.netns, "-s", "-j", "link", "show", device)
        stats = json.loads(result.stdout)[0]["stats64"]
        return int(stats["tx"]["bytes"]), int(stats["rx"]["bytes"])

    def can_reach(self, other: Host, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from this host to ``other``'s address and ``port`` succeeds now."""
        try:
            self.connect(port, other.address, timeout=timeout).close()
            return True
        except OSError:
            return False


class Network:
    """A bridge in a namespace of its own and hosts attached to it; a context manager that cleans up.

    Args:
        prefix: Starts every namespace, bridge and veth name (keep it short: veth names have 15 characters).
        net: The third octet of the subnet ``10.211.<net>.0/24``; random by default, so that two networks
            on one machine do not share addresses.
    """

    def __init__(self, prefix: str = "faults", net: int | None = None) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.prefix = prefix
        self.tag = secrets.token_hex(2)
        self.net = net if net is not None else secrets.randbelow(250) + 1
        self.bridge_ns = f"{prefix}-{self.tag}-br"
        self.bridge = f"{prefix}br"
        self.hosts: dict[str, Host] = {}
        self._closed = False
        _ip("netns", "add", self.bridge_ns)
        try:
            _ip("-n", self.bridge_ns, "link", "set", "lo", "up")
            _ip("-n", self.bridge_ns, "link", "add", "name", self.bridge, "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, name: str) -> Host:
        """A new namespace ``<prefix>-<tag>-<name>`` with ``eth0`` on the bridge and loopback up."""
        index = len(self.hosts) + 1
        netns = f"{self.prefix}-{self.tag}-{name}"
        port = f"{self.prefix}{self.tag}{index:02d}"[:15]
        address = f"10.211.{self.net}.{10 + index}"
        _ip("netns", "add", netns)
        host = Host(name, netns, address, port)
        self.hosts[name] = host
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.bridge_ns)
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", self.bridge_ns, "link", "set", port, "master", self.bridge)
        _ip("-n", self.bridge_ns, "link", "set", port, "up")
        return host

    def add_nat_host(self, name: str) -> Host:
        """A "home" host behind a NAT router: it can open connections out, nothing can open one to it.

        The router is a namespace ``<prefix>-<tag>-<name>gw`` with an address on the bridge and a private LAN
        (``192.168.<k>.0/24``) to the home host; it masquerades outgoing traffic and drops every new
        connection from the bridge side, like a home router without port forwarding.
        """
        router = self.add_host(f"{name}gw")
        k = len(self.hosts)
        netns = f"{self.prefix}-{self.tag}-{name}"
        lan_port = f"{self.prefix}{self.tag}l{k:02d}"[:15]
        address = f"192.168.{k}.2"
        _ip("netns", "add", netns)
        host = Host(name, netns, address, router.bridge_port)
        self.hosts[name] = host
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", lan_port, "netns", router.netns)
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "route", "add", "default", "via", f"192.168.{k}.1")
        _ip("-n", router.netns, "addr", "add", f"192.168.{k}.1/24", "dev", lan_port)
        _ip("-n", router.netns, "link", "set", lan_port, "up")
        for rule in (
            ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE"],
            ["iptables", "-A", "FORWARD", "-i", "eth0", "-m", "conntrack", "--ctstate", "NEW,INVALID", "-j", "DROP"],
        ):
            subprocess.run(router.command(rule), check=True, capture_output=True, timeout=30)
        return host

    def link_down(self, host: Host) -> None:
        """Cut ``host`` off: its processes keep running, nothing reaches it or leaves it."""
        _ip("-n", self.bridge_ns, "link", "set", host.bridge_port, "down")

    def link_up(self, host: Host) -> None:
        _ip("-n", self.bridge_ns, "link", "set", host.bridge_port, "up")

    def partition(self, host: Host, seconds: float) -> None:
        """Take ``host``'s link down for ``seconds``, then bring it back."""
        self.link_down(host)
        try:
            time.sleep(seconds)
        finally:
            self.link_up(host)

    def limit_bandwidth(self, host: Host, rate: str = "10mbit", burst: str = "32kbit", latency: str = "50ms") -> bool:
        """Shape ``host``'s outgoing traffic with ``tc tbf``; False where the kernel lacks it."""
        more = ["burst", burst, "latency", latency]
        result = subprocess.run(
            host.command(["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, *more]),
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.returncode == 0

    def limit_downlink(self, host: Host, rate: str = "10mbit", burst: str = "32kbit", latency: str = "50ms") -> bool:
        """Shape what ``host`` receives (its bridge port's egress) with ``tc tbf``; False where the kernel lacks it."""
        shape = ["tc", "qdisc", "replace", "dev", host.bridge_port, "root", "tbf", "rate", rate]
        shape += ["burst", burst, "latency", latency]
        result = subprocess.run(["ip", "netns", "exec", self.bridge_ns, *shape], capture_output=True, timeout=30)
        return result.returncode == 0

    def unlimit_downlink(self, host: Host) -> None:
        """Take :meth:`limit_downlink`'s shaping off again."""
        lift = ["tc", "qdisc", "del", "dev", host.bridge_port, "root"]
        subprocess.run(["ip", "netns", "exec", self.bridge_ns, *lift], capture_output=True, timeout=30)

    def close(self) -> None:
        """Kill what still runs in the namespaces, then delete them (their veths go with them)."""
        if self._closed:
            return
        self._closed = True
        for netns in [h.netns for h in self.hosts.values()] + [self.bridge_ns]:
            pids = _ip("netns", "pids", netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ValueError):
                    kill_tree(int(pid))
            _ip("netns", "del", netns, check=False)


def leftover_namespaces(prefix: str = "faults") -> list[str]:
    """Namespaces named with ``prefix`` that exist now (for cleanup checks)."""
    listing = _ip("netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in listing if line.startswith(prefix + "-")]
