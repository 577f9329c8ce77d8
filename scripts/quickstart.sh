#!/usr/bin/env bash
# Quickstart on the embedded synthetic default, CPU-friendly:
#   1. generate synthetic cardiac cine MR in the raw ACDC / M&Ms formats and preprocess it (+ ACDC-C corruptions),
#   2. train standard and cooperative training with the same budget, data and seed (the quickstart budget of the
#      robustness experiment: config/experiment/quickstart.json, run 0 of the cpu budget: 75 epochs on a 2.73 mm grid),
#   3. test both on ACDC, ACDC-C and M&Ms (n_iter 1 and 2) and write the robustness table with its statistics.
# Usage: bash scripts/quickstart.sh [DATA_DIR] [SAVE_DIR]   (defaults: data/synthetic, saved/quickstart)
# Knobs (environment): SEED (training seed, default 40), DATA_SEED (seed of the synthetic data and of the ACDC-C
# corruptions, default 0), N_WORKERS (DataLoader worker processes, default 2), ACDC_C_COPIES (corrupted copies per
# ACDC test subject and artefact, default 3 as published; 1 makes the tests about twice as fast), JOBS (trainings/tests
# at once, each in its own process, default 2: both methods train side by side, the cores shared out between them),
# THREADS (torch threads per process; 1 on a machine busy with other jobs, where spinning threads waste CPU time),
# PYTHON (interpreter, default python).
# Rerunning reuses what is done: data made with the same knobs is kept, finished trainings and tests are not repeated.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-data/synthetic}
SAVE_DIR=${2:-saved/quickstart}
SEED=${SEED:-40}
DATA_SEED=${DATA_SEED:-0}
N_WORKERS=${N_WORKERS:-2}
ACDC_C_COPIES=${ACDC_C_COPIES:-3}
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-2}
THREADS_FLAG=()
[ -n "${THREADS:-}" ] && THREADS_FLAG=(--threads "${THREADS}")
start=$(date +%s)

echo "== [1/2] synthetic data (data seed ${DATA_SEED}) -> ${DATA_DIR}"
DATA_SEED="${DATA_SEED}" ACDC_C_COPIES="${ACDC_C_COPIES}" PYTHON="${PYTHON}" bash scripts/prepare_synthetic.sh "${DATA_DIR}"

echo "== [2/2] standard vs cooperative training and cross-domain test (quickstart budget, training seed ${SEED}) -> ${SAVE_DIR}"
"${PYTHON}" scripts/run_robustness_experiment.py --budget quickstart --runs "0:${SEED}" --data_root "${DATA_DIR}" \
    --out "${SAVE_DIR}" --n_workers "${N_WORKERS}" --jobs "${JOBS}" ${THREADS_FLAG[@]+"${THREADS_FLAG[@]}"}

end=$(date +%s)
RUNS="${SAVE_DIR}/runs/train_ACDC_10_n_cls_4/quickstart"
cat <<EOF

Done in $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s.

What the numbers are: mean Dice (0 = no overlap, 1 = perfect) between prediction and ground truth, over the LV cavity,
myocardium and RV cavity, per test set: ACDC = the training domain; RandomBias/Spike/Ghosting/Motion = ACDC test
scans with MR artefacts (ACDC-C); MM = other scanner vendors. avg_ood = mean over the out-of-domain sets. The
quickstart is one run of 75 epochs on a coarser grid, not the paper's 600 epochs (it is run 0 of the cpu budget): its
models segment the synthetic scans, but one run is not the paper comparison (three runs with statistics:
python scripts/run_robustness_experiment.py --budget cpu --jobs 3 --threads 1, results in docs/RESULTS.md).

Where things are:
  ${SAVE_DIR}/RESULTS.md                       the report: robustness table, per vendor, paired test, curves
  ${SAVE_DIR}/n_iter_2/summary.md, summary.csv   the robustness table of FTN + STN (n_iter_1: FTN alone)
  ${SAVE_DIR}/n_iter_2/dice_boxplot.png        per-patient Dice, one panel per test set, one box per method
  ${SAVE_DIR}/tests/<method>/cval0_seed${SEED}/iter_2/   per-patient reports and warnings.txt of one model
  ${RUNS}/<method>/0/model/best/checkpoints/   the trained networks (one .pth per module)
  ${RUNS}/<method>/0/log/metrics.csv           losses and validation scores per epoch
  ${SAVE_DIR}/data_2.73438mm/                  the data on the quickstart's grid (what was trained and tested on)
Curves: tensorboard --logdir ${SAVE_DIR}/runs
EOF
