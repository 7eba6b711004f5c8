#!/bin/sh
# Run the benchmark with the project's venv: bench/run.sh [--quick] [--out FILE]
cd "$(dirname "$0")/.." || exit 1
exec "${PYTHON:-.venv/bin/python}" -m bench "$@"
