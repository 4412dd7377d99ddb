#!/usr/bin/env bash
# GPU check: does this worker train on its GPUs, and how fast?
#
# Trains the `gpu` profile for a fixed small budget on generated data (nothing downloaded)
# and prints images/s and test accuracy (see benchmarks/gpu_check.py for what each number
# means). Exits 3 when TensorFlow sees no GPU.
#
#   infra/gpu-check.sh                         # 5 epochs x 20,000 images, gpu profile
#   infra/gpu-check.sh --epochs 10 --out /tmp/gpu-check.json
#   infra/gpu-check.sh --dry-run               # imports + devices + plan, no training
#   infra/gpu-check.sh --profile smoke --epochs 1 --train-images 256 --test-images 100 --allow-cpu
#   docker run --rm --gpus all relabel-gpu:0.1.0 infra/gpu-check.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The repository's virtualenv when there is one (a checkout), else the image's python.
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python; fi
fi

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader \
    || echo "warning: nvidia-smi failed; the driver may not be mounted into this container" >&2
else
  echo "nvidia-smi: not found (fine in a container without the utility capability)" >&2
fi

exec "$python" benchmarks/gpu_check.py "$@"
