#!/usr/bin/env bash
# Quickstart on the embedded synthetic default, CPU-friendly:
#   1. generate synthetic cardiac cine MR in the raw ACDC / M&Ms formats and preprocess it (+ ACDC-C corruptions),
#   2. train the quickstart cooperative and standard configs,
#   3. test both on ACDC, ACDC-C and M&Ms and print the robustness table.
# Usage: bash scripts/quickstart.sh [DATA_DIR] [SAVE_DIR]   (defaults: data/synthetic, saved/quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-data/synthetic}
SAVE_DIR=${2:-saved/quickstart}
SEED=${SEED:-40}
N_WORKERS=${N_WORKERS:-2}
start=$(date +%s)

echo "== [1/3] synthetic data -> ${DATA_DIR}"
# One corrupted copy per ACDC-C case keeps the quickstart within its CPU budget (the published set has 3:
# ACDC_C_COPIES=3 bash scripts/quickstart.sh).
ACDC_C_COPIES="${ACDC_C_COPIES:-1}" bash scripts/prepare_synthetic.sh "${DATA_DIR}"

echo "== [2/3] training (quickstart budget, CPU) -> ${SAVE_DIR}"
for cfg in cooperative_training standard_training; do
    python medseg/train_adv_supervised_segmentation_triplet.py \
        --json_config_path "./config/quickstart/${cfg}.json" --cval 0 --data_setting 10 --log --seed "${SEED}" \
        --n_workers "${N_WORKERS}" --save_dir "${SAVE_DIR}" --set "data.root_dir=${DATA_DIR}/ACDC" --resume auto
done

echo "== [3/3] cross-domain test (ACDC, ACDC-C, M&Ms)"
python medseg/test_ACDC_triplet_segmentation.py --runs_dir "${SAVE_DIR}" --data_root "${DATA_DIR}" \
    --output_dir "${SAVE_DIR}/test_reports" --n_iter 2

end=$(date +%s)
echo
echo "Done in $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s."
echo "Checkpoints:  ${SAVE_DIR}/train_ACDC_10_n_cls_4/quickstart/*/0/model/best/checkpoints/"
echo "TensorBoard:  tensorboard --logdir ${SAVE_DIR}"
echo "Reports:      ${SAVE_DIR}/test_reports/summary.md"
