#!/usr/bin/env bash
# test/demo.sh: the README's demo.
#
#   sudo test/demo.sh        as root on Debian 12 (or run it as root)
#   test/demo.sh             as a user: sudo only for apt and make install
#
# Installs the packages in test/debian-packages.txt, builds and installs
# dbpool_guard (like test/run-tests.sh), starts a throwaway cluster (a
# mktemp directory, unix socket only, run by an unprivileged user) with the
# twelve services of the fleet it was designed for (README, Configuration)
# as budgets, opens sessions for a few services until one is refused,
# prints what the client saw and what the views say, then shows a burst
# (borrowing beyond the cap) and a login that waits for a slot and is
# handed one (extension 1.5), then stops every
# process it started (by PID) and removes the cluster.  Takes well under
# a minute once built.
#
# Environment: PG_CONFIG, DBPG_SKIP_APT=1, DBPG_TEST_USER (test/lib.sh);
# DBPG_DEMO_KEEP=1 leaves the stopped cluster's directory in place.

set -Eeuo pipefail

# shellcheck source=test/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO_DIR=
PM_PID=
CLIENT_PIDS=()

BUDGETS='auth-service=12, user-service=12, content-service=12, feed-service=8, search-service=8, messaging-service=5, notification-service=5, media-service=5, events-service=5, video-service=3, streaming-service=3, cdn-service=2, *=2'

cleanup()
{
	local pid
	set +e
	for pid in "${CLIENT_PIDS[@]}"; do
		{ kill "$pid" && wait "$pid"; } 2>/dev/null
	done
	CLIENT_PIDS=()
	if [ -n "$PM_PID" ] && kill -0 "$PM_PID" 2>/dev/null; then
		kill -INT "$PM_PID"		# fast shutdown
		for _ in $(seq 1 300); do
			kill -0 "$PM_PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$PM_PID" 2>/dev/null; then
			kill -QUIT "$PM_PID"	# immediate shutdown
		fi
	fi
	PM_PID=
	if [ -n "$DEMO_DIR" ] && [ -d "$DEMO_DIR" ]; then
		if [ "${DBPG_DEMO_KEEP:-0}" = 1 ]; then
			echo "Cluster directory kept: $DEMO_DIR"
		else
			rm -rf "$DEMO_DIR"
		fi
	fi
	DEMO_DIR=
}
trap cleanup EXIT

# psql as the superuser the cluster was made with; never refused.
sql()
{
	psql -X -q -v ON_ERROR_STOP=1 "host=$DEMO_DIR dbname=postgres user=postgres application_name=demo-admin" "$@"
}

# Show a query and its result.
show()
{
	printf '\npostgres=# %s\n' "$1"
	sql -P pager=off -c "$1"
}

# Open one session of service $1 as role app, held open until cleanup.
#   $2 = idle | active | idle-in-transaction
hold()
{
	local service=$1 kind=$2 script
	case $kind in
		idle) script='select 1 \watch 3600' ;;
		idle-in-transaction) script=$'begin;\nselect 1 \\watch 3600' ;;
		active) script='select pg_sleep(3600);' ;;
	esac
	printf '%s\n' "$script" |
		psql -X -q "host=$DEMO_DIR dbname=postgres user=app application_name=$service" \
		>/dev/null 2>>"$DEMO_DIR/clients.err" &
	CLIENT_PIDS+=($!)
}

# Poll query $1 (up to 10 s) until it returns $2; 1 when it never did.
wait_sql()
{
	local got
	for _ in $(seq 1 100); do
		got=$(sql -At -c "$1")
		[ "$got" = "$2" ] && return 0
		sleep 0.1
	done
	echo "timed out waiting for \"$1\" to return $2 (it returns $got)" >&2
	return 1
}

# Wait until bucket $1 (service name or "*") holds $2 slots.
wait_connections()
{
	wait_sql "SELECT connections FROM dbpool_guard.status WHERE service = '$1'" "$2" && return 0
	cat "$DEMO_DIR/clients.err" >&2
	return 1
}

# One login attempt as service $1, shown the way a user would type it.
try_login()
{
	local rc=0
	printf '\n$ psql "host=%s dbname=postgres user=app application_name=%s" -c "select 1"\n' "$DEMO_DIR" "$1"
	psql -X "host=$DEMO_DIR dbname=postgres user=app application_name=$1" -c 'select 1' 2>&1 || rc=$?
	echo "(psql exit status $rc)"
}

# ---------------------------------------------------------------- build

dbpg_install_packages
dbpg_resolve_pg_config
dbpg_build_and_install
dbpg_setup_test_user

# ---------------------------------------------------------------- cluster

DEMO_DIR=$(dbpg_mktemp_dir dbpool_guard-demo)
dbpg_say "Starting a throwaway cluster in $DEMO_DIR (unix socket only, run by $DBPG_RUN_USER)"
dbpg_as_test_user_in "$DEMO_DIR" initdb -D "$DEMO_DIR/data" -U postgres -A trust \
	--no-sync --no-instructions >"$DEMO_DIR/initdb.log" 2>&1 ||
	{ cat "$DEMO_DIR/initdb.log"; exit 1; }
cat >>"$DEMO_DIR/data/postgresql.conf" <<EOF

# --- dbpool_guard demo ---
listen_addresses = ''
unix_socket_directories = '$DEMO_DIR'
max_connections = 100
log_line_prefix = '%m [%p] %q%u@%d '
shared_preload_libraries = 'dbpool_guard'
dbpool_guard.budgets = '$BUDGETS'
dbpool_guard.threshold = 0.85
dbpool_guard.warning_threshold = 0.75
EOF
dbpg_as_test_user_in "$DEMO_DIR" pg_ctl -D "$DEMO_DIR/data" -l "$DEMO_DIR/server.log" -w -s start ||
	{ tail -n 30 "$DEMO_DIR/server.log"; exit 1; }
PM_PID=$(head -n 1 "$DEMO_DIR/data/postmaster.pid")
dbpg_note "postmaster PID $PM_PID, $PG_VERSION_STRING"
touch "$DEMO_DIR/clients.err"

dbpg_say "Configuration (postgresql.conf)"
cat <<EOF
    shared_preload_libraries = 'dbpool_guard'
    max_connections = 100
    dbpool_guard.budgets = '$BUDGETS'
    dbpool_guard.threshold = 0.85          # refuse at 85 % of a budget
    dbpool_guard.warning_threshold = 0.75  # warn at 75 %
EOF

sql -c 'CREATE EXTENSION dbpool_guard' -c 'CREATE ROLE app LOGIN'
show 'SELECT service, budget, threshold, cap FROM dbpool_guard.status'
show 'SELECT * FROM dbpool_guard.budget_check()'

# ---------------------------------------------------------------- sessions

dbpg_say "Opening sessions as role app (not a superuser): the services' pools keep their minimum idle connections"
for s in auth-service user-service content-service; do
	for _ in 1 2 3 4; do hold "$s" idle; done
	wait_connections "$s" 4
	dbpg_note "$s: 4 idle sessions"
done

dbpg_say "feed-service spikes: budget 8, threshold 0.85, so its cap is ceil(0.85 x 8) = 7"
for _ in 1 2 3; do hold feed-service active; done
for _ in 1 2 3; do hold feed-service idle; done
hold feed-service idle-in-transaction
wait_connections feed-service 7
dbpg_note "feed-service: 7 sessions (3 running pg_sleep, 3 idle, 1 idle in transaction)"

dbpg_say "The 8th feed-service login is refused; this is what the client sees:"
try_login feed-service

dbpg_say "A superuser is never refused, whatever application_name it gives:"
printf '\n$ psql "host=%s dbname=postgres user=postgres application_name=feed-service" -Atc "select current_user"\n' "$DEMO_DIR"
psql -X -At "host=$DEMO_DIR dbname=postgres user=postgres application_name=feed-service" -c 'select current_user'

dbpg_say "Services not listed share the one '*' budget (2, cap 2): report-job and adhoc-script take it"
hold report-job idle
hold adhoc-script idle
wait_connections '*' 2
try_login brand-new-service

dbpg_say "Waiting for the worker's next sample (every dbpool_guard.sample_interval = 1 s)"
t0=$(sql -At -c 'SELECT now()')
for _ in $(seq 1 50); do
	[ "$(sql -At -c "SELECT coalesce(max(sampled_at) > '$t0', false) FROM dbpool_guard.status")" = t ] && break
	sleep 0.1
done

show 'SELECT * FROM dbpool_guard.status'
show 'SELECT * FROM dbpool_guard.rejections'
show "SELECT * FROM dbpool_guard.sessions WHERE service = 'feed-service' ORDER BY admitted_at"
show 'SELECT * FROM dbpool_guard.budget_check()'

dbpg_say "Server log lines from dbpool_guard"
grep -E 'dbpool_guard: |DETAIL:  The service key is|too many connections for service|Refused role|HINT:  Retry with backoff' "$DEMO_DIR/server.log" | sed 's/^/    /' || true

# ---------------------------------------------------------------- elastic (1.5)

dbpg_say "Elastic budgets (1.5): feed-service=8+2 may borrow 2 slots beyond its cap from a burst pool of 8, and a login waits up to 5 s for a slot"
ELASTIC_BUDGETS=${BUDGETS/feed-service=8,/feed-service=8+2,}
printf '    dbpool_guard.budgets = %s\n    dbpool_guard.burst_pool = 8\n    dbpool_guard.max_wait = 5s\n' "'$ELASTIC_BUDGETS'"
sql -c "ALTER SYSTEM SET dbpool_guard.budgets = '$ELASTIC_BUDGETS'" \
	-c 'ALTER SYSTEM SET dbpool_guard.burst_pool = 8' \
	-c "ALTER SYSTEM SET dbpool_guard.max_wait = '5s'" \
	-c 'SELECT pg_reload_conf()' >/dev/null
wait_sql "SELECT burst FROM dbpool_guard.status WHERE service = 'feed-service'" 2
hold feed-service idle
hold feed-service idle
wait_connections feed-service 9
dbpg_note "feed-service: 9 sessions, its 7 own and 2 borrowed"
show "SELECT service, budget, cap, burst, connections, borrowed, state FROM dbpool_guard.status WHERE service = 'feed-service'"
show 'SELECT * FROM dbpool_guard.pool'

dbpg_say "The next feed-service login waits for a slot (listed in dbpool_guard.waiting_logins) ..."
try_login feed-service >"$DEMO_DIR/waiter.out" 2>&1 &
WAITER_PID=$!
wait_sql 'SELECT count(*) FROM dbpool_guard.waiting_logins' 1
show 'SELECT pid, service, user_name, position, waited FROM dbpool_guard.waiting_logins'

dbpg_say "... and is handed the slot of the next feed-service session that ends (one idle client quits)"
last=$((${#CLIENT_PIDS[@]} - 1))
{ kill "${CLIENT_PIDS[$last]}" && wait "${CLIENT_PIDS[$last]}"; } 2>/dev/null || true
unset "CLIENT_PIDS[$last]"
wait "$WAITER_PID" || true
cat "$DEMO_DIR/waiter.out"
show "SELECT service, connections, borrowed, waiting_logins, waited_total, wait_timeouts_total FROM dbpool_guard.status WHERE service = 'feed-service'"

# ---------------------------------------------------------------- release

dbpg_say "Closing every client (by PID); slots are released when the backends exit"
for pid in "${CLIENT_PIDS[@]}"; do
	{ kill "$pid" && wait "$pid"; } 2>/dev/null || true
done
CLIENT_PIDS=()
# The pg_sleep() backends notice their client is gone only when they next
# talk to it: end the rest the way an operator would.
sql -At -c "SELECT count(pg_terminate_backend(pid)) FROM dbpool_guard.sessions" >/dev/null
wait_sql 'SELECT coalesce(sum(connections), 0) FROM dbpool_guard.status' 0 || true
show "SELECT service, connections, admitted_total, rejected_total, peak_connections FROM dbpool_guard.status WHERE admitted_total > 0 OR rejected_total > 0"

dbpg_say "Stopping the cluster (postmaster PID $PM_PID) and removing $DEMO_DIR"
cleanup
echo "Done."
