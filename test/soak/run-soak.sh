#!/usr/bin/env bash
# test/soak/run-soak.sh: the dbpool_guard soak (test/soak/soak.pl) on a
# throwaway server, with the extension installed for $PG_CONFIG.
#
#   test/soak/run-soak.sh --brief         CI: 8 clients, 10 services, 2000 cycles
#                                         (at most 600 s)
#   test/soak/run-soak.sh                 the soak: 20 000 login/logout cycles
#                                         (at most 1800 s)
#   test/soak/run-soak.sh --long          100 000 cycles (at most 7200 s)
#   test/soak/run-soak.sh --cycles N ...  any soak.pl option (see its header)
#
# The soak is bounded by count and time: the checks are on what was done
# (cycles, counters, log lines, memory), and the clients stop opening
# sessions at --max-seconds, which then fails the cycle check.
#
# Run as root, it runs the soak as the unprivileged test user of
# test/lib.sh (DBPG_TEST_USER, default dbpg_test; created if missing),
# since initdb refuses root.  Needs only perl (core modules) and the
# server; make install must have been run for $PG_CONFIG.
#
# Prints each check and ends with "N passed, N failed"; the exit status
# is non-zero when a check failed.

set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/lib.sh
. "$here/../lib.sh"

args=()
for a in "$@"; do
	case "$a" in
		--brief) args+=(--cycles 2000 --warmup 300 --max-seconds 600) ;;
		--long) args+=(--cycles 100000 --max-seconds 7200) ;;
		*) args+=("$a") ;;
	esac
done

dbpg_resolve_pg_config
if [ ! -f "$("$PG_CONFIG" --pkglibdir)/dbpool_guard.so" ]; then
	echo "soak: dbpool_guard is not installed for $PG_CONFIG (make install first)" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

cmd=(perl "$here/soak.pl" --bindir "$PG_BINDIR" "${args[@]}")
if dbpg_is_root; then
	dbpg_setup_test_user
	# the user must be able to read the scripts; the server runs in $TMPDIR
	exec runuser -u "$DBPG_RUN_USER" -- env HOME=/tmp TMPDIR="${TMPDIR:-/tmp}" "${cmd[@]}"
fi
exec "${cmd[@]}"
