#!/usr/bin/env bash
# Creates .venv with the locked dependencies and the project installed editable.
# Idempotent: re-syncs only when requirements.lock or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
PY=${PYTHON:-python3}
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  echo "==> installing uv $UV_VERSION from PyPI"
  "$PY" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
stamp=.venv/.hexagon-stamp
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "==> syncing .venv from requirements.lock"
[ -d .venv ] || uv venv -q --python "$PY" .venv
uv pip sync -q --python .venv/bin/python requirements.lock
uv pip install -q --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
