#!/usr/bin/env bash
# The book's GPU edition in one command, on a bare machine that has torch, numpy, scipy, matplotlib,
# safetensors and tqdm but no network. It needs the wheels and datasets that benchmarks/gpu_bundle.sh
# gathers (.whl/, .gpu-data/). It installs the wheels, then runs each stage under a deadline that
# leaves the later stages their time (BUDGET seconds in all):
#   (a) throughput at the paper's MNIST shape: the loop of cuDNN networks against the ensemble (eager
#       fp32, compiled fp32, compiled bf16) for E = 160, 40, 10, 1, GRU then LSTM (rows until a deadline);
#   (b) the campaign at PRESET on each of DATASETS: train, evaluate, slow points, formation, fine-tunes;
#   (c) every chapter executed at PRESET by papermill (the scorecard before the long ablation chapter);
#   (d) always, even after a failure: the executed chapters, the runs' JSON records, the tables and
#       the logs packed into edition.tar.gz.part-* (parts of 15 MiB), beside gpu_run.log and the two
#       throughput tables in OUT (at most 8 files come back).
# Unpack what comes back with `cat OUT/edition.tar.gz.part-* | tar xz` in the repository root.
# Rehearse it on a CPU first: benchmarks/gpu_rehearsal.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PRESET=${PRESET:-gpu}
DATASETS=${DATASETS:-mnist-5k,fashion-mnist}
BUDGET=${BUDGET:-530}
# the largest ensemble first: its row is the headline (network-steps/s and the ratio to cuDNN)
THROUGHPUT_ARGS=${THROUGHPUT_ARGS:---members 160,40,10,1 --hidden 200 --batch 128 --steps 20 --fast}
OUT=${OUT:-gpu-results}
mkdir -p "$OUT" runs
OUT=$(cd "$OUT" && pwd)
LOGS=runs/gpu-logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
export MEMRNN_DATA=${MEMRNN_DATA:-$PWD/.gpu-data} PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
start=$(date +%s)
failed=()

say() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/gpu_run.log"; }

# stage NAME KEEP CMD...: run CMD (its output in $LOGS/NAME.log) until KEEP seconds of BUDGET are left
stage() {
  local name=$1 keep=$2; shift 2
  local limit=$(( BUDGET - ($(date +%s) - start) - keep ))
  if (( limit < 10 )); then say "$name: skipped, no time left"; failed+=("$name"); return 1; fi
  say "$name: started, at most $limit s"
  timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  say "$name: $([ $rc = 0 ] && echo done || echo "stopped (exit $rc)"); $(tail -n 1 "$LOGS/$name.log" | tr '\r' '\n' | tail -n 1)"
  [ $rc = 0 ] || failed+=("$name")
  return $rc
}

pack() {
  say "pack: the chapters executed at $PRESET, the runs' JSON records, the tables and the logs"
  "$PYTHON" - "$PRESET" <<'EOF' > runs/gpu-pack.txt
import json, pathlib, sys
preset = sys.argv[1]
for notebook in sorted(pathlib.Path("book").glob("*.ipynb")):
    if json.loads(notebook.read_text()).get("metadata", {}).get("memrnn", {}).get("preset") == preset:
        print(notebook)
for record in sorted(pathlib.Path("runs").rglob("*.json")):
    if "checkpoints" not in record.parts:
        print(record)
EOF
  find "$LOGS" -type f >> runs/gpu-pack.txt
  tar czf - -T runs/gpu-pack.txt | split --bytes=15M --suffix-length=1 - "$OUT/edition.tar.gz.part-"
  local parts; parts=$(ls "$OUT"/edition.tar.gz.part-* | wc -l)
  say "pack: $(grep -c ipynb runs/gpu-pack.txt) chapters, $(wc -l < runs/gpu-pack.txt) files in $parts part(s)"
  (( $(ls "$OUT" | wc -l) <= 8 )) || say "pack: more than 8 files in $OUT, not all will come back"
  say "${#failed[@]} stage(s) not finished${failed[*]:+: ${failed[*]}}"
}
trap pack EXIT

say "preset $PRESET on $DATASETS; budget $BUDGET s; $("$PYTHON" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")')"
stage install 500 "$PYTHON" -m pip install --no-index --find-links .whl --no-cache-dir --no-compile \
  papermill jupytext nbformat ipykernel "pooch>=1.6" "dask[distributed]>=2025.4" || exit 1
"$PYTHON" -m memrnn config --preset "$PRESET" > "$LOGS/config.txt" 2>&1

stage throughput-gru 380 "$PYTHON" benchmarks/train_throughput.py --arch gru $THROUGHPUT_ARGS --deadline 90
stage throughput-lstm 340 "$PYTHON" benchmarks/train_throughput.py --arch lstm $THROUGHPUT_ARGS --deadline 10
cp "$LOGS"/throughput-*.log "$OUT"/ 2>/dev/null

IFS=, read -r -a datasets <<< "$DATASETS"
for dataset in "${datasets[@]}"; do
  # the first dataset feeds the chapters: its campaign leaves them 180 s, the others' 120 s
  keep=$([ "$dataset" = "${datasets[0]}" ] && echo 180 || echo 120)
  stage "campaign-$dataset" $keep "$PYTHON" -m memrnn campaign --preset "$PRESET" --dataset "$dataset" \
    --archs gru,lstm --protocols decu,vocu,none --out runs
done

chapters=01_task,02_extrapolation,03_slowpoints,04_speed_predicts_memory,05_formation,06_regularization,07_beyond,scorecard,08_choices,09_own_network
stage chapters 15 "$PYTHON" -m memrnn book run --preset "$PRESET" --chapters $chapters --set ensembles=1 --no-build
(( ${#failed[@]} == 0 ))
