"""The control plane is real: CEL validation runs in the real kube-apiserver."""

from __future__ import annotations

import subprocess

import pytest

from testenv.fixtures import KubeHandle

pytestmark = pytest.mark.controlplane

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.hexagon.dev}
spec:
  group: smoke.hexagon.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              min: {type: integer}
              max: {type: integer}
            x-kubernetes-validations:
            - rule: "self.min <= self.max"
              message: "spec.min must not exceed spec.max"
"""


def _apply(
    kube: KubeHandle, manifest: str, ns: str | None = None
) -> subprocess.CompletedProcess[str]:
    args = ["kubectl", f"--kubeconfig={kube.kubeconfig}", "apply", "-f", "-"]
    if ns:
        args += ["-n", ns]
    return subprocess.run(args, input=manifest, capture_output=True, text=True, timeout=60)


def test_cel_rule_refuses_invalid_object(kube_api: KubeHandle) -> None:
    assert _apply(kube_api, CRD).returncode == 0
    kube_api.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.smoke.hexagon.dev", "--timeout=30s"
    )
    ns = kube_api.namespace("cel")
    good = _apply(
        kube_api,
        "apiVersion: smoke.hexagon.dev/v1\nkind: Widget\n"
        "metadata: {name: ok}\nspec: {min: 1, max: 2}\n",
        ns,
    )
    assert good.returncode == 0, good.stderr
    bad = _apply(
        kube_api,
        "apiVersion: smoke.hexagon.dev/v1\nkind: Widget\n"
        "metadata: {name: bad}\nspec: {min: 3, max: 2}\n",
        ns,
    )
    assert bad.returncode != 0
    assert "spec.min must not exceed spec.max" in bad.stderr
    assert kube_api.kubectl("get", "widgets", "-n", ns, "-o", "name").split() == [
        "widget.smoke.hexagon.dev/ok"
    ]


def test_rbac_is_enforced(kube_api: KubeHandle) -> None:
    ns = kube_api.namespace("rbac")
    kube_api.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    out = kube_api.kubectl(
        "auth",
        "can-i",
        "list",
        "pods",
        "-n",
        ns,
        f"--as=system:serviceaccount:{ns}:nobody",
        check=False,
    )
    assert out.strip() == "no"
