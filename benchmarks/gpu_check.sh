#!/usr/bin/env bash
# The GPU measurements of the fast path, in one script: training throughput of the loop of single
# torch.nn networks, the eager ensemble and the compiled bf16 ensemble at the paper's MNIST shape
# (H = 200, batch 128, 20 frames of 784 pixels + trigger) for E = 1, 40, 160, GRU and LSTM; then a
# shortened paper campaign (1/10 of the steps) in float32 and on the fast path, with accuracies,
# to project the full campaign's time. Writes everything under ${OUT:-gpu-results}. The dataset
# (DATASET, default mnist) must be reachable offline: put its files in MEMRNN_DATA.
set -euo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
for arch in gru lstm; do
  python benchmarks/train_throughput.py --arch $arch --members 1,40,160 --hidden 200 --batch 128 \
    --steps 20 --fast | tee "$out/throughput-$arch.txt"
done
for fast in false true; do
  /usr/bin/time -v memrnn grid --preset paper --dataset "${DATASET:-mnist}" --archs gru,lstm --protocols decu,vocu --seeds 10 \
    --set steps=14000 --set fast=$fast --out "$out/runs" --quiet 2>&1 | tee "$out/campaign-fast-$fast.txt"
done
