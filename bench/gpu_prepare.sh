#!/usr/bin/env bash
# Readies this checkout for bench/train.py on the device tool's GPU machine, which has Python 3.12
# and torch but no network: the CIFAR-10 JPEG copy goes to .data/ and the wheels of the
# dependencies its image lacks to .whl/ (both ignored by git, both named in the run's `carry`).
# Then, on the device (one call, about 10 minutes):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   PYTHONPATH=/tmp/site:src MIAKIT_DATA=.data PYTHONUNBUFFERED=1 \
#     python3 bench/train.py --models 0 | tee $OUT/train.txt
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
