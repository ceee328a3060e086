#!/usr/bin/env bash
# test/run-long.sh: the long suite, what the test command (test/run-tests.sh)
# leaves out for time.  Every part is bounded by count and time, and
# asserts on what was done, never on how fast.
#
#   sudo test/run-long.sh               everything below, as root (servers
#                                       run as the unprivileged test user)
#   test/run-long.sh tap soak           only some parts: tap, soak, fuzz
#   PG_CONFIG=/path/to/pg_config test/run-long.sh     another major
#
# Parts:
#   tap   the TAP files with a long variant, as the test command runs them
#         (make installcheck in a copy of the tree, as the test user):
#           207_spoofing.pl with DBPG_SPOOF_NAMES=10000 (10 000 invented
#             names; the test command runs 500),
#           202_worker_faults.pl with DBPG_WORKER_KILLS=10 (10 terminations
#             of the worker during storms; the test command runs 3);
#   soak  test/soak/run-soak.sh --long (100 000 login/logout cycles);
#   fuzz  test/fuzz/run-fuzz.sh 900 (15 minutes of libFuzzer).
#
# Steps first, as in the test command: the Debian packages (skipped when
# present, or with DBPG_SKIP_APT=1), make WERROR=1 and make install (skip
# with DBPG_SKIP_BUILD=1 to use what is installed).
#
# Counts: one per TAP file, plus the soak's and the fuzzing's own counts.
# The last line is always "N passed, N failed"; the exit status is non-zero
# when anything failed.  On failure the copy of the tree (with tmp_check/log)
# is kept and its path printed.
#
# Environment: PG_CONFIG, DBPG_SKIP_APT, DBPG_SKIP_BUILD, DBPG_TEST_USER
# (see test/lib.sh); DBPG_SPOOF_NAMES, DBPG_WORKER_KILLS, DBPG_FUZZ_SECONDS
# override the sizes above; DBPG_LONG_TIMEOUT seconds per part (default
# 10800); DBPG_KEEP_TMP=1 keeps the copy after a passing run.

set -Eeuo pipefail

# shellcheck source=test/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DBPG_LONG_TIMEOUT=${DBPG_LONG_TIMEOUT:-10800}
SPOOF_NAMES=${DBPG_SPOOF_NAMES:-10000}
WORKER_KILLS=${DBPG_WORKER_KILLS:-10}
FUZZ_SECONDS=${DBPG_FUZZ_SECONDS:-900}
LONG_TAP_FILES="test/t/202_worker_faults.pl test/t/207_spoofing.pl"

parts=("$@")
if [ "${#parts[@]}" -eq 0 ]; then
	parts=(tap soak fuzz)
fi
for p in "${parts[@]}"; do
	case $p in
		tap | soak | fuzz) ;;
		*)
			echo "usage: $0 [tap] [soak] [fuzz]" >&2
			exit 2
			;;
	esac
done
want()
{
	local p
	for p in "${parts[@]}"; do
		[ "$p" = "$1" ] && return 0
	done
	return 1
}

dbpg_start_counts run-long.sh

# ---------------------------------------------------------------- prepare

dbpg_prepare dbpool_guard-long
LOGDIR=$WORKDIR/run-long-logs
mkdir -p "$LOGDIR"
dbpg_say "Long suite (${parts[*]}) in $WORKDIR as user $DBPG_RUN_USER"

# ---------------------------------------------------------------- TAP

if want tap; then
	dbpg_say "TAP, long variants: $LONG_TAP_FILES (DBPG_SPOOF_NAMES=$SPOOF_NAMES DBPG_WORKER_KILLS=$WORKER_KILLS)"
	rc=0
	dbpg_run_logged "$DBPG_LONG_TIMEOUT" "$LOGDIR/tap.log" env DBPG_SPOOF_NAMES="$SPOOF_NAMES" \
		DBPG_WORKER_KILLS="$WORKER_KILLS" \
		make --no-print-directory installcheck REGRESS= ISOLATION= \
		PROVE_TESTS="$LONG_TAP_FILES" || rc=$?
	p=0
	f=0
	tap_ok=" $(grep -E '^[^ ]+\.pl \.+ (ok|skipped)' "$LOGDIR/tap.log" | awk '{print $1}' | tr '\n' ' ' || true) "
	for t in $LONG_TAP_FILES; do
		if [[ "$tap_ok" == *" $t "* ]]; then
			p=$((p + 1))
		else
			f=$((f + 1))
			FAILED_NAMES+=("tap/$t")
			base=$(basename "$t" .pl)
			for lf in "$WORKDIR/tmp_check/log/regress_log_$base" "$WORKDIR/tmp_check/log/${base}"_*.log; do
				[ -f "$lf" ] || continue
				echo "--- ${lf#"$WORKDIR"/} (last 60 lines)"
				tail -n 60 "$lf"
			done
		fi
	done
	dbpg_add_counts tap 'TAP (long)' "$p" "$f" "$rc"
fi

# ---------------------------------------------------------------- soak

if want soak; then
	dbpg_say "Soak: test/soak/run-soak.sh --long"
	rc=0
	dbpg_run_logged "$DBPG_LONG_TIMEOUT" "$LOGDIR/soak.log" bash test/soak/run-soak.sh --long || rc=$?
	dbpg_count_suite soak "$LOGDIR/soak.log" "$rc"
fi

# ---------------------------------------------------------------- fuzz

if want fuzz; then
	dbpg_say "Fuzzing: test/fuzz/run-fuzz.sh $FUZZ_SECONDS"
	rc=0
	dbpg_run_logged "$DBPG_LONG_TIMEOUT" "$LOGDIR/fuzz.log" bash test/fuzz/run-fuzz.sh "$FUZZ_SECONDS" || rc=$?
	dbpg_count_suite fuzz "$LOGDIR/fuzz.log" "$rc"
fi

# ---------------------------------------------------------------- report

if [ "$FAILED" -eq 0 ] && [ "${DBPG_KEEP_TMP:-0}" != 1 ]; then
	rm -rf "$WORKDIR"
	WORKDIR=
fi
dbpg_summary
[ "$FAILED" -eq 0 ]
