"""Real test environment: a Kubernetes control plane, a single node, Prometheus and images.

Everything here starts real programs (etcd, kube-apiserver, kubelet, containerd, Prometheus)
that the project's scripts installed; nothing is mocked. Used by the pytest fixtures in the
root conftest.py and by `make cluster-up` / `make cluster-down` through `python -m testenv`.
"""
