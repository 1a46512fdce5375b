#!/usr/bin/env bash
# The scheduler at scale (issue 4): 10,000 nodes x 4 slots, 1,000,000 tasks, in the sans-IO core.
# Prints one JSON line: memory per queued task, scheduling decisions per second (each one a full
# task completion and placement through Core::apply), and the same number of decisions done by
# the least possible work (a FIFO queue and a free-slot stack) in the same run, with the ratio.
#
#   bash bench/scheduler_scale.sh                 # defaults
#   NODES=2000 TASKS=200000 bash bench/scheduler_scale.sh
#   PROFILE=release bash bench/scheduler_scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
if [ "${PROFILE:-dev}" = "release" ]; then args+=(--release); fi
OPENBATCH_BENCH_NODES="${NODES:-10000}" OPENBATCH_BENCH_TASKS="${TASKS:-1000000}" \
  cargo test "${args[@]}" -q -p openbatch-core --test simulation bench_scheduler_scale \
  -- --ignored --nocapture 2>&1 | grep '^{'
