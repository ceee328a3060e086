#!/usr/bin/env bash
# Suite: fuzz the GUC parsers (src/budgets.c) for 60 seconds with
# libFuzzer, ASan and UBSan; every seed of test/fuzz/corpus runs first.
# Bounded by time (-max_total_time); passes when every seed ran and
# nothing crashed, however many executions the machine managed.
# DBPG_FUZZ_SECONDS overrides the duration.
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$here/../fuzz/run-fuzz.sh" "${DBPG_FUZZ_SECONDS:-60}"
