#!/usr/bin/env bash
# Download and verify the zoo's pretrained weight files.
#
#   ./fetch_models.sh [NAME ...] [--base-url URL] [--cache-dir DIR]
#
# With no NAME, every model whose weights are published. The names, file names,
# URLs and sha256 hashes live in the model cards (zoo/*.json); this script only
# forwards its arguments to `tfboltz fetch` (or `python3 -m tfboltz.cli fetch` when
# the console script is not on PATH). TFBOLTZ_BASE_URL overrides the download
# server; TFBOLTZ_MODELS the destination directory. Exits non-zero on any failure.
set -euo pipefail

if command -v tfboltz >/dev/null 2>&1; then
    exec tfboltz fetch "$@"
else
    exec python3 -m tfboltz.cli fetch "$@"
fi
