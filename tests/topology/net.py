"""The test's own network: Linux network namespaces on one private subnet, made and removed here.

One namespace per host (`grimos-topo-<host>`), each with one veth link into a bridge that lives in
a namespace of its own (`grimos-topo-switch`), so the bridge sees no firewall rule of the machine.
The test itself (the load, the scrapes) reaches every host from the root namespace through one
more veth link, `grt-host` (10.213.0.1). Only addresses of SUBNET are used, only ones this module
assigned, and everything named `grimos-topo-*` is removed again by `Net.remove`, also what a run
that was killed left behind.

Names are served the way a headless Kubernetes Service serves them: `ip netns exec` bind-mounts
`/etc/netns/<namespace>/hosts` over `/etc/hosts` for what runs in the namespace, so `set_hosts`
can give a name several addresses and change them mid-test (written in place: the bind mount
holds the file, not its path).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

SUBNET = ipaddress.ip_network("10.213.0.0/24")
PREFIX = "grimos-topo-"
SWITCH = PREFIX + "switch"
BRIDGE = "grt-br"
HOST_LINK = "grt-host"
HOST_ADDR = "10.213.0.1"
NETNS_ETC = Path("/etc/netns")


class NetError(Exception):
    """The network could not be made (not root, no `ip`, the subnet in use)."""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def in_ns(namespace: str, *argv: str) -> list[str]:
    """`argv` run inside `namespace`."""
    return ["ip", "netns", "exec", namespace, *argv]


class Net:
    """The namespaces and links of one run."""

    def __init__(self) -> None:
        self.hosts: dict[str, str] = {}  # host name -> its address

    @staticmethod
    def namespace(host: str) -> str:
        return PREFIX + host

    def check(self) -> None:
        if os.geteuid() != 0:
            raise NetError("the topology test makes network namespaces: run it as root")
        for tool in ("ip", "iptables"):
            if shutil.which(tool) is None:
                raise NetError(f"{tool} is not installed (Debian: iproute2, iptables)")
        Net.remove()
        used = run("ip", "-o", "addr", "show", "to", str(SUBNET)).stdout.strip()
        if used:
            raise NetError(f"{SUBNET} is in use on this machine, which the test needs for itself:\n{used}")

    def create(self) -> None:
        """The switch (a bridge in its namespace) and the root namespace's link to it."""
        self.check()
        run("ip", "netns", "add", SWITCH)
        sw = in_ns(SWITCH, "ip")
        run(*sw, "link", "set", "lo", "up")
        run(*sw, "link", "add", BRIDGE, "type", "bridge")
        run(*sw, "link", "set", BRIDGE, "up")
        run("ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name", "grt-host-p", "netns", SWITCH)
        run(*sw, "link", "set", "grt-host-p", "master", BRIDGE, "up")
        run("ip", "addr", "add", f"{HOST_ADDR}/{SUBNET.prefixlen}", "dev", HOST_LINK)
        run("ip", "link", "set", HOST_LINK, "up")

    def add_host(self, host: str, address: str) -> str:
        """A namespace for `host` with `address` on its link to the switch; its name."""
        if ipaddress.ip_address(address) not in SUBNET:
            raise NetError(f"{address} is outside {SUBNET}")
        namespace = self.namespace(host)
        outer, inner = f"grt-{host}"[:15], f"grt-{host}-i"[:15]
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", namespace)
        run("ip", "link", "set", outer, "netns", SWITCH)
        run(*in_ns(SWITCH, "ip"), "link", "set", outer, "master", BRIDGE, "up")
        ns = in_ns(namespace, "ip")
        run(*ns, "link", "set", "lo", "up")
        run(*ns, "addr", "add", f"{address}/{SUBNET.prefixlen}", "dev", inner)
        run(*ns, "link", "set", inner, "up")
        (NETNS_ETC / namespace).mkdir(parents=True, exist_ok=True)
        self.hosts[host] = address
        return namespace

    def set_hosts(self, host: str, names: dict[str, list[str]]) -> None:
        """What `/etc/hosts` says inside `host`'s namespace: each name with its addresses
        (every one, in this order; `multi on` in its host.conf asks glibc for all of them)."""
        folder = NETNS_ETC / self.namespace(host)
        conf = folder / "host.conf"
        if not conf.exists():
            conf.write_text("multi on\n")
        lines = ["127.0.0.1 localhost"]
        lines += [f"{address} {name}" for name, addresses in names.items() for address in addresses]
        path = folder / "hosts"
        # In place: processes see the file through a bind mount of this very inode.
        with path.open("r+" if path.exists() else "w") as f:
            f.seek(0)
            f.write("\n".join(lines) + "\n")
            f.truncate()

    def cut_off(self, host: str) -> None:
        """Drops every packet that reaches `host` (a partition, not a refusal)."""
        run(*in_ns(self.namespace(host), "iptables"), "-I", "INPUT", "-j", "DROP")

    def heal(self, host: str) -> None:
        run(*in_ns(self.namespace(host), "iptables"), "-D", "INPUT", "-j", "DROP")

    @staticmethod
    def remove() -> None:
        """Removes every namespace, link and file named `grimos-topo-*` (deleting a namespace
        deletes its links, and with them their peers and the bridge)."""
        listed = run("ip", "netns", "list", check=False).stdout.split("\n")
        for line in listed:
            name = line.split(" ")[0]
            if name.startswith(PREFIX):
                run("ip", "netns", "del", name, check=False)
        run("ip", "link", "del", HOST_LINK, check=False)
        if NETNS_ETC.is_dir():
            for folder in NETNS_ETC.glob(PREFIX + "*"):
                shutil.rmtree(folder, ignore_errors=True)
