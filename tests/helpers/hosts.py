"""Several "hosts" on one machine, for tests of what crosses a network: network namespaces joined by a bridge.

Each host is a network namespace (``ip netns``) with one veth link to a bridge in the root namespace, its own address
(10.R.0.10+i/24, R random per network) and, for the processes the tests start in it, its own hostname
(``unshare --uts``). The bridge has 10.R.0.1: a server started in the root namespace and listening there is reachable
from every host. :meth:`Network.partition` takes a host's link down (its packets go nowhere, as when a cable is
pulled); :meth:`Network.heal` brings it back.

Everything needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): :func:`unavailable` says what is missing for a one-line skip.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why test hosts cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2 / util-linux)"
    name = f"agentd-probe-{os.getpid()}"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"unshare --uts is not permitted here: {probe.stderr.strip()}"
    return None


@dataclass
class Host:
    """One network namespace with its own address and hostname."""

    name: str  # the hostname its processes see
    netns: str
    address: str
    outer: str  # the veth end in the root namespace (on the bridge)

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run in this host's namespace under its hostname (arguments passed as they are, no shell
        parsing of them: the hostname and the command are positional parameters)."""
        setup = 'hostname "$1" && shift && exec "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--", "sh", "-c", setup, "sh", self.name,
                *command]  # fmt: skip

    def run(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command), capture_output=True, text=True, env=dict(env or os.environ), timeout=timeout, cwd=cwd
        )

    def popen(self, command: Sequence[str], **options: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(command), **options)  # type: ignore[call-overload, no-any-return]


@dataclass
class Network:
    """A bridge and its hosts; :meth:`close` removes every namespace and link it made."""

    tag: str
    subnet: int
    bridge: str
    hosts: list[Host] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (where a shared server listens)."""
        return f"10.{self.subnet}.0.1"

    @property
    def cidr(self) -> str:
        return f"10.{self.subnet}.0.0/24"

    def add_host(self, hostname: str) -> Host:
        index = len(self.hosts)
        netns = f"agentd-{self.tag}-{index}"
        outer, inner = f"va{self.tag}{index}", f"vb{self.tag}{index}"
        address = f"10.{self.subnet}.0.{10 + index}"
        _ip("netns", "add", netns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", netns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", inner)
        _ip("-n", netns, "link", "set", inner, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "route", "add", "default", "via", self.gateway)
        host = Host(hostname, netns, address, outer)
        self.hosts.append(host)
        return host

    def partition(self, host: Host) -> None:
        """Cut ``host`` off: its link goes down (connections hang, new ones fail), its processes keep running."""
        _ip("link", "set", host.outer, "down")

    def heal(self, host: Host) -> None:
        _ip("link", "set", host.outer, "up")

    def close(self) -> None:
        for host in self.hosts:
            _ip("link", "del", host.outer, check=False)
            _ip("netns", "del", host.netns, check=False)
        _ip("link", "del", self.bridge, check=False)


@contextlib.contextmanager
def network(hostnames: Sequence[str]) -> Iterator[Network]:
    """A bridge with one host per name, removed afterwards."""
    tag = f"{os.getpid() % 1000:03d}{random.randrange(100):02d}"  # unique per test process; link names <= 15 chars
    taken = _ip("route", "show").stdout
    subnet = next(s for s in random.sample(range(16, 250), 234) if f"10.{s}.0.0/24" not in taken)
    net = Network(tag, subnet, f"br{tag}")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        for name in hostnames:
            net.add_host(name)
        yield net
    finally:
        net.close()
