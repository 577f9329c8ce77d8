#!/usr/bin/env bash
# Generate the synthetic data set and preprocess it into the training layout (medseg/phantom/pipeline.py).
#
#   bash scripts/prepare_synthetic.sh [DIR]            (default DIR=data/synthetic)
#
# Environment knobs: N_ACDC (default 100), N_MNMS (subjects per M&Ms vendor, default 20), DATA_SEED (seed of the
# synthetic subjects and the ACDC-C corruptions, default 0; not the training seed), WORKERS (default 2),
# ACDC_C_COPIES (corrupted copies per ACDC test subject and artefact, default 3 as published), SPACING_SCALE
# (default 1), PREVIEW (PNG path for a montage, default none), OVERWRITE=1 (regenerate and redo everything, also over
# folders without a provenance record), NO_PROGRESS=1 (hide progress bars).
# Result: DIR/raw/{ACDC,MnMs} (raw formats), DIR/ACDC, DIR/MM (+ vendors.csv), DIR/ACDC-C, each with a
# provenance.json saying what it was made from. Rerunning with the same knobs reuses everything (and rewrites files
# a full disk broke); other generator knobs (e.g. another DATA_SEED) need OVERWRITE=1, which rebuilds the affected
# folders, so raw and preprocessed data always match.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${1:-data/synthetic}"
PYTHON="${PYTHON:-python}"
if [ -n "${SEED:-}" ] && [ -z "${DATA_SEED:-}" ]; then
    echo "[prepare_synthetic] note: SEED=${SEED} is the training seed and is not used here; the data seed is" \
         "DATA_SEED (default 0)" >&2
fi
flags=()
[ "${NO_PROGRESS:-0}" = "1" ] && flags+=(--no-progress)
[ "${OVERWRITE:-0}" = "1" ] && flags+=(--overwrite)
[ -n "${PREVIEW:-}" ] && flags+=(--preview "$PREVIEW")

exec "$PYTHON" medseg/phantom/pipeline.py --out "$DIR" --n-acdc "${N_ACDC:-100}" \
    --n-mnms-per-vendor "${N_MNMS:-20}" --data-seed "${DATA_SEED:-0}" --workers "${WORKERS:-2}" \
    --acdc-c-copies "${ACDC_C_COPIES:-3}" --spacing-scale "${SPACING_SCALE:-1}" ${flags[@]+"${flags[@]}"}
