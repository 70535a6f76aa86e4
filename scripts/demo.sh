#!/usr/bin/env bash
# Set up (if needed) and run the main job: `nex demo` on the bundled zoo. Extra args go to `nex demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/nex demo -o "${NEX_DEMO_OUT:-out/demo}" "$@"
