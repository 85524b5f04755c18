#!/usr/bin/env bash
# Prints the interpreter the project's environment is built with: Python 3.13, Colab's version
# (constraints/colab-gpu.txt names it). Looks at pyenv's versions first (its shims on PATH fail for
# versions that are not selected), then python3.13 on PATH. Without one it prints python3 and
# warns on stderr: the tests then do not run on Colab's Python.
set -u
wanted="${1:-3.13}"
candidates=()
for path in $(ls -d "$HOME"/.pyenv/versions/"$wanted".*/bin/python"$wanted" 2>/dev/null | sort -V -r); do
  candidates+=("$path")
done
if command -v "python$wanted" >/dev/null 2>&1; then candidates+=("$(command -v "python$wanted")"); fi
for candidate in "${candidates[@]}"; do
  if "$candidate" -c "pass" >/dev/null 2>&1; then
    echo "$candidate"
    exit 0
  fi
done
echo "WARNING: no Python $wanted found (Colab's version); building with python3 ($(python3 --version 2>&1)) instead." >&2
command -v python3
