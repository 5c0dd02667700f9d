#!/usr/bin/env bash
# Everything the project needs on a fresh machine of this kind, idempotent and quick when already done:
# a virtual environment in .venv with the locked Python packages, and Kafka's jars from Maven Central.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing Python packages (locked by constraints.txt)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
    echo "$want" > "$stamp"
fi

echo "bootstrap: Kafka runtime from Maven Central"
.venv/bin/python -c "
from signalements.settings import Settings
from devkit.local_broker import ensure_kafka_runtime
print('bootstrap: Kafka jars in', ensure_kafka_runtime(Settings().kafka_runtime_dir))
"
