#!/usr/bin/env bash
# The CPU rehearsal of benchmarks/gpu_run.sh, at the smoke preset, from a fresh clone of this
# repository's committed state: a bare virtual environment holding only what the GPU image holds
# (torch, numpy, scipy, matplotlib, safetensors, tqdm), the same wheels and data layout
# (benchmarks/gpu_bundle.sh, for the image's Python and this one's), the same stages. It passes when
# every stage finished and what comes back fits the return channel: at most 8 files of at most 16 MiB
# that unpack to every chapter executed at smoke, the throughput tables and the runs' records.
#     bash benchmarks/gpu_rehearsal.sh        # about 20 minutes on two idle cores (budget: an hour)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$repo" "$work/repo"
cd "$work/repo"
host=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
PYTHONS="3.12 $host" bash benchmarks/gpu_bundle.sh
python3 -m venv "$work/bare"
"$work/bare/bin/pip" install --quiet "torch==2.13.0" numpy scipy matplotlib safetensors tqdm
PYTHON=$work/bare/bin/python PRESET=smoke BUDGET=3600 OUT=$work/out \
  THROUGHPUT_ARGS="--members 1,2 --hidden 16 --batch 4 --steps 2 --input 64" bash benchmarks/gpu_run.sh

files=("$work"/out/*)
(( ${#files[@]} <= 8 )) || { echo "rehearsal: ${#files[@]} files come back, at most 8 may" >&2; exit 1; }
for f in "${files[@]}"; do
  (( $(stat -c %s "$f") <= 16 * 1024 * 1024 )) || { echo "rehearsal: $f is over 16 MiB" >&2; exit 1; }
done
mkdir "$work/back"
cat "$work"/out/edition.tar.gz.part-* | tar xz -C "$work/back"
PYTHONPATH=. "$work/bare/bin/python" benchmarks/gpu_check_edition.py "$work/back" --preset smoke
