#!/usr/bin/env bash
# The checks that need a CUDA GPU, which CI (CPU only) cannot run: the base model, engine, training, adapter and
# recipe-choice tests with every model on the GPU; the bitsandbytes 8-bit and 4-bit bases; the serving and training
# benchmarks; and, given a data set, whole-task training (the recipe choice included) scored by `localize eval`.
#
#   bash scripts/gpu_check.sh OUT_DIR [DATA_DIR]
#
# Needs localize and its `quant` extra (bitsandbytes) importable by $PYTHON (default python3). Writes gpu.txt,
# pytest.log, bench.log, speed.md, bench.json and, with DATA_DIR, eval.log, accuracy.md and eval.json to OUT_DIR.
set -u
out=${1:?usage: scripts/gpu_check.sh OUT_DIR [DATA_DIR]}
data=${2:-}
python=${PYTHON:-python3}
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
} > "$out/gpu.txt" 2>&1
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA GPU is visible to $python: nothing to check here" | tee -a "$out/gpu.txt"
    exit 1
fi

# Whole-task training runs beside the tests (they share the GPU; neither is timed against the other).
if [ -n "$data" ]; then
    ( timeout 420 "$python" -m localize.cli eval --data "$data" --report "$work/eval" --quick --out "$out/eval.json" \
        > "$out/eval.log" 2>&1; echo "exit status $?" >> "$out/eval.log" ) &
    eval_pid=$!
fi

timeout 240 "$python" -m pytest -q -p no:cacheprovider \
    tests/localize/test_base_model.py tests/localize/test_engine.py tests/localize/test_training.py \
    tests/localize/test_epoch_loop.py tests/localize/test_batcher.py tests/localize/test_activations.py \
    tests/localize/test_bert.py tests/localize/test_calibration.py tests/localize/test_bench.py \
    tests/localize/test_recipe_choice.py tests/localize/test_demo.py tests/adapters > "$out/pytest.log" 2>&1
echo "exit status $?" >> "$out/pytest.log"

if [ -n "$data" ]; then
    wait "$eval_pid"
    cp "$work/eval/accuracy.md" "$out/" 2>/dev/null
fi

# Alone on the GPU, so that its timings are its own.
timeout 240 "$python" -m localize.cli bench --only bnb,mixed_batch,fanout,train --report "$work/bench" \
    > "$out/bench.log" 2>&1
echo "exit status $?" >> "$out/bench.log"
cp "$work/bench/speed.md" "$work/bench/bench.json" "$out/" 2>/dev/null
rm -rf "$work"
