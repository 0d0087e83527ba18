#!/usr/bin/env bash
# nbval over every notebook under other BLAS kernels and thread counts: the committed outputs must not depend on them.
#   tools/check_reproducible.sh            (after make env; about 2 minutes per configuration)
# OPENBLAS_CORETYPE selects the kernel of numpy's and scipy's bundled OpenBLAS (a DYNAMIC_ARCH build) on x86-64.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONHASHSEED=0
status=0
run() {
  local label=$1; shift
  local start=$SECONDS
  if env "$@" .venv/bin/python -m pytest notebooks --nbval-lax --nbval-current-env \
       --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -q > "build/reproducible-$label.log" 2>&1; then
    echo "PASS  $label  ($((SECONDS - start)) s): $(tail -1 "build/reproducible-$label.log")"
  else
    echo "FAIL  $label  ($((SECONDS - start)) s): see build/reproducible-$label.log"; status=1
  fi
}
mkdir -p build
run threads-1           OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1
run threads-2           OMP_NUM_THREADS=2 NUMBA_NUM_THREADS=2
run kernel-Haswell      OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell
run kernel-SandyBridge  OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_CORETYPE=SandyBridge
run kernel-Prescott     OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_CORETYPE=Prescott
exit $status
