#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra args go to pytest
# (e.g. -m "not smollm2" to skip the real-model integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
