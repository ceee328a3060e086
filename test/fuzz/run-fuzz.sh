#!/usr/bin/env bash
# test/fuzz/run-fuzz.sh SECONDS: build the libFuzzer harness for the
# budgets, exempt_roles and service_roles parsers (src/budgets.c) with
# AddressSanitizer and UndefinedBehaviorSanitizer, and fuzz for SECONDS.
#
#   test/fuzz/run-fuzz.sh 60        CI
#   test/fuzz/run-fuzz.sh 900       the long run quoted in docs/reliability.md
#
# Needs clang-14 and libclang-rt-14-dev (Debian 12).  Needs no server and
# may run as root.  The seed corpus (test/fuzz/corpus) is copied to a work
# directory first: the run never changes the tree.  Every seed is run
# before fuzzing starts, so a regression on a seed fails at once.
#
# Bounded by time (-max_total_time, and -timeout per input); the checks
# are on what was done, never on how fast: every seed ran (at least as
# many executions as seeds), and nothing crashed.  The number of
# executions in SECONDS depends on the machine and is only printed.
#
# Prints the executions, the time and the crashes, then "N passed, N failed"
# (one check: all seeds ran and nothing crashed); exits non-zero on a
# crash, on a run that did not get through the seeds, or a build failure.
# Crashing inputs are kept in the work directory, whose path is printed.
#
# Environment: CLANG (default clang-14, else clang), FUZZ_WORKDIR (default
# a new directory under $TMPDIR), FUZZ_JOBS (default 1; N > 1 runs libFuzzer
# -fork=N, which counts executions per job), FUZZ_ARGS (more libFuzzer flags).

set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
	echo "usage: $0 SECONDS" >&2
	exit 2
fi

CLANG=${CLANG:-}
if [ -z "$CLANG" ]; then
	if command -v clang-14 >/dev/null 2>&1; then
		CLANG=clang-14
	else
		CLANG=clang
	fi
fi
if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "fuzz: $CLANG not found; install clang-14 and libclang-rt-14-dev" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

work=${FUZZ_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/dbpool_guard-fuzz.XXXXXX")}
mkdir -p "$work/corpus" "$work/artifacts"
bin=$work/fuzz_budgets

echo "fuzz: building $bin with $("$CLANG" --version | head -n 1)"
# -fno-sanitize-recover: any undefined behaviour is a crash, not a message
if ! "$CLANG" -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-Wall -Wextra -Werror -Wno-unused-parameter \
	-I"$root/src" \
	"$here/fuzz_budgets.c" "$root/src/budgets.c" -o "$bin"; then
	echo "fuzz: build failed (needs clang-14 and libclang-rt-14-dev)" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

cp "$here"/corpus/* "$work/corpus/"
seeds=$(find "$here/corpus" -type f | wc -l)

jobs=${FUZZ_JOBS:-1}
fork=()
if [ "$jobs" -gt 1 ]; then
	fork=(-fork="$jobs" -ignore_crashes=0)
fi

log=$work/fuzz.log
echo "fuzz: $seeds seeds, $seconds s, $jobs job(s); log $log"
start=$(date +%s.%N)
rc=0
# shellcheck disable=SC2086
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	"$bin" "${fork[@]}" \
	-max_total_time="$seconds" \
	-max_len=4096 \
	-timeout=10 \
	-rss_limit_mb=2048 \
	-print_final_stats=1 \
	-dict="$here/budgets.dict" \
	-artifact_prefix="$work/artifacts/" \
	${FUZZ_ARGS:-} \
	"$work/corpus" >"$log" 2>&1 || rc=$?
end=$(date +%s.%N)

# Executions: "Done N runs in S second(s)" (one process), or the last
# "#N" status line (fork mode and crashes).
runs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/p' "$log" | tail -n 1)
if [ -z "$runs" ]; then
	runs=$(sed -nE 's/^#([0-9]+):?[[:space:]].*/\1/p' "$log" | tail -n 1)
fi
runs=${runs:-0}
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
cov=$(sed -nE 's/^#[0-9]+:?[[:space:]].*cov: ([0-9]+) ft: ([0-9]+).*/\1 edges, \2 features/p' "$log" | tail -n 1)
corpus_n=$(find "$work/corpus" -type f | wc -l)
crashes=$(find "$work/artifacts" -type f | wc -l)
if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
	crashes=1				# a crash libFuzzer could not save, or a sanitizer abort
fi
rate=$(awk -v r="$runs" -v s="$elapsed" 'BEGIN { printf "%.0f", (s > 0 ? r / s : r) }')

echo "fuzz: executions $runs, time ${elapsed} s ($rate/s), crashes $crashes"
echo "fuzz: coverage ${cov:-unknown}; corpus $seeds seeds -> $corpus_n inputs"
if [ "$crashes" -gt 0 ]; then
	echo "fuzz: FAILED (libFuzzer exit status $rc); inputs in $work/artifacts:" >&2
	find "$work/artifacts" -type f -printf '  %p\n' >&2
	grep -E -A30 'ERROR: |runtime error|check failed|deadly signal' "$log" | head -n 60 >&2 || true
	echo "0 passed, 1 failed"
	exit 1
fi
# one process: the executions include every seed (fork mode counts per job)
min_runs=$seeds
if [ "$jobs" -gt 1 ]; then
	min_runs=1
fi
if [ "$runs" -lt "$min_runs" ]; then
	echo "fuzz: FAILED: $runs executions, fewer than the $min_runs seeds to run (libFuzzer exit status $rc); log $log" >&2
	tail -n 20 "$log" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
if [ -z "${FUZZ_WORKDIR:-}" ]; then
	rm -rf "$work"
fi
echo "1 passed, 0 failed"
