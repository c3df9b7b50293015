#!/usr/bin/env bash
# On a CUDA machine: make the toy model's expected values there, measure how far the CPU is
# from the GPU, and grade the reference solutions on both against those values.
#   bash benchmarks/gpu_check.sh OUTDIR
# Needs transformer-lens 4.x and pytest-check importable. On a machine without network, carry
# their wheels (and datasets, dill, multiprocess, fancy-einsum, beartype, typeguard) but use the
# machine's own transformers and huggingface_hub: huggingface_hub 2.x needs httpx2/httpcore2.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUTDIR}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
run() { echo "\$ $*"; "$@"; echo "(exit $?)"; }
{
  run nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  run python -c "import torch, transformers, transformer_lens as tl, importlib.metadata as md; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'transformer-lens', md.version('transformer-lens'))"
  run python benchmarks/compare_devices.py --model toy-gpt2 --device cuda
  run python -m grader fixtures refresh --model toy-gpt2 --device cuda
  run python -m grader fixtures check --model toy-gpt2 --device cuda
  run python -m grader fixtures check --model toy-gpt2 --device cpu
  run python -m grader grade --solutions --model toy-gpt2 --device cuda --report-html "$out/report_cuda.html" --gradescope-json "$out/results_cuda.json"
  run python -m grader grade --model toy-gpt2 --device cuda --report-html "" --gradescope-json "$out/results_stubs_cuda.json"
} 2>&1 | tee "$out/gpu_check.log"
cp fixtures/toy-gpt2/*.json "$out/" 2>/dev/null || true
