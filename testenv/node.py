"""A real single node: containerd, CNI bridge, kubelet and kube-proxy beside a control plane.

Pods run in real containers (runc) on a bridge with no masquerade and no default route: they
reach each other, the node and the Service CIDR, and nothing off this machine. Teardown undoes
everything the node set up: pods (so CNI DEL runs), processes by PID, kube-proxy's iptables
chains, the bridge, leftover network namespaces and mounts, cgroups and pod logs, and the
sysctls it changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import yaml

from . import procs
from .certs import Authority, write_kubeconfig
from .controlplane import NODE_NAME, SERVICE_CIDR, ControlPlane
from .paths import CACHE, binary

POD_CIDR = "10.244.0.0/24"
BRIDGE = "hxbr0"
PAUSE_IMAGE = "docker.io/hexagon/pause:1"
CNI_BIN = "/usr/lib/cni"
FORWARD_CHAIN = "HEXAGON-FORWARD"
# sysctls the node needs; their old values are saved and restored on teardown
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
}


class Node:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.state = cp.state / "node"
        # containerd's content store is a cache of imported images: kept across clusters
        self.containerd_root = CACHE / "containerd" / cp.name
        self.socket = self.state / "containerd.sock"

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self._sysctls()
        self._firewall()
        self._bridge()
        live = set(procs.running(self.cp.state))
        if "containerd" not in live:
            self._start_containerd()
        ca = Authority(self.cp.pki)
        self._credentials(ca)
        if "coredns" not in live:
            self._start_coredns()
        if "kubelet" not in live:
            self._start_kubelet(ca)
        if "kube-proxy" not in live:
            self._start_kube_proxy()
        procs.wait_until(
            "node Ready",
            self._node_ready,
            timeout=90,
            state=self.cp.state,
            component="kubelet",
        )

    def down(self) -> None:
        if "kubelet" in procs.running(self.cp.state):
            self._drain_pods()
        procs.stop(self.cp.state, "kube-proxy")
        procs.stop(self.cp.state, "kubelet", timeout=20)
        procs.stop(self.cp.state, "coredns")
        self._remove_leftover_containers()
        procs.stop(self.cp.state, "containerd", timeout=20)
        self._cleanup_network()
        self._cleanup_mounts()
        self._cleanup_cgroups()
        for d in ("/var/log/pods", "/var/log/containers"):
            shutil.rmtree(d, ignore_errors=True)
        self._restore_sysctls()

    # -- containerd ------------------------------------------------------------------------
    def _start_containerd(self) -> None:
        cni_conf = self.state / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (self.state / "cni" / "ipam").mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-hexagon.conflist").write_text(json.dumps(self._cni_config(), indent=2))
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{self.containerd_root}"
state = "{self.state / "containerd-state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "warn"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to set oom_score_adj
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  disable_apparmor = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cni_conf}"
"""
        path = self.state / "containerd.toml"
        path.write_text(config)
        procs.start(
            "containerd", [binary("containerd"), "--config", str(path)], state=self.cp.state
        )
        procs.wait_until(
            "containerd socket",
            lambda: self.ctr("version") != "",
            timeout=30,
            state=self.cp.state,
            component="containerd",
        )

    def ctr(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        return procs.run(
            [binary("ctr"), "--address", str(self.socket), "-n", "k8s.io", *args],
            timeout=timeout,
            check=check,
        )

    def images(self) -> set[str]:
        out = self.ctr("images", "list", "-q")
        return {line.strip() for line in out.splitlines() if line.strip()}

    def import_image(self, archive: Path) -> None:
        self.ctr("images", "import", "--no-unpack", str(archive), timeout=600)

    def _cni_config(self) -> dict[str, object]:
        return {
            "cniVersion": "1.0.0",
            "name": "hexagon",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        # no default route: pods reach the node, Services and each other only
                        "routes": [{"dst": SERVICE_CIDR}, {"dst": f"{self.cp.host_ip}/32"}],
                        "dataDir": str(self.state / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    # -- cluster DNS -----------------------------------------------------------------------
    def _start_coredns(self) -> None:
        """CoreDNS as a host process on the node address: Service and pod names resolve in
        pods; nothing else does (there is no upstream resolver, pods reach nothing outside)."""
        corefile = self.state / "Corefile"
        # the admin identity is enough for a throwaway local cluster's DNS (read-only use)
        corefile.write_text(
            f""".:53 {{
    bind {self.cp.host_ip}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.cp.kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""
        )
        procs.start("coredns", [binary("coredns"), "-conf", str(corefile)], state=self.cp.state)
        procs.wait_until(
            "coredns ready",
            lambda: (
                "coredns" in procs.running(self.cp.state)
                and "CoreDNS-" in procs.log_tail(self.cp.state, "coredns")
            ),
            timeout=30,
            state=self.cp.state,
            component="coredns",
        )

    # -- kubelet ---------------------------------------------------------------------------
    def _credentials(self, ca: Authority) -> None:
        node = ca.issue("node", cn=f"system:node:{NODE_NAME}", org="system:nodes")
        ca.issue(
            "kubelet-serving", cn=NODE_NAME, server=True, dns=(NODE_NAME,), ips=(self.cp.host_ip,)
        )
        write_kubeconfig(
            self.state / "kubelet.kubeconfig",
            server=self.cp.server,
            ca=ca.pair.cert,
            client=node,
            user=f"system:node:{NODE_NAME}",
        )
        proxy = ca.issue("kube-proxy", cn="system:kube-proxy", org=None)
        write_kubeconfig(
            self.state / "kube-proxy.kubeconfig",
            server=self.cp.server,
            ca=ca.pair.cert,
            client=proxy,
            user="system:kube-proxy",
        )

    def _start_kubelet(self, ca: Authority) -> None:
        pki = self.cp.pki
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.cp.host_ip,
            "port": 10250,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.cp.port(48),
            "readOnlyPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca.pair.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "cgroupDriver": "cgroupfs",
            # these hosts are cgroup v1: the kubelet warns but runs
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # nothing can be pulled here, so never evict or garbage-collect images
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "0%",
                "imagefs.available": "0%",
                "nodefs.inodesFree": "0%",
            },
            "clusterDomain": "cluster.local",
            "clusterDNS": [self.cp.host_ip],
            "resolvConf": "",
            "maxPods": 110,
            "serializeImagePulls": False,
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "fileCheckFrequency": "5s",
        }
        path = self.state / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        procs.start(
            "kubelet",
            [
                binary("kubelet"),
                f"--config={path}",
                f"--kubeconfig={self.state / 'kubelet.kubeconfig'}",
                f"--root-dir={self.state / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.cp.host_ip}",
                f"--pod-infra-container-image={PAUSE_IMAGE}",
                "--v=1",
            ],
            state=self.cp.state,
        )

    def _start_kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.state / "kube-proxy.kubeconfig")},
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{self.cp.port(56)}",
            "metricsBindAddress": f"127.0.0.1:{self.cp.port(49)}",
            # leave the conntrack table sysctls alone
            "conntrack": {"maxPerCore": 0},
            "nodePortAddresses": [f"{self.cp.host_ip}/32"],
            "iptables": {"localhostNodePorts": False},
        }
        path = self.state / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        procs.start(
            "kube-proxy", [binary("kube-proxy"), f"--config={path}", "--v=1"], state=self.cp.state
        )

    def _node_ready(self) -> bool:
        out = self.cp.kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return out.strip() == "True"

    # -- host network ----------------------------------------------------------------------
    def _sysctls(self) -> None:
        saved = self.state / "sysctls.json"
        if not saved.exists():
            old = {k: procs.run(["sysctl", "-n", k]).strip() for k in SYSCTLS}
            saved.write_text(json.dumps(old))
        for key, value in SYSCTLS.items():
            procs.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def _restore_sysctls(self) -> None:
        saved = self.state / "sysctls.json"
        if saved.exists():
            for key, value in json.loads(saved.read_text()).items():
                procs.run(["sysctl", "-q", "-w", f"{key}={value}"], check=False)
            saved.unlink()
        # kube-proxy turns this on for NodePorts on loopback; put it back
        procs.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=0"], check=False)

    def _firewall(self) -> None:
        """Forwarding is on for Services; this chain keeps pod traffic on this machine."""
        ipt = binary("iptables")
        if procs.run([ipt, "-w", "-n", "-L", FORWARD_CHAIN], check=False) == "":
            procs.run([ipt, "-w", "-N", FORWARD_CHAIN], check=False)
            procs.run(
                [ipt, "-w", "-A", FORWARD_CHAIN, "-s", POD_CIDR, "-o", BRIDGE, "-j", "RETURN"]
            )
            procs.run([ipt, "-w", "-A", FORWARD_CHAIN, "-s", POD_CIDR, "-j", "DROP"])
            procs.run(
                [ipt, "-w", "-A", FORWARD_CHAIN, "-d", POD_CIDR, "-i", BRIDGE, "-j", "RETURN"]
            )
            procs.run([ipt, "-w", "-A", FORWARD_CHAIN, "-d", POD_CIDR, "-j", "DROP"])
            procs.run([ipt, "-w", "-I", "FORWARD", "1", "-j", FORWARD_CHAIN])

    def _bridge(self) -> None:
        """Create the pod bridge up front (the CNI plugin adopts it) and route the Service CIDR
        into it, so that traffic from this host to a ClusterIP is always NATed to a pod and
        can never leave through the machine's default route."""
        links = procs.run(["ip", "-o", "link", "show"])
        if f" {BRIDGE}:" not in links:
            procs.run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        procs.run(["ip", "link", "set", BRIDGE, "up"])
        procs.run(["ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE])

    def _cleanup_network(self) -> None:
        ipt = binary("iptables")
        with contextlib.suppress(FileNotFoundError):
            procs.run([binary("kube-proxy"), "--cleanup"], check=False, timeout=60)
        procs.run([ipt, "-w", "-D", "FORWARD", "-j", FORWARD_CHAIN], check=False)
        procs.run([ipt, "-w", "-F", FORWARD_CHAIN], check=False)
        procs.run([ipt, "-w", "-X", FORWARD_CHAIN], check=False)
        # kube-proxy --cleanup leaves the kubelet's own chains; remove every KUBE-* chain
        for table in ("filter", "nat", "mangle"):
            rules = procs.run([ipt, "-w", "-t", table, "-S"], check=False).splitlines()
            for rule in rules:
                if rule.startswith("-A ") and "KUBE-" in rule and not rule.startswith("-A KUBE-"):
                    procs.run([ipt, "-w", "-t", table, "-D", *rule[3:].split()], check=False)
            chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
            for chain in chains:
                procs.run([ipt, "-w", "-t", table, "-F", chain], check=False)
            for chain in chains:
                procs.run([ipt, "-w", "-t", table, "-X", chain], check=False)
        procs.run(["ip", "link", "del", BRIDGE], check=False)
        for ns in procs.run(["ip", "netns", "list"], check=False).splitlines():
            name = ns.split()[0] if ns.strip() else ""
            if name.startswith("cni-"):
                procs.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(self.state / "cni" / "ipam", ignore_errors=True)

    def _cleanup_mounts(self) -> None:
        roots = (str(self.state), str(self.containerd_root), "/run/netns/cni-")
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
        for target in sorted(mounts, key=len, reverse=True):
            target = target.replace("\\040", " ")
            if target.startswith(roots):
                procs.run(["umount", "-l", target], check=False)

    def _cleanup_cgroups(self) -> None:
        base = Path("/sys/fs/cgroup")
        for controller in base.iterdir() if base.exists() else []:
            for root in (controller / "kubepods", controller / "kubepods.slice"):
                if root.is_dir():
                    for d in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                        if d.is_dir():
                            with contextlib.suppress(OSError):
                                os.rmdir(d)
                    with contextlib.suppress(OSError):
                        os.rmdir(root)

    # -- pods ------------------------------------------------------------------------------
    def _drain_pods(self) -> None:
        """Delete every pod through the API and let the kubelet stop them (runs CNI DEL)."""
        self.cp.kubectl(
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=0",
            "--force",
            "--wait=false",
            check=False,
            timeout=60,
        )
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and self._running_tasks():
            time.sleep(0.5)

    def _running_tasks(self) -> list[str]:
        if not self.socket.exists():
            return []
        lines = self.ctr("tasks", "list").splitlines()[1:]
        return [line.split()[0] for line in lines if line.split()[-1:] == ["RUNNING"]]

    def _remove_leftover_containers(self) -> None:
        if not self.socket.exists() or "containerd" not in procs.running(self.cp.state):
            return
        for task in self.ctr("tasks", "list", "-q").split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(1)
        for c in self.ctr("containers", "list", "-q").split():
            self.ctr("tasks", "delete", "-f", c, check=False)
            self.ctr("containers", "delete", c, check=False)
