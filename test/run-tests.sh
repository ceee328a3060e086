#!/usr/bin/env bash
# test/run-tests.sh: the one test command (README; .ci/run calls it).
#
#   sudo test/run-tests.sh          as root on Debian 12 (or run it as root)
#   test/run-tests.sh               as a user: sudo only for apt and install
#   PG_CONFIG=/path/to/pg_config test/run-tests.sh     another major
#
# Steps:
#   1. install the packages in test/debian-packages.txt (apt-get update +
#      install --no-install-recommends; skipped when all are present);
#   2. make WERROR=1, make install (for $PG_CONFIG, default pg_config);
#   3. copy the tree to a temporary directory owned by an unprivileged user
#      (dbpg_test, created if needed, when run as root; yourself otherwise)
#      and run, as that user, `make installcheck` in two halves so that a
#      pg_regress failure does not hide the TAP results:
#        make installcheck TAP_TESTS=        pg_regress (sql/, expected/)
#        make installcheck REGRESS=          prove on test/t/*.pl
#      As root, the TAP half runs in a network namespace of its own
#      (unshare -n) where lo is up and also carries fe80::1/64, with
#      DBPG_NETNS=1 set: test/t/208_client_addr.pl needs a link-local peer,
#      and only root can add that address.  Every TAP test talks to
#      loopback only, so nothing else changes for them.  Without root or a
#      working `unshare -n`, the TAP half runs as before and 208 skips;
#      under CI=true as root that is a failure, never a silent skip.
#   4. run every executable test/suites/*.sh, as that user, from the copy.
#      A suite gets PG_CONFIG, PATH (server binaries first), DBPG_TREE (the
#      copy) and CI; it ends with its own "N passed, N failed" line and a
#      non-zero exit status when anything failed.
#   5. test the Debian package (test/package/run-package-test.sh), as the
#      caller: META.json is checked with JSON::PP; as root, the package is
#      built from a clean copy of the tree as the test user, installed and
#      tried (CREATE EXTENSION, one admission, one refusal) in a private
#      mount namespace whose overlays leave the machine as it was.  Not
#      root: META.json only, the rest a skip (a failure under CI=true).
#
# Counts: one per pg_regress test, one per TAP test file, plus each suite's
# own counts.  The last line is always "N passed, N failed"; the exit status
# is non-zero when anything failed.  On failure, regression.diffs and the
# tails of the TAP logs are printed and the copy is kept.
#
# Environment: PG_CONFIG, DBPG_SKIP_APT=1, DBPG_TEST_USER (see test/lib.sh);
# CI=true makes the checks listed under CI_NO_SKIP below mandatory;
# DBPG_TEST_TIMEOUT seconds per step (default 1200); DBPG_KEEP_TMP=1 keeps
# the copy after a passing run.

set -Eeuo pipefail

# shellcheck source=test/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DBPG_TEST_TIMEOUT=${DBPG_TEST_TIMEOUT:-1200}
FAILED_TAP=()

dbpg_start_counts run-tests.sh

# A command as the test user in $WORKDIR, bounded in time, its output
# shown and saved in $1.
run_logged()
{
	dbpg_run_logged "$DBPG_TEST_TIMEOUT" "$@"
}

# The TAP step in a private network namespace (step 3 above): lo up, plus
# a link-local address on it.  $NETNS_SETUP runs as root inside the
# namespace, before dropping to the test user.
NETNS_SETUP='ip link set lo up && ip -6 addr add fe80::1/64 dev lo'

# TAP files that must not skip under CI=true when we are root (they skip
# only for want of root or of a network namespace, which CI has).
CI_NO_SKIP="test/t/208_client_addr.pl"

# Whether the TAP step can run in its own network namespace: sets
# DBPG_NETNS (1 or 0) and, when 0, NETNS_WHY.
probe_netns()
{
	local out
	DBPG_NETNS=0
	NETNS_WHY=
	if ! dbpg_is_root; then
		NETNS_WHY="not root"
	elif ! command -v unshare >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
		NETNS_WHY="unshare or ip not found (Debian packages util-linux, iproute2)"
	elif ! out=$(unshare -n -- sh -c "$NETNS_SETUP" 2>&1); then
		NETNS_WHY="'unshare -n' with fe80::1/64 on lo failed: $(echo "$out" | tr '\n' ' ')(a container needs CAP_SYS_ADMIN and IPv6)"
	else
		DBPG_NETNS=1
	fi
}

# run_logged, in a new network namespace set up by $NETNS_SETUP, with
# DBPG_NETNS=1 in the environment; the drop to the test user is
# dbpg_as_test_user_in itself (test/lib.sh), run by a bash inside the
# namespace.
run_logged_netns()
{
	local log=$1
	shift
	local rc=0
	env DBPG_NETNS=1 DBPG_RUN_USER="$DBPG_RUN_USER" \
		unshare -n -- bash -c "$(declare -f dbpg_is_root dbpg_as_test_user_in)
$NETNS_SETUP || exit 97
dbpg_as_test_user_in \"\$@\"" bash "$WORKDIR" \
		timeout --kill-after=30 "$DBPG_TEST_TIMEOUT" "$@" </dev/null 2>&1 |
		tee "$log" || rc=$?
	return "$rc"
}

is_ci()
{
	[ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]
}

# ---------------------------------------------------------------- prepare

dbpg_prepare dbpool_guard-tests
LOGDIR=$WORKDIR/run-tests-logs
mkdir -p "$LOGDIR"
dbpg_say "Testing in $WORKDIR as user $DBPG_RUN_USER"

REGRESS_TESTS=$(dbpg_make_var REGRESS)
ISOLATION_TESTS=$(dbpg_make_var ISOLATION)
TAP_FILES=$(dbpg_make_var PROVE_TESTS)

# ---------------------------------------------------------------- pg_regress

if [ -n "${REGRESS_TESTS// /}${ISOLATION_TESTS// /}" ]; then
	dbpg_say "pg_regress: $REGRESS_TESTS $ISOLATION_TESTS"
	rc=0
	run_logged "$LOGDIR/regress.log" make --no-print-directory installcheck TAP_TESTS= || rc=$?
	# 15: "test name ... ok"; 16+: TAP lines "ok 1 - name", "not ok 2 - name"
	p=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +(ok|failed \(ignored\))|^ok [0-9]+ ' "$LOGDIR/regress.log" || true)
	f=$(grep -cE '^(test +| +)[^ ]+ +\.\.\. +FAILED|^not ok [0-9]+ ' "$LOGDIR/regress.log" || true)
	for n in $(grep -oE '^(test +| +)[^ ]+ +\.\.\. +FAILED' "$LOGDIR/regress.log" | awk '{print ($1 == "test") ? $2 : $1}') \
		$(grep -E '^not ok [0-9]+ ' "$LOGDIR/regress.log" | sed -E 's/^not ok [0-9]+ +[-+] +([^ ]+).*/\1/'); do
		FAILED_NAMES+=("regress/$n")
	done
	# A test with no result line: pg_regress stopped early (the instance did
	# not start, a missing expected file, a timeout...).
	seen=" $(grep -oE '^(test +| +)[^ ]+ +\.\.\. +(ok|FAILED|failed)' "$LOGDIR/regress.log" | awk '{print ($1 == "test") ? $2 : $1}' | tr '\n' ' ' || true)"
	seen+=" $(grep -E '^(not )?ok [0-9]+ ' "$LOGDIR/regress.log" | sed -E 's/^(not )?ok [0-9]+ +[-+] +([^ ]+).*/\2/' | tr '\n' ' ' || true) "
	for n in $REGRESS_TESTS $ISOLATION_TESTS; do
		if [[ "$seen" != *" $n "* ]]; then
			FAILED_NAMES+=("regress/$n(no result)")
			f=$((f + 1))
		fi
	done
	dbpg_add_counts regress pg_regress "$p" "$f" "$rc"
	REGRESS_FAILED=$STEP_FAILED
else
	REGRESS_FAILED=0
	dbpg_say "pg_regress: no REGRESS tests in the Makefile"
fi

# ---------------------------------------------------------------- TAP

if [ -n "${TAP_FILES// /}" ]; then
	dbpg_say "TAP (prove): $(echo "$TAP_FILES" | wc -w) files"
	probe_netns
	rc=0
	netns_failed=0
	if [ "$DBPG_NETNS" = 1 ]; then
		dbpg_note "in a private network namespace (unshare -n): lo up, fe80::1/64 on lo, DBPG_NETNS=1"
		run_logged_netns "$LOGDIR/tap.log" make --no-print-directory installcheck REGRESS= ISOLATION= || rc=$?
	else
		dbpg_note "no private network namespace ($NETNS_WHY): $CI_NO_SKIP will skip"
		if is_ci && dbpg_is_root; then
			dbpg_note "CI=true as root: counted as a failure"
			netns_failed=1
			FAILED_NAMES+=("tap(netns: $NETNS_WHY)")
		fi
		run_logged "$LOGDIR/tap.log" make --no-print-directory installcheck REGRESS= ISOLATION= || rc=$?
	fi
	p=0
	f=0
	# prove prints "test/t/001_x.pl .. ok" (or ".. skipped: why") per file
	tap_ok=" $(grep -E '^[^ ]+\.pl \.+ (ok|skipped)' "$LOGDIR/tap.log" | awk '{print $1}' | tr '\n' ' ' || true) "
	tap_skipped=" $(grep -E '^[^ ]+\.pl \.+ skipped' "$LOGDIR/tap.log" | awk '{print $1}' | tr '\n' ' ' || true) "
	for t in $TAP_FILES; do
		if [[ "$tap_ok" == *" $t "* ]] && [[ "$tap_skipped" == *" $t "* ]] &&
			[[ " $CI_NO_SKIP " == *" $t "* ]] && is_ci && dbpg_is_root; then
			# no silent skip in CI
			f=$((f + 1))
			FAILED_NAMES+=("tap/$t(skipped under CI)")
			FAILED_TAP+=("$t")
		elif [[ "$tap_ok" == *" $t "* ]]; then
			p=$((p + 1))
		else
			f=$((f + 1))
			FAILED_NAMES+=("tap/$t")
			FAILED_TAP+=("$t")
		fi
	done
	if [ "$netns_failed" = 1 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	dbpg_add_counts tap TAP "$p" "$f" "$rc"
	TAP_FAILED=$STEP_FAILED
else
	TAP_FAILED=0
	dbpg_say "TAP: no test/t/*.pl files"
fi

# ---------------------------------------------------------------- suites

for suite in "$WORKDIR"/test/suites/*.sh; do
	if [ ! -f "$suite" ] || [ ! -x "$suite" ]; then
		continue
	fi
	name=${suite#"$WORKDIR"/}
	dbpg_say "Suite $name"
	log=$LOGDIR/suite-$(basename "$suite" .sh).log
	rc=0
	run_logged "$log" env DBPG_TREE="$WORKDIR" CI="${CI:-}" "$suite" || rc=$?
	dbpg_count_suite "$name" "$log" "$rc"
done

# ---------------------------------------------------------------- package

# The Debian package and META.json (step 5 above).
dbpg_say "Package: test/package/run-package-test.sh"
log=$LOGDIR/package.log
rc=0
env CI="${CI:-}" DBPG_TEST_USER="$DBPG_TEST_USER" \
	timeout --kill-after=30 "$DBPG_TEST_TIMEOUT" \
	bash "$DBPG_ROOT/test/package/run-package-test.sh" </dev/null 2>&1 | tee "$log" || rc=$?
dbpg_count_suite test/package "$log" "$rc"

# ---------------------------------------------------------------- report

if [ "$REGRESS_FAILED" -gt 0 ]; then
	dbpg_say "pg_regress failures"
	if [ -f "$WORKDIR/regression.diffs" ]; then
		echo "--- regression.diffs (first 300 lines)"
		head -n 300 "$WORKDIR/regression.diffs"
	fi
	if [ -f "$WORKDIR/tmp_regress/log/postmaster.log" ]; then
		echo "--- tmp_regress/log/postmaster.log (last 40 lines)"
		tail -n 40 "$WORKDIR/tmp_regress/log/postmaster.log"
	fi
fi
if [ "$TAP_FAILED" -gt 0 ] && [ -d "$WORKDIR/tmp_check/log" ]; then
	dbpg_say "TAP failures: logs in $WORKDIR/tmp_check/log"
	shown=0
	for t in "${FAILED_TAP[@]}"; do
		base=$(basename "$t" .pl)
		for lf in "$WORKDIR/tmp_check/log/regress_log_$base" "$WORKDIR/tmp_check/log/${base}"_*.log; do
			[ -f "$lf" ] || continue
			case $lf in
				*/regress_log_*) n=100 ;;
				*) n=30 ;;
			esac
			echo "--- ${lf#"$WORKDIR"/} (last $n lines)"
			tail -n "$n" "$lf"
			shown=1
		done
	done
	if [ "$shown" = 0 ]; then
		for lf in "$WORKDIR"/tmp_check/log/*; do
			[ -f "$lf" ] || continue
			echo "--- ${lf#"$WORKDIR"/} (last 40 lines)"
			tail -n 40 "$lf"
		done
	fi
fi

if [ "$FAILED" -eq 0 ] && [ "${DBPG_KEEP_TMP:-0}" != 1 ]; then
	rm -rf "$WORKDIR"
	WORKDIR=
fi
dbpg_summary
[ "$FAILED" -eq 0 ]
