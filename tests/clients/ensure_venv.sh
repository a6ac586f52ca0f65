#!/usr/bin/env bash
# Creates (once) the virtual environment the client compatibility tests run in:
# .venv/clients at the repository root, with the official `ollama` and `openai` Python
# packages installed by pip from the default package index. Prints the interpreter's path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv/clients"
python="$venv/bin/python"
if ! "$python" -c 'import ollama, openai' >/dev/null 2>&1; then
    python3 -m venv "$venv" >&2
    "$python" -m pip install --quiet --disable-pip-version-check ollama openai >&2
fi
echo "$python"
