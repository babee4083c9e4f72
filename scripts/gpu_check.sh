#!/usr/bin/env bash
# The accelerator check, in one short run on a machine with a GPU and JAX's CUDA plugin
# (`pip install -e ".[test,cuda]"` brings it for CUDA 13; `.[test,cuda12]` for CUDA 12 drivers):
#   1. the whole test suite on the GPU (JAX_PLATFORMS=cuda: every test runs there; CPU-only
#      checks skip themselves),
#   2. the benchmark at R1 and R2, both workloads (cross-entropy; dense cotangents on both outputs),
#      every single-layer variant (time-major entry, masks, the fused head, Flax with and without
#      seq_lengths), the long-sequence (checkpointing) figure, the 2-layer bidirectional stack
#      (rnn_stack, with masks, autodiff, Flax nn.Bidirectional), bfloat16, time at T and 4T, and
#      first-call compile time; PyTorch's cuDNN RNN (single layer and the stack) when torch with
#      CUDA is installed, its CPU build otherwise.
# Results (pytest log, bench.md, bench.json, bench.png) go to the folder given as $1
# (default gpu-results). `--dry-run` checks the script itself where no GPU is present: it
# collects the tests (without running them) and runs the benchmark on the CPU at tiny sizes:
# the same tables, with fewer variants (tests/test_bench.py checks each variant).
#
#   bash scripts/gpu_check.sh [OUT_DIR] [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."

out=gpu-results
dry_run=false
for argument in "$@"; do
  case "$argument" in
    --dry-run) dry_run=true ;;
    -*) echo "gpu_check.sh: unknown option $argument" >&2; exit 2 ;;
    *) out=$argument ;;
  esac
done
mkdir -p "$out"

# The test extra where the package index is reachable; the package alone where it is not
# (tests of optional integrations skip themselves when their library is missing).
python3 -c "import jaxrnn" 2>/dev/null || python3 -m pip install -q -e ".[test]" || python3 -m pip install -q --no-deps -e .

# One process: pytest-xdist's workers would each claim most of the GPU's memory (and the package may
# be installed without the test extra, so without pytest-xdist): pyproject's addopts less `-n`.
one_process=(-o "addopts=-ra -m 'not slow'")
if $dry_run; then
  export JAX_PLATFORMS=cpu
  tests=(python3 -m pytest -q --collect-only "${one_process[@]}")
  bench=(
    --configs 3:8:4:2:6 --repeats 2 --workload dense --variants hand,hand-masked,flax,flax-masked,torch
    --long-config 3:16:4:2:40 --checkpoint-every 10 --stack-config 3:8:2:6:2 --linearity-config 3:8:4:2:10
    --compile-config 3:8:2 --compile-lengths 6 --compile-layers 1,2 --compile-repeats 1
  )
  torch_device=cpu
else
  export JAX_PLATFORMS=cuda
  python3 -c "import jax; jax.devices('gpu')" || {
    echo "gpu_check.sh: JAX sees no GPU (its CUDA plugin: pip install -e \".[cuda]\" for CUDA 13, \".[cuda12]\" for 12)" >&2
    exit 1
  }
  tests=(python3 -m pytest -x -q "${one_process[@]}")
  bench=(--configs R1,R2 --repeats 20 --checkpoint-every 50 --compile-repeats 3)
  torch_device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo cpu)
fi

python3 - <<'PY' | tee "$out/devices.txt"
import jax
print("jax", jax.__version__, "devices:", jax.devices())
PY
# A test failure must not cost the benchmark: record it, run the benchmark, fail at the end.
# The benchmark exits 1 when a variant's loss or gradients disagree with the oracle (its
# tables mark the row MISMATCH), after writing its results.
set +e -o pipefail
"${tests[@]}" 2>&1 | tee "$out/pytest.log"
tests_status=$?
python3 -m jaxrnn bench "${bench[@]}" --long --stack --bf16 --linearity --compile-time \
  --torch-device "$torch_device" --out "$out"
bench_status=$?
set -e
echo "gpu_check.sh: results in $out/ (tests exit status $tests_status, benchmark $bench_status)"
[ "$tests_status" -eq 0 ] && exit "$bench_status"
exit "$tests_status"
