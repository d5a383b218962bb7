#!/usr/bin/env bash
# Readies this checkout for bench/gpu.py (or bench/train.py) on the device tool's GPU machine,
# which has Python 3.12 and torch but no network: the CIFAR-10 JPEG copy goes to .data/ and the
# wheels of the dependencies its image lacks to .whl/ (both ignored by git, both named in the
# run's `carry`). Then, on the device, one call (about 6 minutes; carry .data and .whl):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:src MIAKIT_DATA=$PWD/.data PYTHONUNBUFFERED=1 &&
#   python3 bench/gpu.py --budget 420 --out $OUT 2>&1 | tee $OUT/gpu.txt
# bench/gpu.py --phases 1,3 reruns some phases; each phase is skipped when the budget left is
# below its estimate, so give --budget what the lease has left.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info .data/cifar10_jpeg_lossy .whl
for ignored in /.data/ /.whl/; do
    grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >>.git/info/exclude
done
cp -n ../shared/datasets/cifar10_jpeg_lossy/* .data/cifar10_jpeg_lossy/
pinned() { grep -i "^$1==" constraints.txt; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "$(pinned pydantic)" "$(pinned pydantic_core)" "$(pinned annotated-types)" \
    "$(pinned typing-inspection)" "$(pinned opacus)"
du -sh .data .whl
