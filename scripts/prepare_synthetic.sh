#!/usr/bin/env bash
# Generate the synthetic data set and preprocess it into the training layout.
#
#   bash scripts/prepare_synthetic.sh [DIR]            (default DIR=data/synthetic)
#
# Environment knobs: N_ACDC (default 100), N_MNMS (subjects per M&Ms vendor, default 20), SEED (default 0),
# WORKERS (default 2), ACDC_C_COPIES (corrupted copies per ACDC test subject and artefact, default 3 as published),
# PREVIEW (PNG path for a montage, default none), OVERWRITE=1 (redo preprocessed subjects),
# NO_PROGRESS=1 (hide progress bars).
# Result: DIR/raw/{ACDC,MnMs} (raw formats), DIR/ACDC, DIR/MM (+ vendors.csv), DIR/ACDC-C.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${1:-data/synthetic}"
PYTHON="${PYTHON:-python}"
progress=()
[ "${NO_PROGRESS:-0}" = "1" ] && progress=(--no-progress)
overwrite=()
[ "${OVERWRITE:-0}" = "1" ] && overwrite=(--overwrite)
preview=()
[ -n "${PREVIEW:-}" ] && preview=(--preview "$PREVIEW")

start=$SECONDS
"$PYTHON" scripts/make_synthetic_data.py --out "$DIR" --n-acdc "${N_ACDC:-100}" \
    --n-mnms-per-vendor "${N_MNMS:-20}" --seed "${SEED:-0}" --workers "${WORKERS:-2}" \
    ${preview[@]+"${preview[@]}"} ${progress[@]+"${progress[@]}"}
echo "[prepare_synthetic] generation: $((SECONDS - start)) s"

step=$SECONDS
"$PYTHON" medseg/dataset_loader/acdc_preprocess.py --input "$DIR/raw/ACDC" --output "$DIR/ACDC" \
    ${overwrite[@]+"${overwrite[@]}"} ${progress[@]+"${progress[@]}"}
"$PYTHON" medseg/dataset_loader/mnms_preprocess.py --input "$DIR/raw/MnMs" --output "$DIR/MM" \
    ${overwrite[@]+"${overwrite[@]}"} ${progress[@]+"${progress[@]}"}
echo "[prepare_synthetic] preprocessing: $((SECONDS - step)) s"

step=$SECONDS
"$PYTHON" medseg/dataset_loader/generate_artefacted_data.py --input "$DIR/ACDC" --output "$DIR/ACDC-C" \
    --copies "${ACDC_C_COPIES:-3}" --seed "${SEED:-0}" ${overwrite[@]+"${overwrite[@]}"}
echo "[prepare_synthetic] ACDC-C: $((SECONDS - step)) s"
echo "[prepare_synthetic] done in $((SECONDS - start)) s: $DIR/{raw,ACDC,MM,ACDC-C}"
