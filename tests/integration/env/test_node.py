"""The node is real: pods run in containers, answer HTTP on their IPs, reach the apiserver."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from testenv.fixtures import KubeHandle

pytestmark = pytest.mark.node

BASE = "docker.io/hexagon/debian-base:bookworm"

STATEFULSET = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: web
        image: IMAGE
        imagePullPolicy: Never
        command: ["python3", "-c"]
        args:
        - |
          import http.server, os
          class H(http.server.BaseHTTPRequestHandler):
              def do_GET(self):
                  body = os.environ["HOSTNAME"].encode()
                  self.send_response(200); self.send_header("Content-Length", str(len(body)))
                  self.end_headers(); self.wfile.write(body)
          http.server.HTTPServer(("0.0.0.0", 8080), H).serve_forever()
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
""".replace("IMAGE", BASE)


def _apply(kube: KubeHandle, ns: str, manifest: str) -> None:
    import subprocess

    subprocess.run(
        ["kubectl", f"--kubeconfig={kube.kubeconfig}", "apply", "-n", ns, "-f", "-"],
        input=manifest,
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_statefulset_pods_serve_http_on_pod_ips(kube_node: KubeHandle) -> None:
    ns = kube_node.namespace("sts")
    _apply(kube_node, ns, STATEFULSET)
    kube_node.kubectl("rollout", "status", "statefulset/web", "-n", ns, "--timeout=120s")
    pods = json.loads(kube_node.kubectl("get", "pods", "-n", ns, "-l", "app=web", "-o", "json"))
    assert len(pods["items"]) == 2
    for pod in pods["items"]:
        assert pod["status"]["phase"] == "Running"
        ip = pod["status"]["podIP"]
        assert ip.startswith("10.244.0.")
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as resp:
            assert resp.read().decode() == pod["metadata"]["name"]


def test_pod_resolves_and_reaches_apiserver_via_kubernetes_service(kube_node: KubeHandle) -> None:
    ns = kube_node.namespace("svc")
    kube_node.kubectl(
        "create",
        "rolebinding",
        "view",
        "--clusterrole=view",
        f"--serviceaccount={ns}:default",
        "-n",
        ns,
    )
    script = (
        "import json, os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "import socket\n"
        "host = 'kubernetes.default.svc'\n"
        "print('resolved', socket.gethostbyname(host))\n"
        "ns = open(sa + '/namespace').read()\n"
        "req = urllib.request.Request(f'https://{host}/api/v1/namespaces/{ns}/pods',\n"
        "    headers={'Authorization': 'Bearer ' + open(sa + '/token').read()})\n"
        "ctx.check_hostname = True\n"
        "data = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))\n"
        "print('host', host, 'pods', len(data['items']))\n"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "c",
                    "image": BASE,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", script],
                }
            ],
        },
    }
    _apply(kube_node, ns, json.dumps(pod))
    deadline = time.monotonic() + 120
    phase = ""
    while time.monotonic() < deadline:
        phase = kube_node.kubectl(
            "get", "pod", "client", "-n", ns, "-o", "jsonpath={.status.phase}"
        )
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    logs = kube_node.kubectl("logs", "client", "-n", ns, check=False)
    assert phase == "Succeeded", logs
    # cluster DNS resolves the Service name, and the Service reaches the apiserver
    assert "resolved 10.96.0.1" in logs
    assert "host kubernetes.default.svc pods 1" in logs
