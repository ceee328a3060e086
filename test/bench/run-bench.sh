#!/bin/bash
# run-bench.sh: dbpool_guard benchmarks (docs/benchmarks.md).
#
#   test/bench/run-bench.sh                      full run, about 16 minutes on 2 cores
#   PG_CONFIG=/work/pg/17/bin/pg_config test/bench/run-bench.sh
#
# Starts its own throwaway clusters (initdb into a mktemp directory, Unix
# sockets only, as an unprivileged user when run as root), builds pgstorm,
# and prints a table: login throughput with and without dbpool_guard,
# refusal latency against PostgreSQL's role and database CONNECTION LIMIT,
# storm exactness, worker CPU cost, login throughput with 1000 listed
# services, the time of SELECT * FROM dbpool_guard.status with 10 000
# listed services, and (1.5) a pool recycling its connections at its cap,
# the order in which waiting logins are admitted, and storms of bursting
# services sharing a burst pool.  A benchmark, not a test: it exits 0
# whether targets are met or not; 2 when it cannot run, and 3 when a
# correctness invariant it checks was broken (a limit exceeded, a slot
# leaked, a refusal while a slot was free, waiters admitted out of order).
#
# Environment:
#   PG_CONFIG      pg_config of the server to use (default: pg_config in PATH)
#   BENCH_USER     OS user that owns the clusters when run as root (postgres)
#   BENCH_PAIRS    A/B pairs for the throughput figures (12; at least 5)
#   BENCH_SECS     seconds per pgbench run (4)
#   BENCH_CLIENTS  pgbench clients (4)
#   BENCH_ONLY     sections to run, of: throughput latency storm worker scale status
#                  churn fifo burst (the last three need dbpool_guard 1.5)
#   BENCH_LAT_ROUNDS   interleaved rounds of the refusal latency section (10)
#   BENCH_LSTORM_ROUNDS  interleaved storms per kind in the latency section (20)
#   BENCH_CHURN_SECS   seconds per max_wait setting in the churn section (60)
#   BENCH_STATUS_SERVICES  listed services for the status section (10000)
#   BENCH_STATUS_RUNS      timed SELECTs per case in the status section (15)
#   BENCH_QUICK=1  a short smoke run (figures are not meaningful)
#   BENCH_INSTALL=1  run "make install" of the extension first (as root)
#   BENCH_KEEP=1   keep the work directory (logs, raw data) afterwards
#   BENCH_OUT      also write the results table to this file

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
command -v "$PG_CONFIG" >/dev/null || { echo "run-bench: $PG_CONFIG not found; set PG_CONFIG" >&2; exit 2; }
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
PGVERSION=$("$PG_CONFIG" --version)

PAIRS=${BENCH_PAIRS:-12}
SECS=${BENCH_SECS:-4}
CLIENTS=${BENCH_CLIENTS:-4}
ONLY=${BENCH_ONLY:-throughput latency storm worker scale status churn fifo burst}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-10}	# interleaved rounds of the three refusal kinds
LAT_ATTEMPTS=200		# refused logins per kind and round, one at a time
LAT_BLOCKS=10			# ... in blocks of LAT_ATTEMPTS / LAT_BLOCKS, the kinds alternating
STORM_ROUNDS=20
STORM_N=200
STORM_CAP=20
ROLE_STORM_ROUNDS=10
LSTORM_ROUNDS=${BENCH_LSTORM_ROUNDS:-20}	# latency: interleaved storms, ours vs role limit, same server
CHURN_SECS=${BENCH_CHURN_SECS:-60}	# per max_wait setting, in two halves (ABBA)
CHURN_CAP=8			# the pool: CHURN_CAP clients, service cap CHURN_CAP
CHURN_HOLD=0.05			# each client holds its connection this long
CHURN_WAIT=100			# max_wait (ms) of the second setting
FIFO_CAP=5
FIFO_HOLD=1.0			# seconds each admitted login holds its slot
FIFO_STAGGER=0.05		# odd rounds: k-th admitted holds FIFO_HOLD + k x this
FIFO_WAIT=4000			# max_wait (ms): above three hold times
FIFO_ROUNDS=6
BURST_BUDGET=20
BURST_EXTRA=10
BURST_POOL=5
BURST_N=200			# logins per service and storm
BURST_ROUNDS=10
W_FAST_MS=10			# sample_interval for the many-sample measurement
W_FAST_SECS=6
W_DEFAULT_SECS=10		# window at the default 1000 ms interval
W_SESSIONS="10 200 1000"
W_SERVICES="10 500"
STATUS_SERVICES=${BENCH_STATUS_SERVICES:-10000}	# listed, and max_services
STATUS_RUNS=${BENCH_STATUS_RUNS:-15}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	PAIRS=2 SECS=2 LAT_ROUNDS=2 LAT_ATTEMPTS=30 LAT_BLOCKS=3 STORM_ROUNDS=3 ROLE_STORM_ROUNDS=2
	W_FAST_SECS=2 W_DEFAULT_SECS=3 W_SESSIONS="10 200"
	STATUS_SERVICES=${BENCH_STATUS_SERVICES:-2000} STATUS_RUNS=${BENCH_STATUS_RUNS:-3}
	LAT_ROUNDS=${BENCH_LAT_ROUNDS:-2} LSTORM_ROUNDS=${BENCH_LSTORM_ROUNDS:-2} CHURN_SECS=${BENCH_CHURN_SECS:-6}
	FIFO_ROUNDS=2 BURST_ROUNDS=2
fi
[ "$PAIRS" -ge 1 ] || PAIRS=1

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

# ---------------------------------------------------------------------------
# users, work directory, cleanup
# ---------------------------------------------------------------------------
if [ "$(id -u)" = 0 ]; then
	RUNAS=${BENCH_USER:-postgres}
	id "$RUNAS" >/dev/null 2>&1 || { echo "run-bench: user $RUNAS does not exist; set BENCH_USER" >&2; exit 2; }
	as_owner() { runuser -u "$RUNAS" -- "$@"; }
else
	RUNAS=$(id -un)
	as_owner() { "$@"; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dbpg-bench.XXXXXX")
[ "$(id -u)" = 0 ] && chown "$RUNAS" "$WORK"
chmod 755 "$WORK"

declare -A PORT=()
RUNNING=()				# clusters started
HOLDERS=()				# background pgstorm processes

stop_cluster() {
	local name=$1 data=$WORK/$1/data pid
	[ -f "$data/postmaster.pid" ] || return 0
	if ! as_owner "$BINDIR/pg_ctl" -D "$data" -m fast -w -t 60 stop -s >/dev/null 2>&1; then
		pid=$(head -1 "$data/postmaster.pid" 2>/dev/null || true)
		[ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null || true
	fi
}

stop_holder() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? pid name
	set +e
	for pid in "${HOLDERS[@]}"; do stop_holder "$pid"; done
	for name in "${RUNNING[@]}"; do stop_cluster "$name"; done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------
HAVE_GUARD=1
if [ "${BENCH_INSTALL:-0}" = 1 ] || [ ! -f "$PKGLIBDIR/dbpool_guard.so" ]; then
	if [ "$(id -u)" = 0 ]; then
		log "building and installing dbpool_guard into $PKGLIBDIR"
		make -s -C "$REPO" PG_CONFIG="$PG_CONFIG" >"$WORK/make-ext.log" 2>&1 &&
			make -s -C "$REPO" PG_CONFIG="$PG_CONFIG" install >>"$WORK/make-ext.log" 2>&1 ||
			{ cat "$WORK/make-ext.log" >&2; echo "run-bench: could not build dbpool_guard" >&2; exit 2; }
	else
		log "dbpool_guard is not installed in $PKGLIBDIR: run 'make && sudo make install' in $REPO;"
		log "measuring the plain-PostgreSQL parts only"
		HAVE_GUARD=0
	fi
fi
# 1.5 ("elastic budgets": burst pool, waiting logins) or later?
HAVE_ELASTIC=0
if [ "$HAVE_GUARD" = 1 ] && grep -qa 'dbpool_guard.burst_pool' "$PKGLIBDIR/dbpool_guard.so"; then
	HAVE_ELASTIC=1
fi
make -s -C "$HERE" PG_CONFIG="$PG_CONFIG" pgstorm >"$WORK/make-pgstorm.log" 2>&1 ||
	{ cat "$WORK/make-pgstorm.log" >&2; echo "run-bench: could not build pgstorm" >&2; exit 2; }
# a copy of our own: a "make clean" in the repository while we run must
# not take the client away
cp "$HERE/pgstorm" "$WORK/pgstorm"
PGSTORM=$WORK/pgstorm

# ---------------------------------------------------------------------------
# clusters
# ---------------------------------------------------------------------------
# bench_sample(services, max_secs, idle_secs): runs in a superuser backend
# (which no budget counts) and reads dbpool_guard.status and .pool every
# 5 ms until max_secs have passed or, when idle_secs > 0, until nothing of
# the services (slots, waiters, pool) has been in use for idle_secs after
# something was; returns the largest values seen, per service.  A sample
# reads the shared counters directly, so it misses nothing that lasts
# longer than a sampling period; what is shorter, peak_connections (kept
# at admission) still catches, for slots in use.
SAMPLER_SQL=$(cat <<'EOSQL'
CREATE FUNCTION public.bench_sample(svcs text[], max_secs float8, idle_secs float8,
	OUT service text, OUT max_connections int, OUT max_own int, OUT max_borrowed int,
	OUT max_waiting int, OUT max_pool_borrowed int, OUT samples int)
RETURNS SETOF record LANGUAGE plpgsql AS $f$
DECLARE
	t_end timestamptz := clock_timestamp() + max_secs * interval '1 second';
	n int := cardinality(svcs);
	mc int[] := array_fill(0, ARRAY[n]);
	mo int[] := array_fill(0, ARRAY[n]);
	mb int[] := array_fill(0, ARRAY[n]);
	mw int[] := array_fill(0, ARRAY[n]);
	pmax int := 0;
	nsamples int := 0;
	seen_busy bool := false;
	idle_since timestamptz;
	busy int;
	p int;
	k int;
	r record;
BEGIN
	LOOP
		busy := 0;
		FOR r IN SELECT s.service AS svc, s.connections AS c, s.borrowed AS b, s.waiting_logins AS w
				 FROM dbpool_guard.status s WHERE s.service = ANY (svcs) LOOP
			k := array_position(svcs, r.svc);
			mc[k] := greatest(mc[k], r.c);
			mo[k] := greatest(mo[k], r.c - r.b);
			mb[k] := greatest(mb[k], r.b);
			mw[k] := greatest(mw[k], r.w);
			busy := busy + r.c + r.w;
		END LOOP;
		SELECT borrowed INTO p FROM dbpool_guard.pool;
		pmax := greatest(pmax, p);
		nsamples := nsamples + 1;
		EXIT WHEN clock_timestamp() >= t_end;
		IF busy + p > 0 THEN
			seen_busy := true;
			idle_since := NULL;
		ELSIF seen_busy AND idle_secs > 0 THEN
			idle_since := coalesce(idle_since, clock_timestamp());
			EXIT WHEN clock_timestamp() - idle_since >= idle_secs * interval '1 second';
		END IF;
		PERFORM pg_sleep(0.005);
	END LOOP;
	FOR k IN 1 .. n LOOP
		service := svcs[k];
		max_connections := mc[k];
		max_own := mo[k];
		max_borrowed := mb[k];
		max_waiting := mw[k];
		max_pool_borrowed := pmax;
		samples := nsamples;
		RETURN NEXT;
	END LOOP;
END
$f$;
EOSQL
)

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q . &&
			! ls /tmp/.s.PGSQL.$p /var/run/postgresql/.s.PGSQL.$p >/dev/null 2>&1; then
			echo "$p"
			return
		fi
	done
}

# psql as the cluster's superuser: q CLUSTER SQL
q() { "$BINDIR/psql" -X -qAt -v ON_ERROR_STOP=1 -h "$WORK/$1" -p "${PORT[$1]}" -U postgres -d postgres -c "$2"; }

# poll until a query returns the wanted value: wait_for CLUSTER SQL VALUE SECONDS
wait_for() {
	local i v
	for ((i = 0; i < $4 * 20; i++)); do
		v=$(q "$1" "$2" 2>/dev/null || true)
		[ "$v" = "$3" ] && return 0
		sleep 0.05
	done
	return 1
}

make_template() {
	local t=$WORK/template
	as_owner mkdir -p "$t"
	as_owner "$BINDIR/initdb" -D "$t/data" -U postgres -A trust -E UTF8 --locale=C -N >"$WORK/initdb.log" 2>&1 ||
		{ cat "$WORK/initdb.log" >&2; exit 2; }
	PORT[template]=$(free_port)
	as_owner sh -c "cat >>'$t/data/postgresql.conf'" <<-EOF

	# run-bench.sh
	listen_addresses = ''
	unix_socket_directories = '$t'
	port = ${PORT[template]}
	logging_collector = off
	include_if_exists = 'bench.conf'
	EOF
	as_owner "$BINDIR/pg_ctl" -D "$t/data" -l "$t/log" -w -s start >/dev/null
	RUNNING+=(template)
	q template "CREATE ROLE bench LOGIN;
		CREATE ROLE rlim LOGIN CONNECTION LIMIT 1;
		CREATE ROLE rstorm LOGIN CONNECTION LIMIT $STORM_CAP;
		CREATE ROLE rchurn LOGIN CONNECTION LIMIT $CHURN_CAP;"
	q template "CREATE DATABASE dlim CONNECTION LIMIT 1;"
	if [ "$HAVE_GUARD" = 1 ]; then
		q template "CREATE EXTENSION dbpool_guard;"
	fi
	if [ "$HAVE_ELASTIC" = 1 ]; then
		q template "$SAMPLER_SQL"
	fi
	drop_cluster template
	echo 'SELECT 1;' >"$WORK/select1.sql"
}

# new_cluster NAME CONF-LINES: a copy of the template, started
new_cluster() {
	local name=$1 conf=$2 d=$WORK/$1
	PORT[$name]=$(free_port)
	as_owner mkdir -p "$d"
	as_owner cp -a "$WORK/template/data" "$d/data"
	as_owner sh -c "cat >>'$d/data/postgresql.conf'" <<-EOF
	unix_socket_directories = '$d'
	port = ${PORT[$name]}
	$conf
	EOF
	as_owner "$BINDIR/pg_ctl" -D "$d/data" -l "$d/log" -w -t 60 -s start >/dev/null ||
		{ tail -20 "$d/log" >&2; echo "run-bench: cluster $name did not start" >&2; exit 2; }
	RUNNING+=("$name")
}

# forget ARRAY VALUE: remove every element equal to VALUE from ARRAY
forget() {
	local -n list=$1
	local i
	for i in "${!list[@]}"; do
		[ "${list[$i]}" = "$2" ] && unset 'list[i]'
	done
	list=("${list[@]}")
	return 0
}

drop_cluster() {
	stop_cluster "$1"
	forget RUNNING "$1"
}

# set_conf CLUSTER TEXT: replace bench.conf and reload
set_conf() {
	printf '%s\n' "$2" | as_owner sh -c "cat >'$WORK/$1/data/bench.conf'"
	q "$1" "SELECT pg_reload_conf();" >/dev/null
}

# pgstorm against a cluster: storm CLUSTER ARGS...
storm() {
	local c=$1
	shift
	"$PGSTORM" -h "$WORK/$c" -p "${PORT[$c]}" "$@"
}

# hold N sessions in the background until stopped: hold CLUSTER ARGS...
# (the caller checks they are in; the pid is in $HOLDER)
hold() {
	local c=$1
	shift
	"$PGSTORM" -h "$WORK/$c" -p "${PORT[$c]}" -H -1 -q "$@" >"$WORK/holder.$RANDOM.out" 2>&1 &
	HOLDER=$!
	HOLDERS+=("$HOLDER")
}

release() {
	stop_holder "$1"
	forget HOLDERS "$1"
}

# sample CLUSTER SERVICES MAX_SECS IDLE_SECS: start bench_sample() in the
# background ("{a,b}" for SERVICES); sampled reads its result
sample() {
	SAMPLE_OUT=$WORK/sample.$RANDOM.out
	q "$1" "SELECT * FROM public.bench_sample('$2', $3, $4)" >"$SAMPLE_OUT" 2>&1 &
	SAMPLER=$!
	HOLDERS+=("$SAMPLER")
	sleep 0.3	# let it start before the load does
}

# sampled: wait for the sampler; fills SMAX[service.field], field one of
# conn own borrowed waiting pool samples
declare -A SMAX=()
sampled() {
	local svc c o b w p n
	wait "$SAMPLER" || log "  the sampler failed: $(head -3 "$SAMPLE_OUT")"
	forget HOLDERS "$SAMPLER"
	SMAX=()
	while IFS='|' read -r svc c o b w p n; do
		[ -n "$n" ] || continue
		SMAX[$svc.conn]=$c SMAX[$svc.own]=$o SMAX[$svc.borrowed]=$b SMAX[$svc.waiting]=$w
		SMAX[pool]=$p SMAX[samples]=$n
	done <"$SAMPLE_OUT"
}

# ---------------------------------------------------------------------------
# statistics helpers (awk; input one number per line)
# ---------------------------------------------------------------------------
# median, min, max of numbers on stdin -> "median min max"
mmm() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "nan nan nan"; exit}
	m = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; print m, v[1], v[NR]}'; }
# nearest-rank percentile P (0..1) of numbers on stdin
pctl() { sort -g | awk -v p="$1" '{v[NR]=$1} END {if (NR==0) {print "nan"; exit}
	r = int(p*NR); if (r < p*NR) r++; if (r < 1) r = 1; print v[r]}'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN {if (v == "nan" || v == "") print "n/a"; else printf f, v}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "nan" || b == "nan" || b == 0 || a == "" || b == "") print "nan"; else printf "%.4f", a/b}'; }
# yes/no: test EXPR on v, e.g. meets "$v" ">= 0.98"
meets() { awk -v v="$1" "BEGIN {if (v == \"nan\" || v == \"\") {print \"n/a\"; exit} print ((v $2) ? \"yes\" : \"NO\")}"; }

# one pgbench -C run: logins/s
pgbench_tps() {
	local c=$1 secs=$2 out
	out=$WORK/pgbench.$c.$RANDOM.log
	PGAPPNAME=bench-login "$BINDIR/pgbench" -n -C -f "$WORK/select1.sql" -c "$CLIENTS" -j 2 -T "$secs" \
		-h "$WORK/$c" -p "${PORT[$c]}" -U bench postgres >"$out" 2>&1 || true
	if grep -qiE 'aborted|error' "$out" && ! grep -q 'number of failed transactions: 0' "$out"; then
		log "pgbench on $c reported errors (see $out)"
	fi
	awk '/^tps = /{print $3; exit}' "$out"
}

# interleaved A/B pairs: ab_pairs A B -> fills AB_RATIOS, AB_A, AB_B (one value a line)
ab_pairs() {
	local a=$1 b=$2 i ta tb
	AB_RATIOS="" AB_A="" AB_B=""
	pgbench_tps "$a" 2 >/dev/null	# warm up both
	pgbench_tps "$b" 2 >/dev/null
	for ((i = 1; i <= PAIRS; i++)); do
		# alternate which goes first so order effects cancel
		if ((i % 2)); then
			ta=$(pgbench_tps "$a" "$SECS")
			tb=$(pgbench_tps "$b" "$SECS")
		else
			tb=$(pgbench_tps "$b" "$SECS")
			ta=$(pgbench_tps "$a" "$SECS")
		fi
		log "  pair $i: $a $(fmt "$ta" %.1f)/s, $b $(fmt "$tb" %.1f)/s, ratio $(fmt "$(ratio "$ta" "$tb")" %.4f)"
		AB_A+="$ta"$'\n' AB_B+="$tb"$'\n'
		AB_RATIOS+="$(ratio "$ta" "$tb")"$'\n'
	done
}

# tp_prepare NAME, then run_tp NAME SECS: logins/s of one pgbench run.
# NAME is a cluster, or "elastic": the cluster "guard" with the elastic
# settings (ELASTIC_SET), switched by a reload; "guard" is that cluster
# with its own settings.  The same postmaster, so no difference between
# clusters (see guard2) enters the elastic/guard ratio.  (tp_prepare runs
# in the script's shell, run_tp in a command substitution.)
GUARD_NOW=base
guard_settings() {
	[ "$GUARD_NOW" = "$1" ] && return 0
	if [ "$1" = elastic ]; then
		for st in "${ELASTIC_SET[@]}"; do q guard "$st" >/dev/null; done
	else
		q guard "ALTER SYSTEM RESET ALL" >/dev/null
	fi
	q guard "SELECT pg_reload_conf()" >/dev/null
	# a new backend shows what the postmaster has read
	wait_for guard "SHOW dbpool_guard.burst_pool" "$([ "$1" = elastic ] && echo 20 || echo 0)" 10 ||
		log "  the settings of guard did not switch to $1"
	GUARD_NOW=$1
}
tp_prepare() {
	case $1 in
		elastic) guard_settings elastic ;;
		guard) if [ "$HAVE_ELASTIC" = 1 ]; then guard_settings base; fi ;;
	esac
}
run_tp() {
	case $1 in
		elastic) pgbench_tps guard "$2" ;;
		*) pgbench_tps "$1" "$2" ;;
	esac
}

# interleaved runs of several servers, the first being the base:
# ab_multi BASE OTHER... -> MR_TPS[server] (one tps a line) and
# MR_RATIO[server] (server/BASE of the same round, one a line).  The order
# rotates from round to round, so each server runs in each position as
# often as the others (with PAIRS a multiple of the number of servers).
declare -A MR_TPS=() MR_RATIO=()
ab_multi() {
	local order=("$@") i c line
	local -A tps=()
	MR_TPS=() MR_RATIO=()
	for c in "$@"; do
		tp_prepare "$c"
		run_tp "$c" 2 >/dev/null	# warm up
	done
	for ((i = 1; i <= PAIRS; i++)); do
		for c in "${order[@]}"; do
			tp_prepare "$c"
			tps[$c]=$(run_tp "$c" "$SECS")
		done
		line=""
		for c in "$@"; do
			MR_TPS[$c]+="${tps[$c]}"$'\n'
			if [ "$c" != "$1" ]; then
				MR_RATIO[$c]+="$(ratio "${tps[$c]}" "${tps[$1]}")"$'\n'
				line+=", $c/$1 $(fmt "$(ratio "${tps[$c]}" "${tps[$1]}")" %.4f)"
			fi
		done
		log "  round $i (order ${order[*]}):$(for c in "$@"; do printf ' %s %s/s' "$c" "$(fmt "${tps[$c]}" %.1f)"; done)$line"
		order=("${order[@]:1}" "${order[0]}")
	done
}

# ---------------------------------------------------------------------------
# configurations
# ---------------------------------------------------------------------------
# 20 listed services: the reference fleet (docs: shared/reference), the
# benchmark's own, and a few more; "*" for the rest
GUARD_BUDGETS="auth-service=12, user-service=12, content-service=12, feed-service=8, search-service=8,\
 messaging-service=5, notification-service=5, media-service=5, events-service=5, video-service=3,\
 streaming-service=3, cdn-service=2, billing-service=5, report-service=5, admin-service=3,\
 batch-service=4, bench-other=40, full=2@1.0, storm=$STORM_CAP@1.0, bench-login=40, *=10"
PRELOAD="shared_preload_libraries = 'dbpool_guard'"
GUARD_CONF="max_connections = 300
$PRELOAD
dbpool_guard.budgets = '$GUARD_BUDGETS'"
# 1.5: refusals at once, as before (the default, said explicitly)
[ "$HAVE_ELASTIC" = 1 ] && GUARD_CONF+=$'\n'"dbpool_guard.max_wait = 0"
# the same fleet with burst allowances, a burst pool, waiting logins
# allowed: all configured, none used (nothing reaches its cap)
ELASTIC_BUDGETS="auth-service=12+4, user-service=12+4, content-service=12+4, feed-service=8+4, search-service=8+4,\
 messaging-service=5+2, notification-service=5+2, media-service=5+2, events-service=5+2, video-service=3+2,\
 streaming-service=3+2, cdn-service=2+1, billing-service=5+2, report-service=5+2, admin-service=3+1,\
 batch-service=4+2, bench-other=40+10, full=2@1.0, storm=$STORM_CAP@1.0, bench-login=40+10, *=10+2"
# (one statement each: ALTER SYSTEM cannot run in a transaction block)
ELASTIC_SET=("ALTER SYSTEM SET dbpool_guard.budgets = '$ELASTIC_BUDGETS'"
	"ALTER SYSTEM SET dbpool_guard.burst_pool = 20"
	"ALTER SYSTEM SET dbpool_guard.max_wait = 100"
	"ALTER SYSTEM SET dbpool_guard.max_waiters = 4"
	"ALTER SYSTEM SET dbpool_guard.max_waiters_total = 10")

# N listed services svc-1..svc-(N-1) plus bench-login last (the one pgbench uses)
listed_budgets() {
	local n=$1 i s=""
	for ((i = 1; i < n; i++)); do s+="svc-$i=10, "; done
	echo "${s}bench-login=40"
}

RESULTS=()				# "figure|value|target|met"
WTABLE=()				# worker cost rows
declare -A WCOST=()
row() { RESULTS+=("$1|$2|$3|$4"); }
BROKEN=()				# correctness invariants that did not hold
broken() { log "  INVARIANT BROKEN: $*"; BROKEN+=("$*"); }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# the library the clusters load (taken now: an install during the run
# does not change what running servers have loaded)
LIB_ID=""
if [ "$HAVE_GUARD" = 1 ]; then
	LIB_ID="$PKGLIBDIR/dbpool_guard.so md5 $(md5sum <"$PKGLIBDIR/dbpool_guard.so" | cut -c1-12), $(stat -c %y "$PKGLIBDIR/dbpool_guard.so" | cut -d. -f1); default_version $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$("$PG_CONFIG" --sharedir)/extension/dbpool_guard.control" 2>/dev/null)"
fi
log "dbpool_guard benchmark: $PGVERSION, work directory $WORK, load average $LOAD_START"
make_template

# ---------------------------------------------------------------------------
# 1. login throughput, guard vs plain
# ---------------------------------------------------------------------------
if want throughput; then
	if [ "$HAVE_GUARD" = 1 ]; then
		# plain: no library; guard: the 20-service list; elastic (1.5):
		# the guard cluster with bursts, a pool and waiting allowed, switched
		# by a reload; guard2: a second cluster just like guard, the
		# control: guard2/guard is the difference between two identical
		# clusters on this machine, which the other ratios may carry too
		tp_servers="plain guard guard2"
		[ "$HAVE_ELASTIC" = 1 ] && tp_servers="plain guard elastic guard2"
		log "login throughput: pgbench -n -C, $CLIENTS clients, $PAIRS rounds x ${SECS}s, interleaved: $tp_servers"
		new_cluster plain "max_connections = 300"
		new_cluster guard "$GUARD_CONF"
		new_cluster guard2 "$GUARD_CONF"
		# shellcheck disable=SC2086
		ab_multi $tp_servers
		for c in ${tp_servers#plain }; do
			read -r med mn mx <<<"$(printf '%s' "${MR_RATIO[$c]}" | mmm)"
			read -r ga _ _ <<<"$(printf '%s' "${MR_TPS[$c]}" | mmm)"
			read -r pa _ _ <<<"$(printf '%s' "${MR_TPS[plain]}" | mmm)"
			case $c in
				guard) what="guard/plain" tgt=">= 0.98" ;;
				elastic) what="elastic/plain (guard cluster + bursts, burst_pool 20, max_wait 100 ms, max_waiters 4/10; idle)" tgt=">= 0.98" ;;
				guard2) what="control: guard2/plain (a second cluster like guard)" tgt="" ;;
			esac
			row "login throughput $what ($PAIRS rounds)" \
				"$(fmt "$med" %.3f) (min $(fmt "$mn" %.3f), max $(fmt "$mx" %.3f)); $(fmt "$ga" %.0f) vs $(fmt "$pa" %.0f) logins/s" \
				"$tgt" "$([ -n "$tgt" ] && meets "$med" "$tgt")"
		done
		# ratio of two servers' runs of the same rounds: same_rounds A B -> "median min max"
		same_rounds() {
			paste -d' ' <(printf '%s' "${MR_TPS[$1]}") <(printf '%s' "${MR_TPS[$2]}") |
				awk '{ if ($2 > 0) printf "%.4f\n", $1 / $2 }' | mmm
		}
		read -r med mn mx <<<"$(same_rounds guard2 guard)"
		row "login throughput control: guard2/guard (two identical clusters)" \
			"$(fmt "$med" %.3f) (min $(fmt "$mn" %.3f), max $(fmt "$mx" %.3f))" "1.0 within noise" ""
		if [ "$HAVE_ELASTIC" = 1 ]; then
			guard_settings base
			read -r med mn mx <<<"$(same_rounds elastic guard)"
			used=$(q guard "SELECT coalesce(sum(borrowed), 0) + coalesce(sum(waited_total), 0) + coalesce(sum(waiting_logins), 0) FROM dbpool_guard.status")
			row "login throughput elastic/guard (same cluster, settings switched by reload)" \
				"$(fmt "$med" %.3f) (min $(fmt "$mn" %.3f), max $(fmt "$mx" %.3f)); borrowed + waited + waiting afterwards: $used" \
				">= 0.98" "$(meets "$med" ">= 0.98")"
		fi
		# "no service at its cap": nothing may have been refused
		for c in guard guard2; do
			refused=$(q "$c" "SELECT coalesce(sum(rejected_total), 0) FROM dbpool_guard.status")
			[ "$refused" = 0 ] || log "  note: $refused logins were refused on $c during the throughput runs: the figure is not valid"
		done
		drop_cluster guard2
		drop_cluster plain
	else
		row "login throughput guard/plain" "n/a (dbpool_guard not installed)" ">= 0.98" "n/a"
	fi
fi

# ---------------------------------------------------------------------------
# 2. refusal latency: ours vs role vs database CONNECTION LIMIT
# ---------------------------------------------------------------------------
if want latency; then
	log "refusal latency: $LAT_ROUNDS rounds x $LAT_ATTEMPTS serial refused logins per kind, in blocks of $((LAT_ATTEMPTS / LAT_BLOCKS)), the kinds alternating"
	if [ -z "${PORT[guard]:-}" ] || ! [ -f "$WORK/guard/data/postmaster.pid" ]; then
		if [ "$HAVE_GUARD" = 1 ]; then
			new_cluster guard "$GUARD_CONF"
		else
			new_cluster guard "max_connections = 300"
		fi
	fi
	kinds="role db"
	[ "$HAVE_GUARD" = 1 ] && kinds="ours role db"
	# the sessions that fill each limit
	if [ "$HAVE_GUARD" = 1 ]; then
		hold guard -U bench -d postgres -a full -n 2
		h_ours=$HOLDER
		wait_for guard "SELECT connections FROM dbpool_guard.status WHERE service = 'full'" 2 10 ||
			log "  the 'full' service did not reach 2 sessions"
	fi
	hold guard -U rlim -d postgres -a bench-other -n 1
	h_role=$HOLDER
	hold guard -U bench -d dlim -a bench-other -n 1
	h_db=$HOLDER
	wait_for guard "SELECT count(*) FROM pg_stat_activity WHERE usename = 'rlim' OR datname = 'dlim'" 2 10 ||
		log "  the role/database limits are not filled"

	lat_args() {
		case $1 in
			ours) echo "-U bench -d postgres -a full" ;;
			role) echo "-U rlim -d postgres -a bench-other" ;;
			db) echo "-U bench -d dlim -a bench-other" ;;
		esac
	}
	for k in $kinds; do
		# shellcheck disable=SC2046
		storm guard $(lat_args "$k") -n 20 -c 1 -H 0 -q >/dev/null	# warm-up
	done
	# each round: LAT_BLOCKS blocks per kind, the kinds taking turns block
	# by block, so that a change of the machine's load in the middle of a
	# round falls on all kinds alike
	set -- $kinds
	for ((r = 1; r <= LAT_ROUNDS; r++)); do
		for ((blk = 1; blk <= LAT_BLOCKS; blk++)); do
			for k in "$@"; do
				# shellcheck disable=SC2046
				storm guard $(lat_args "$k") -n "$((LAT_ATTEMPTS / LAT_BLOCKS))" -c 1 -H 0 -q --csv \
					--dump "$WORK/lat.$k.$r.csv" >>"$WORK/lat.$k.$r.out"
			done
			set -- "${@:2}" "$1"	# rotate the order each block
		done
	done
	if [ "$HAVE_GUARD" = 1 ]; then release "$h_ours"; fi
	release "$h_role"
	release "$h_db"

	declare -A P50=() P99=() NREF=() BAD=()
	for k in $kinds; do
		cat "$WORK"/lat."$k".*.csv >"$WORK/lat.$k.all"
		P50[$k]=$(awk -F, '$2 == "refused" {print $5}' "$WORK/lat.$k.all" | pctl 0.50)
		P99[$k]=$(awk -F, '$2 == "refused" {print $5}' "$WORK/lat.$k.all" | pctl 0.99)
		NREF[$k]=$(awk -F, '$2 == "refused" && $3 == "53300"' "$WORK/lat.$k.all" | wc -l)
		BAD[$k]=$(awk -F, '$2 != "refused" || $3 != "53300"' "$WORK/lat.$k.all" | wc -l)
		log "  $k: p50 $(fmt "${P50[$k]}" %.3f) ms, p99 $(fmt "${P99[$k]}" %.3f) ms, ${NREF[$k]} refused with 53300, ${BAD[$k]} other outcomes"
	done
	if [ "$HAVE_GUARD" = 1 ]; then
		nours=$(awk -F, '$4 == 1' "$WORK/lat.ours.all" | wc -l)
		row "refusal latency p50 / p99, ms" \
			"ours $(fmt "${P50[ours]}" %.2f) / $(fmt "${P99[ours]}" %.2f); role limit $(fmt "${P50[role]}" %.2f) / $(fmt "${P99[role]}" %.2f); db limit $(fmt "${P50[db]}" %.2f) / $(fmt "${P99[db]}" %.2f)" \
			"" ""
		# the figure is the median of the per-round ratios (issue 15: at
		# least 10 interleaved rounds, target <= 1.02 against the role limit)
		for other in role db; do
			per_round=""
			for ((r = 1; r <= LAT_ROUNDS; r++)); do
				a=$(awk -F, '$2 == "refused" {print $5}' "$WORK/lat.ours.$r.csv" | pctl 0.50)
				b=$(awk -F, '$2 == "refused" {print $5}' "$WORK/lat.$other.$r.csv" | pctl 0.50)
				per_round+="$(ratio "$a" "$b")"$'\n'
			done
			log "  per-round p50 ratios ours/$other: $(printf '%s' "$per_round" | awk '{printf "%s%.3f", (NR > 1 ? " " : ""), $1}')"
			read -r med mn mx <<<"$(printf '%s' "$per_round" | mmm)"
			v=$(ratio "${P50[ours]}" "${P50[$other]}")
			if [ "$other" = role ]; then tgt="<= 1.02"; else tgt="< 1.0"; fi
			row "refusal p50 ratio ours/$other limit, serial ($LAT_ROUNDS interleaved rounds)" \
				"median of per-round ratios $(fmt "$med" %.3f) (min $(fmt "$mn" %.3f), max $(fmt "$mx" %.3f)); pooled p50s $(fmt "$v" %.3f)" \
				"$tgt" "$(meets "$med" "$tgt")"
		done
		row "refusals carrying our message (latency runs)" "$nours of ${NREF[ours]} (other outcomes: ${BAD[ours]})" "all" \
			"$([ "$nours" = "$((LAT_ROUNDS * (LAT_ATTEMPTS / LAT_BLOCKS) * LAT_BLOCKS))" ] && echo yes || echo NO)"

		# the same under a storm: STORM_N logins at once against service
		# "storm" (cap STORM_CAP) and against role rstorm (CONNECTION LIMIT
		# STORM_CAP) as service bench-wide, whose budget admits them all;
		# same server, interleaved, the order alternating
		log "refusal latency under a storm: $LSTORM_ROUNDS rounds x $STORM_N logins at once, ours vs role limit $STORM_CAP, same server"
		q guard "ALTER SYSTEM SET dbpool_guard.budgets = '$GUARD_BUDGETS, bench-wide=$((STORM_N + 50))@1.0'" >/dev/null
		q guard "SELECT pg_reload_conf()" >/dev/null
		sleep 0.5
		ls_count() {
			case $1 in
				ours) echo "SELECT connections FROM dbpool_guard.status WHERE service = 'storm'" ;;
				role) echo "SELECT (SELECT count(*) FROM pg_stat_activity WHERE usename = 'rstorm') + coalesce((SELECT connections FROM dbpool_guard.status WHERE service = 'bench-wide'), 0)" ;;
			esac
		}
		ls_args() {
			case $1 in
				ours) echo "-U bench -d postgres -a storm" ;;
				role) echo "-U rstorm -d postgres -a bench-wide" ;;
			esac
		}
		per_round="" ls_bad=""
		for ((r = 1; r <= LSTORM_ROUNDS; r++)); do
			if ((r % 2)); then lorder="ours role"; else lorder="role ours"; fi
			for k in $lorder; do
				wait_for guard "$(ls_count "$k")" 0 20 || log "  round $r: sessions of the previous $k storm still counted"
				# shellcheck disable=SC2046
				line=$(storm guard $(ls_args "$k") -n "$STORM_N" -H 0.3 -q --csv --dump "$WORK/lstorm.$k.$r.csv" | tail -1)
				IFS=, read -r _ att adm ref _ <<<"$line"
				[ "$adm" = "$STORM_CAP" ] || ls_bad+=" round $r $k: $adm admitted;"
			done
			wait_for guard "$(ls_count ours)" 0 20 || true
			wait_for guard "$(ls_count role)" 0 20 || true
			a=$(awk -F, '$2 == "refused" {print $5}' "$WORK/lstorm.ours.$r.csv" | pctl 0.50)
			b=$(awk -F, '$2 == "refused" {print $5}' "$WORK/lstorm.role.$r.csv" | pctl 0.50)
			per_round+="$(ratio "$a" "$b")"$'\n'
			log "  round $r ($lorder): refusal p50 ours $(fmt "$a" %.1f) ms, role $(fmt "$b" %.1f) ms, ratio $(fmt "$(ratio "$a" "$b")" %.3f)"
		done
		q guard "ALTER SYSTEM RESET dbpool_guard.budgets" >/dev/null
		q guard "SELECT pg_reload_conf()" >/dev/null
		read -r med mn mx <<<"$(printf '%s' "$per_round" | mmm)"
		a=$(cat "$WORK"/lstorm.ours.*.csv | awk -F, '$2 == "refused" {print $5}' | pctl 0.50)
		b=$(cat "$WORK"/lstorm.role.*.csv | awk -F, '$2 == "refused" {print $5}' | pctl 0.50)
		row "refusal p50 ratio ours/role limit, $STORM_N-login storms, same server ($LSTORM_ROUNDS interleaved rounds)" \
			"median of per-round ratios $(fmt "$med" %.3f) (min $(fmt "$mn" %.3f), max $(fmt "$mx" %.3f)); pooled p50 ours $(fmt "$a" %.1f) ms, role $(fmt "$b" %.1f) ms${ls_bad:+; not $STORM_CAP admitted:$ls_bad}" \
			"<= 1.02" "$(meets "$med" "<= 1.02")"
	else
		row "refusal latency p50 / p99, ms" \
			"role limit $(fmt "${P50[role]}" %.2f) / $(fmt "${P99[role]}" %.2f); db limit $(fmt "${P50[db]}" %.2f) / $(fmt "${P99[db]}" %.2f); ours n/a" "" ""
	fi
fi

# ---------------------------------------------------------------------------
# 3. storm exactness
# ---------------------------------------------------------------------------
# storm_rounds CLUSTER ROUNDS COUNT-SQL ARGS... -> fills STORM_* ; one pgstorm run per round,
# waiting between rounds until COUNT-SQL says the held sessions are gone
storm_rounds() {
	local c=$1 rounds=$2 count_sql=$3 r line
	shift 3
	STORM_ADM="" STORM_DRAIN=""
	local refused=0 ours=0 other=0 client=0
	for ((r = 1; r <= rounds; r++)); do
		wait_for "$c" "$count_sql" 0 10 || log "  round $r: sessions of the previous round still counted"
		line=$(storm "$c" "$@" -n "$STORM_N" -H 0.3 -q --csv --dump "$WORK/storm.$c.csv" | tail -1)
		# total,attempted,admitted,refused,refused_ours,client_errors,timeouts,lost,...
		IFS=, read -r _ att adm ref rours cli tmo lost _ <<<"$line"
		STORM_ADM+="$adm"$'\n'
		refused=$((refused + ref)) ours=$((ours + rours))
		other=$((other + att - adm - ref)) client=$((client + cli + tmo))
		local t0
		t0=$(date +%s%N)
		wait_for "$c" "$count_sql" 0 10 || true
		STORM_DRAIN+="$((($(date +%s%N) - t0) / 1000000))"$'\n'
		log "  round $r: $att attempted, $adm admitted, $ref refused ($rours ours), $((cli + tmo)) other failures, $lost lost"
	done
	STORM_REFUSED=$refused STORM_OURS=$ours STORM_OTHER=$other
}

if want storm; then
	if [ "$HAVE_GUARD" = 1 ]; then
		log "storm: $STORM_ROUNDS rounds x $STORM_N simultaneous logins, service cap $STORM_CAP"
		if [ -z "${PORT[guard]:-}" ] || ! [ -f "$WORK/guard/data/postmaster.pid" ]; then
			new_cluster guard "$GUARD_CONF"
		fi
		count_sql="SELECT connections FROM dbpool_guard.status WHERE service = 'storm'"
		before=$(q guard "SELECT admitted_total || ' ' || rejected_total FROM dbpool_guard.status WHERE service = 'storm'")
		storm_rounds guard "$STORM_ROUNDS" "$count_sql" -U bench -d postgres -a storm
		after=$(q guard "SELECT admitted_total || ' ' || rejected_total || ' ' || peak_connections FROM dbpool_guard.status WHERE service = 'storm'")
		sleep 1.5	# let the worker take a sample after the drain
		leaked=$(q guard "$count_sql")
		read -r b_adm b_rej <<<"$before"
		read -r a_adm a_rej peak <<<"$after"
		read -r _ amin amax <<<"$(printf '%s' "$STORM_ADM" | mmm)"
		over=$(awk -v m="$amax" -v c="$STORM_CAP" 'BEGIN {print (m > c) ? m - c : 0}')
		under=$(awk -v m="$amin" -v c="$STORM_CAP" 'BEGIN {print (m < c) ? c - m : 0}')
		read -r _ _ dmax <<<"$(printf '%s' "$STORM_DRAIN" | mmm)"
		row "storm: admitted per round (cap $STORM_CAP, $STORM_ROUNDS x $STORM_N)" \
			"min $amin, max $amax; max overshoot $over, max undershoot $under, leaked $leaked" \
			"0 / 0 / 0" "$([ "$over" = 0 ] && [ "$under" = 0 ] && [ "$leaked" = 0 ] && echo yes || echo NO)"
		row "storm: refusals with our message" \
			"$STORM_OURS of $STORM_REFUSED refusals; $STORM_OTHER other failures" "all" \
			"$([ "$STORM_OURS" = "$STORM_REFUSED" ] && [ "$STORM_OTHER" = 0 ] && echo yes || echo NO)"
		slat50=$(awk -F, '$2 == "refused" {print $5}' "$WORK/storm.guard.csv" | pctl 0.50)
		slat99=$(awk -F, '$2 == "refused" {print $5}' "$WORK/storm.guard.csv" | pctl 0.99)
		row "storm: view counters vs client" \
			"admitted_total +$((a_adm - b_adm)), rejected_total +$((a_rej - b_rej)) (client: $(printf '%s' "$STORM_ADM" | awk '{s+=$1} END {print s}') / $STORM_REFUSED); peak $peak; refusal p50/p99 $(fmt "$slat50" %.1f)/$(fmt "$slat99" %.1f) ms; back to 0 within ${dmax} ms of the last close" \
			"equal" "$([ "$((a_rej - b_rej))" = "$STORM_REFUSED" ] && echo yes || echo NO)"
	fi
	# the same storm against PostgreSQL's role CONNECTION LIMIT, for reference
	log "storm reference: $ROLE_STORM_ROUNDS rounds against role CONNECTION LIMIT $STORM_CAP (no dbpool_guard)"
	new_cluster rolestorm "max_connections = 300"
	storm_rounds rolestorm "$ROLE_STORM_ROUNDS" "SELECT count(*) FROM pg_stat_activity WHERE usename = 'rstorm'" \
		-U rstorm -d postgres -a storm
	read -r _ amin amax <<<"$(printf '%s' "$STORM_ADM" | mmm)"
	rlat50=$(awk -F, '$2 == "refused" {print $5}' "$WORK/storm.rolestorm.csv" | pctl 0.50)
	rlat99=$(awk -F, '$2 == "refused" {print $5}' "$WORK/storm.rolestorm.csv" | pctl 0.99)
	row "reference: role CONNECTION LIMIT $STORM_CAP, same storm, plain server ($ROLE_STORM_ROUNDS rounds)" \
		"admitted min $amin, max $amax per round; $STORM_OTHER other failures; refusal p50/p99 $(fmt "$rlat50" %.1f)/$(fmt "$rlat99" %.1f) ms" "(none)" ""
	drop_cluster rolestorm
fi
[ -n "${PORT[guard]:-}" ] && drop_cluster guard

# ---------------------------------------------------------------------------
# 4. worker CPU cost
# ---------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# worker CPU: "schedstat_ns ticks voluntary_switches"
proc_cpu() {
	local pid=$1 ns ticks sw
	ns=$(awk '{print $1}' "/proc/$pid/schedstat" 2>/dev/null || echo nan)
	ticks=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
	sw=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$pid/status")
	echo "$ns $ticks $sw"
}
now_ns() { date +%s%N; }

# measure_worker PID INTERVAL_MS SECONDS -> "us_per_sample_schedstat us_per_sample_ticks samples switches"
measure_worker() {
	local pid=$1 iv=$2 secs=$3 n0 t0 s0 n1 t1 s1 c0 c1
	read -r n0 t0 s0 <<<"$(proc_cpu "$pid")"
	c0=$(now_ns)
	sleep "$secs"
	read -r n1 t1 s1 <<<"$(proc_cpu "$pid")"
	c1=$(now_ns)
	awk -v n0="$n0" -v n1="$n1" -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" \
		-v c0="$c0" -v c1="$c1" -v iv="$iv" -v hz="$CLK_TCK" 'BEGIN {
		samples = (c1 - c0) / 1e6 / iv;
		ns = (n0 == "nan") ? "nan" : (n1 - n0) / 1e3 / samples;
		tk = (t1 - t0) * 1e6 / hz / samples;
		printf "%s %.1f %.0f %d\n", (ns == "nan") ? "nan" : sprintf("%.1f", ns), tk, samples, s1 - s0 }'
}

min2() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# worker_config S N A: S listed services, N idle sessions spread over A of them
worker_config() {
	local S=$1 N=$2 A=$3 budgets="" i h wpid held f_ns f_tk f_n f_sw d_ns pct_core
	for ((i = 1; i <= S; i++)); do budgets+="w-$i=1000@1.0, "; done
	budgets=${budgets%, }
	set_conf wcost "dbpool_guard.budgets = '$budgets'
dbpool_guard.sample_interval = 1000"
	sleep 0.3
	# one login per listed service first: a bucket is made by its service's
	# first login, and the worker's pass visits buckets, not list entries
	storm wcost -U bench -d postgres -a 'w-%d' -A "$S" -n "$S" -c 25 -H 0 -q >/dev/null
	wait_for wcost "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'" 0 30 || true
	hold wcost -U bench -d postgres -a 'w-%d' -A "$A" -n "$N" -c 50
	h=$HOLDER
	if ! wait_for wcost "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench' AND state = 'idle'" "$N" 60; then
		log "  only $(q wcost "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'") of $N sessions came up"
	fi
	wpid=$(q wcost "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dbpool_guard worker'")
	held=$(q wcost "SELECT sum(connections) FROM dbpool_guard.status")
	# many samples at a short interval: per-sample cost from both clocks
	set_conf wcost "dbpool_guard.budgets = '$budgets'
dbpool_guard.sample_interval = $W_FAST_MS"
	sleep 1
	read -r f_ns f_tk f_n f_sw <<<"$(measure_worker "$wpid" "$W_FAST_MS" "$W_FAST_SECS")"
	# the default interval, measured directly (schedstat has ns resolution)
	set_conf wcost "dbpool_guard.budgets = '$budgets'
dbpool_guard.sample_interval = 1000"
	sleep 1.5
	read -r d_ns _ _ _ <<<"$(measure_worker "$wpid" 1000 "$W_DEFAULT_SECS")"
	pct_core=$(awk -v u="$d_ns" 'BEGIN {if (u == "nan") print "nan"; else printf "%.4f", u / 1e6 * 100}')
	log "  services $S, sessions $N over $A services (held $held): ${W_FAST_MS}ms: $f_ns us/sample (ticks: $f_tk), $f_n samples, $f_sw wakeups; 1000ms: $d_ns us/sample, $pct_core % of a core"
	WCOST[$S.$N.$A]=$f_ns
	WTABLE+=("$S|$N|$A|$f_ns|$f_tk|$d_ns|$pct_core")
	release "$h"
	wait_for wcost "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'" 0 60 || true
}

if want worker && [ "$HAVE_GUARD" = 1 ]; then
	log "worker cost: sessions {$W_SESSIONS} x listed services {$W_SERVICES}"
	new_cluster wcost "max_connections = 1100
$PRELOAD
dbpool_guard.max_services = 1100"
	for S in $W_SERVICES; do
		for N in $W_SESSIONS; do
			worker_config "$S" "$N" "$(min2 "$S" "$N")"
		done
	done
	set -- $W_SERVICES
	s_lo=$1 s_hi=${!#}
	set -- $W_SESSIONS
	n_lo=$1 n_hi=${!#}
	# the most sessions, all listed services, but the sessions in a few of
	# them: separates the cost of listing services from that of spreading
	worker_config "$s_hi" "$n_hi" "$s_lo"
	drop_cluster wcost
	for r in "${WTABLE[@]}"; do
		IFS='|' read -r s n a f tk d p <<<"$r"
		if [ "$s" = "$s_hi" ] && [ "$n" = "$n_hi" ] && [ "$a" = "$(min2 "$s_hi" "$n_hi")" ]; then
			row "worker CPU, $n idle sessions over $s services" \
				"$(fmt "$f" %.0f) us/sample (at ${W_FAST_MS} ms); $(fmt "$d" %.0f) us/sample, $(fmt "$p" %.3f) % of one core at 1000 ms" \
				"linear in sessions" "see below"
		fi
	done
	# flat in services: the same sessions, in the same number of services,
	# with s_hi instead of s_lo services listed
	r_lo=$(awk -v a="${WCOST[$s_hi.$n_lo.$(min2 "$s_hi" "$n_lo")]}" -v b="${WCOST[$s_lo.$n_lo.$(min2 "$s_lo" "$n_lo")]}" \
		'BEGIN {if (a == "nan" || b == "nan" || b == 0) print "nan"; else printf "%.3f", a / b}')
	r_hi=$(awk -v a="${WCOST[$s_hi.$n_hi.$s_lo]}" -v b="${WCOST[$s_lo.$n_hi.$s_lo]}" \
		'BEGIN {if (a == "nan" || b == "nan" || b == 0) print "nan"; else printf "%.3f", a / b}')
	r_max=$(awk -v a="$r_lo" -v b="$r_hi" 'BEGIN {if (a == "nan" || b == "nan") print "nan"; else print (a > b ? a : b)}')
	row "worker CPU, $s_hi vs $s_lo listed services (same sessions)" \
		"$r_lo at $n_lo sessions; $r_hi at $n_hi sessions in $s_lo services" \
		"<= 1.20 (flat)" "$(meets "$r_max" "<= 1.20")"
fi

# ---------------------------------------------------------------------------
# 5. scale of services: 1000 listed vs 10
# ---------------------------------------------------------------------------
if want scale && [ "$HAVE_GUARD" = 1 ]; then
	log "scale: login throughput with 1000 vs 10 listed services, $PAIRS pairs x ${SECS}s"
	new_cluster s10 "max_connections = 300
$PRELOAD
dbpool_guard.max_services = 1100
dbpool_guard.budgets = '$(listed_budgets 10)'"
	new_cluster s1000 "max_connections = 300
$PRELOAD
dbpool_guard.max_services = 1100
dbpool_guard.budgets = '$(listed_budgets 1000)'"
	n=$(q s1000 "SELECT count(*) FROM dbpool_guard.status WHERE service <> '*'")
	ab_pairs s1000 s10
	read -r med mn mx <<<"$(printf '%s' "$AB_RATIOS" | mmm)"
	read -r ga _ _ <<<"$(printf '%s' "$AB_A" | mmm)"
	read -r pa _ _ <<<"$(printf '%s' "$AB_B" | mmm)"
	row "login throughput 1000/10 listed services ($PAIRS pairs)" \
		"$(fmt "$med" %.3f) (min $(fmt "$mn" %.3f), max $(fmt "$mx" %.3f)); $(fmt "$ga" %.0f) vs $(fmt "$pa" %.0f) logins/s; $n rows in status" \
		">= 0.98" "$(meets "$med" ">= 0.98")"
	drop_cluster s1000
	drop_cluster s10
fi

# ---------------------------------------------------------------------------
# 6. the status view with many listed services
# ---------------------------------------------------------------------------
# query_ms CLUSTER SQL RUNS -> "median min max" in ms, psql's \timing of RUNS
# executions in one session after one untimed run; rows go to /dev/null
query_ms() {
	local c=$1 sql=$2 runs=$3 i
	{
		echo '\o /dev/null'
		echo "$sql"
		echo '\timing on'
		for ((i = 0; i < runs; i++)); do echo "$sql"; done
	} | "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/$c" -p "${PORT[$c]}" -U postgres -d postgres |
		awk '/^Time: / {print $2}' | mmm
}

# status_case LABEL: time SELECT * and SELECT count(*) on the status view of
# cluster "status" as it is now, and add a row
status_case() {
	local label=$1 rows buckets m1 n1 x1 m2 n2 x2
	rows=$(q status "SELECT count(*) FROM dbpool_guard.status")
	buckets=$(q status "SELECT count(*) FROM dbpool_guard.status WHERE service <> '*' AND admitted_total > 0")
	read -r m1 n1 x1 <<<"$(query_ms status 'SELECT * FROM dbpool_guard.status;' "$STATUS_RUNS")"
	read -r m2 n2 x2 <<<"$(query_ms status 'SELECT count(*) FROM dbpool_guard.status;' "$STATUS_RUNS")"
	log "  $label: $rows rows, $buckets with a bucket: SELECT * median $m1 ms (min $n1, max $x1); count(*) median $m2 ms (min $n2, max $x2)"
	row "status view, $STATUS_SERVICES listed services, $label ($STATUS_RUNS runs)" \
		"SELECT * $(fmt "$m1" %.1f) ms (min $(fmt "$n1" %.1f), max $(fmt "$x1" %.1f)); count(*) $(fmt "$m2" %.1f) ms (min $(fmt "$n2" %.1f), max $(fmt "$x2" %.1f)); $rows rows, $buckets buckets" \
		"(none)" ""
	STATUS_MEDIAN[$label]=$m1
}

declare -A STATUS_MEDIAN=()
if want status && [ "$HAVE_GUARD" = 1 ]; then
	log "status view: SELECT * FROM dbpool_guard.status with $STATUS_SERVICES listed services (max_services = $STATUS_SERVICES), $STATUS_RUNS runs per case"
	# services st-C-K: chunk C of at most 250, so that one pgstorm run per
	# chunk logs each of its services in once and they all fit under
	# max_connections at once (pgstorm holds a round's sessions until the
	# round is over)
	sb="" chunks=()
	for ((i = 0; i < STATUS_SERVICES; i += 250)); do
		n=$((STATUS_SERVICES - i < 250 ? STATUS_SERVICES - i : 250))
		chunks+=("$n")
		for ((k = 1; k <= n; k++)); do sb+="st-${#chunks[@]}-$k=10, "; done
	done
	new_cluster status "max_connections = 300
$PRELOAD
dbpool_guard.max_services = $STATUS_SERVICES
dbpool_guard.budgets = '${sb%, }'"
	# listed, never logged in: no bucket yet, every row from the list alone
	status_case "no bucket"
	# one login per listed service gives each its bucket
	t0=$(date +%s) att=0 adm=0 other=0
	for c in "${!chunks[@]}"; do
		n=${chunks[$c]}
		line=$(storm status -U bench -d postgres -a "st-$((c + 1))-%d" -A "$n" -n "$n" -c 25 -H 0 -q --csv | tail -1)
		IFS=, read -r _ a b _ <<<"$line"
		att=$((att + a)) adm=$((adm + b)) other=$((other + a - b))
		wait_for status "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench'" 0 60 || true
	done
	log "  $att logins in $(($(date +%s) - t0)) s: $adm admitted, $other not"
	status_case "with buckets"
	# a bucket adds a copy and a match per row: linear, a small factor;
	# matching every entry against every bucket made it 9-12x (issue 13)
	v=$(ratio "${STATUS_MEDIAN[with buckets]}" "${STATUS_MEDIAN[no bucket]}")
	row "status view: with/without buckets, SELECT * median" "$(fmt "$v" %.2f)" "<= 2.0 (linear)" "$(meets "$v" "<= 2.0")"
	drop_cluster status
fi

# ---------------------------------------------------------------------------
# 7. churn: a pool sized exactly at its cap recycles its connections (1.5)
# ---------------------------------------------------------------------------
# status counters of one service: "admitted rejected waited wait_timeouts"
svc_totals() {
	q "$1" "SELECT admitted_total || ' ' || rejected_total || ' ' || waited_total || ' ' || wait_timeouts_total
		FROM dbpool_guard.status WHERE service = '$2'"
}

if want churn; then
	if [ "$HAVE_ELASTIC" = 1 ]; then
		half=$(awk -v s="$CHURN_SECS" 'BEGIN {printf "%.1f", s / 2}')
		log "churn: $CHURN_CAP clients on service churn (cap $CHURN_CAP), each holding its connection ${CHURN_HOLD}s and reconnecting at once;"
		log "  max_wait 0 vs $CHURN_WAIT ms, ${CHURN_SECS}s each, in halves of ${half}s in the order 0, $CHURN_WAIT, $CHURN_WAIT, 0"
		new_cluster churn "max_connections = 100
$PRELOAD
dbpool_guard.budgets = 'churn=$CHURN_CAP@1.0, wide=50, *=10'"
		declare -A CH=()
		for mw in 0 "$CHURN_WAIT"; do
			for f in att adm ref ours other lost waited wto rej peak smax swait; do CH[$mw.$f]=0; done
		done
		for mw in 0 "$CHURN_WAIT" "$CHURN_WAIT" 0; do
			set_conf churn "dbpool_guard.max_wait = $mw
dbpool_guard.max_waiters = $CHURN_CAP
dbpool_guard.max_waiters_total = $((2 * CHURN_CAP))"
			sleep 0.5
			wait_for churn "SELECT connections FROM dbpool_guard.status WHERE service = 'churn'" 0 10 ||
				log "  sessions of the previous half still counted"
			q churn "SELECT dbpool_guard.reset_counters()" >/dev/null
			read -r b_adm b_rej b_wait b_wto <<<"$(svc_totals churn churn)"
			sample churn '{churn}' "$(awk -v h="$half" 'BEGIN {print h + 5}')" 0.5
			line=$(storm churn -U bench -d postgres -a churn -n "$CHURN_CAP" -e "$CHURN_HOLD" -L "$half" -t 30 \
				--csv --dump "$WORK/churn.$mw.csv" | tail -1)
			sampled
			# total,attempted,admitted,refused,refused_ours,client_errors,timeouts,lost,...
			IFS=, read -r _ att adm ref rours cli tmo lost _ <<<"$line"
			read -r a_adm a_rej a_wait a_wto <<<"$(svc_totals churn churn)"
			peak=$(q churn "SELECT peak_connections FROM dbpool_guard.status WHERE service = 'churn'")
			log "  max_wait $mw: $att logins, $adm admitted, $ref refused ($rours ours), $((cli + tmo)) other failures, $lost lost;" \
				"view: admitted +$((a_adm - b_adm)), rejected +$((a_rej - b_rej)), waited +$((a_wait - b_wait)), wait timeouts +$((a_wto - b_wto));" \
				"peak_connections $peak, sampled max ${SMAX[churn.conn]:-?} connections, ${SMAX[churn.waiting]:-?} waiting (${SMAX[samples]:-?} samples)"
			CH[$mw.att]=$((CH[$mw.att] + att)) CH[$mw.adm]=$((CH[$mw.adm] + adm))
			CH[$mw.ref]=$((CH[$mw.ref] + ref)) CH[$mw.ours]=$((CH[$mw.ours] + rours))
			CH[$mw.other]=$((CH[$mw.other] + cli + tmo)) CH[$mw.lost]=$((CH[$mw.lost] + lost))
			CH[$mw.waited]=$((CH[$mw.waited] + a_wait - b_wait)) CH[$mw.wto]=$((CH[$mw.wto] + a_wto - b_wto))
			CH[$mw.rej]=$((CH[$mw.rej] + a_rej - b_rej))
			((peak > CH[$mw.peak])) && CH[$mw.peak]=$peak
			((${SMAX[churn.conn]:-0} > CH[$mw.smax])) && CH[$mw.smax]=${SMAX[churn.conn]:-?}
			((${SMAX[churn.waiting]:-0} > CH[$mw.swait])) && CH[$mw.swait]=${SMAX[churn.waiting]:-?}
			if ((peak > CHURN_CAP)) || ((${SMAX[churn.conn]:-0} > CHURN_CAP)); then
				broken "churn, max_wait $mw: service churn held more than its cap $CHURN_CAP (peak_connections $peak, sampled ${SMAX[churn.conn]:-?})"
			fi
		done
		wait_for churn "SELECT connections FROM dbpool_guard.status WHERE service = 'churn'" 0 10 ||
			broken "churn: $(q churn "SELECT connections FROM dbpool_guard.status WHERE service = 'churn'") slots still in use 10 s after the last client closed"
		# for reference: the same pool against PostgreSQL's role CONNECTION
		# LIMIT (role rchurn, limit CHURN_CAP), as service "wide" (budget 50),
		# which the guard never refuses; one half
		set_conf churn "dbpool_guard.max_wait = 0"
		sleep 0.5
		line=$(storm churn -U rchurn -d postgres -a wide -n "$CHURN_CAP" -e "$CHURN_HOLD" -L "$half" -t 30 --csv | tail -1)
		IFS=, read -r _ att adm ref rours cli tmo lost _ <<<"$line"
		log "  role CONNECTION LIMIT $CHURN_CAP: $att logins, $adm admitted, $ref refused ($rours by the guard), $((cli + tmo)) other failures, $lost lost"
		role_churn="$ref refusals ($rours by the guard) in $att logins over ${half}s, $adm admitted"
		for mw in 0 "$CHURN_WAIT"; do
			ap50=$(awk -F, '$2 == "admitted" {print $5}' "$WORK/churn.$mw.csv" | pctl 0.50)
			ap99=$(awk -F, '$2 == "admitted" {print $5}' "$WORK/churn.$mw.csv" | pctl 0.99)
			if [ "$mw" = 0 ]; then tgt="(refusals: 1.4's behaviour)"; met=""; else
				tgt="0 refusals"; met=$([ "${CH[$mw.ref]}" = 0 ] && [ "${CH[$mw.other]}" = 0 ] && echo yes || echo NO); fi
			row "churn: pool of $CHURN_CAP at cap $CHURN_CAP, hold ${CHURN_HOLD}s, reconnect at once, ${CHURN_SECS}s, max_wait = $mw ms" \
				"${CH[$mw.ref]} refusals (${CH[$mw.ours]} ours; view: ${CH[$mw.rej]}, of which wait timeouts ${CH[$mw.wto]}) in ${CH[$mw.att]} logins, ${CH[$mw.adm]} admitted ($(awk -v a="${CH[$mw.adm]}" -v s="$CHURN_SECS" 'BEGIN {printf "%.0f", a / s}')/s), ${CH[$mw.waited]} after a wait; admitted p50/p99 $(fmt "$ap50" %.1f)/$(fmt "$ap99" %.1f) ms; ${CH[$mw.other]} other failures, ${CH[$mw.lost]} lost; peak_connections ${CH[$mw.peak]}, sampled max ${CH[$mw.smax]}, waiting max ${CH[$mw.swait]}" \
				"$tgt" "$met"
		done
		row "churn reference: the same pool against role CONNECTION LIMIT $CHURN_CAP (no service cap reached)" "$role_churn" "(none)" ""
		drop_cluster churn
	else
		row "churn (pool at its cap, max_wait 0 vs $CHURN_WAIT)" "n/a (needs dbpool_guard 1.5)" "" ""
	fi
fi

# ---------------------------------------------------------------------------
# 8. fifo: 3 x cap logins at once wait their turn, in order (1.5)
# ---------------------------------------------------------------------------
# fifo_events LOGFILE OFFSET SERVICE: the DEBUG1 lines of the guard about
# SERVICE after byte OFFSET, in log order: "W ticket" and "A ticket waited_ms"
fifo_events() {
	tail -c +"$(($2 + 1))" "$1" | sed -nE \
		-e "s/.*dbpool_guard: login of service \"$3\" waits, ticket ([0-9]+).*/W \\1/p" \
		-e "s/.*dbpool_guard: login of service \"$3\" admitted after waiting ([0-9]+) ms, ticket ([0-9]+).*/A \\2 \\1/p"
}

# fifo_check CAP < events -> "waits admitted inversions block_violations
# unknown duplicates ticket..." where inversions counts pairs of admitted
# tickets in decreasing log order, and a block violation is an admitted
# ticket logged after one of a later block (tickets ranked among the
# round's waiters, blocks of CAP: the waiters a wave of CAP releases hands
# its slots to)
fifo_check() {
	awk -v cap="$1" '
	$1 == "W" { nw++; wt[nw] = $2 + 0 }
	$1 == "A" { na++; at[na] = $2 + 0; if (seen[$2 + 0]++) dup++ }
	END {
		for (i = 1; i <= nw; i++) {
			r = 0
			for (j = 1; j <= nw; j++) if (wt[j] < wt[i]) r++
			if ((wt[i] "") in rank) dup++
			rank[wt[i] ""] = r
		}
		inv = 0
		for (i = 1; i <= na; i++) for (j = i + 1; j <= na; j++) if (at[i] > at[j]) inv++
		maxb = -1; bv = 0; unk = 0; seq = ""
		for (i = 1; i <= na; i++) {
			seq = seq " " at[i]
			if (!((at[i] "") in rank)) { unk++; continue }
			b = int(rank[at[i] ""] / cap)
			if (b < maxb) bv++
			if (b > maxb) maxb = b
		}
		printf "%d %d %d %d %d %d%s\n", nw, na, inv, bv, unk, dup + 0, seq
	}'
}

if want fifo; then
	if [ "$HAVE_ELASTIC" = 1 ]; then
		fifo_n=$((3 * FIFO_CAP))
		log "fifo: $FIFO_ROUNDS rounds of $fifo_n logins at once, service cap $FIFO_CAP, each held ${FIFO_HOLD}s from its admission" \
			"(+ k x ${FIFO_STAGGER}s in odd rounds), max_wait $FIFO_WAIT ms, max_waiters $fifo_n"
		new_cluster fifo "max_connections = 100
$PRELOAD
dbpool_guard.budgets = 'fifo=$FIFO_CAP@1.0, *=10'
log_min_messages = debug1"
		set_conf fifo "dbpool_guard.max_wait = $FIFO_WAIT
dbpool_guard.max_waiters = $fifo_n
dbpool_guard.max_waiters_total = $((fifo_n + 10))"
		sleep 0.5
		f_att=0 f_adm=0 f_ref=0 f_other=0 f_peak=0 f_smax=0 f_swait=0 f_inv_st=0 f_inv_sim=0 f_bv=0 f_unk=0 f_dup=0
		f_waits="" f_seq=""
		for ((r = 1; r <= FIFO_ROUNDS; r++)); do
			if ((r % 2)); then stag=$FIFO_STAGGER; else stag=0; fi
			wait_for fifo "SELECT connections FROM dbpool_guard.status WHERE service = 'fifo'" 0 10 ||
				log "  round $r: sessions of the previous round still counted"
			q fifo "SELECT dbpool_guard.reset_counters()" >/dev/null
			off=$(stat -c %s "$WORK/fifo/log")
			sample fifo '{fifo}' 30 0.5
			line=$(storm fifo -U bench -d postgres -a fifo -n "$fifo_n" -e "$FIFO_HOLD" --stagger "$stag" -t 30 \
				--csv --dump "$WORK/fifo.$r.csv" | tail -1)
			sampled
			IFS=, read -r _ att adm ref rours cli tmo lost _ <<<"$line"
			peak=$(q fifo "SELECT peak_connections FROM dbpool_guard.status WHERE service = 'fifo'")
			fifo_events "$WORK/fifo/log" "$off" fifo >"$WORK/fifo.$r.events"
			read -r nw na inv bv unk dup seq <<<"$(fifo_check "$FIFO_CAP" <"$WORK/fifo.$r.events")"
			log "  round $r (stagger ${stag}s): $adm of $att admitted, $ref refused, $((cli + tmo)) other failures, $lost lost;" \
				"$nw waited, $na admitted after waiting, in log order: $seq; inversions $inv, block violations $bv;" \
				"peak_connections $peak, sampled max ${SMAX[fifo.conn]:-?} connections, ${SMAX[fifo.waiting]:-?} waiting"
			f_att=$((f_att + att)) f_adm=$((f_adm + adm)) f_ref=$((f_ref + ref)) f_other=$((f_other + cli + tmo + lost))
			((peak > f_peak)) && f_peak=$peak
			((${SMAX[fifo.conn]:-0} > f_smax)) && f_smax=${SMAX[fifo.conn]:-?}
			((${SMAX[fifo.waiting]:-0} > f_swait)) && f_swait=${SMAX[fifo.waiting]:-?}
			if ((r % 2)); then f_inv_st=$((f_inv_st + inv)); else f_inv_sim=$((f_inv_sim + inv)); fi
			f_bv=$((f_bv + bv)) f_unk=$((f_unk + unk)) f_dup=$((f_dup + dup))
			f_waits+="$nw/$na "
			[ -n "$f_seq" ] || f_seq=$seq
			if ((peak > FIFO_CAP)) || ((${SMAX[fifo.conn]:-0} > FIFO_CAP)); then
				broken "fifo round $r: service fifo held more than its cap $FIFO_CAP (peak_connections $peak, sampled ${SMAX[fifo.conn]:-?})"
			fi
			((bv == 0)) || broken "fifo round $r: $bv waiters admitted after a waiter that queued a whole wave later (tickets in log order: $seq)"
			((unk == 0)) || broken "fifo round $r: $unk admitted tickets were never logged as waiting"
			((dup == 0)) || broken "fifo round $r: $dup tickets logged twice"
			((na == nw)) || log "  round $r: $nw logins waited but $na were logged as admitted after waiting"
		done
		row "fifo: $FIFO_ROUNDS rounds x $fifo_n logins at once, cap $FIFO_CAP, hold ${FIFO_HOLD}s, max_wait $FIFO_WAIT ms" \
			"$f_adm of $f_att admitted, $f_ref refused, $f_other other; waited/admitted-after-waiting per round (expect $((2 * FIFO_CAP))): ${f_waits% }; peak_connections max $f_peak, sampled max $f_smax connections and $f_swait waiting" \
			"all admitted, <= $FIFO_CAP at once" "$([ "$f_adm" = "$f_att" ] && ((f_peak <= FIFO_CAP)) && echo yes || echo NO)"
		row "fifo: admission order (server log tickets)" \
			"staggered rounds: $f_inv_st inversions; simultaneous releases: $f_inv_sim inversions in log order; waves out of order: $f_bv; unknown tickets $f_unk; e.g. round 1: $f_seq" \
			"0 (staggered) / 0 waves" "$([ "$f_inv_st" = 0 ] && [ "$f_bv" = 0 ] && [ "$f_unk" = 0 ] && echo yes || echo NO)"
		drop_cluster fifo
	else
		row "fifo (3 x cap logins wait in order)" "n/a (needs dbpool_guard 1.5)" "" ""
	fi
fi

# ---------------------------------------------------------------------------
# 9. burst: two services storm their caps and share a pool of 5 (1.5)
# ---------------------------------------------------------------------------
if want burst; then
	if [ "$HAVE_ELASTIC" = 1 ]; then
		bcap=$BURST_BUDGET	# threshold 1.0
		big_pool=$((BURST_POOL + BURST_EXTRA))
		log "burst: services ba, bb = $BURST_BUDGET+$BURST_EXTRA@1.0, burst_pool $BURST_POOL; 1 round of $BURST_N logins at once of ba alone," \
			"then $BURST_ROUNDS rounds of $BURST_N of each at once (which starts first alternates); max_wait 0;" \
			"then burst_pool $big_pool (reloaded): one round of ba alone, one of both"
		new_cluster burst "max_connections = $((2 * BURST_N + 50))
$PRELOAD
dbpool_guard.budgets = 'ba=$BURST_BUDGET+$BURST_EXTRA@1.0, bb=$BURST_BUDGET+$BURST_EXTRA@1.0, *=10'"
		set_conf burst "dbpool_guard.burst_pool = $BURST_POOL
dbpool_guard.max_wait = 0"
		sleep 0.5
		busy_sql="SELECT (SELECT coalesce(sum(connections), 0) FROM dbpool_guard.status WHERE service IN ('ba', 'bb')) + (SELECT borrowed FROM dbpool_guard.pool)"
		b_rounds=0 b_exact=0 b_nonoverlap=0 b_other=0 b_ours=0 b_ref=0 b_admlist="" b_pmax=0 b_bmax=0 b_omax=0 b_peak=0 b_drain="" b_big=""
		pool=$BURST_POOL
		for ((r = 0; r <= BURST_ROUNDS + 2; r++)); do
			if ((r == 0 || r == BURST_ROUNDS + 1)); then svcs="ba"; elif ((r % 2)); then svcs="ba bb"; else svcs="bb ba"; fi
			if ((r == BURST_ROUNDS + 1)); then
				# a pool larger than a service's burst: the burst is the limit
				pool=$big_pool
				set_conf burst "dbpool_guard.burst_pool = $pool
dbpool_guard.max_wait = 0"
				sleep 0.5
				[ "$(q burst "SELECT size FROM dbpool_guard.pool")" = "$pool" ] || log "  the pool did not grow to $pool"
			fi
			wait_for burst "$busy_sql" 0 20 || log "  round $r: slots of the previous round still in use"
			q burst "SELECT dbpool_guard.reset_counters()" >/dev/null
			sample burst '{ba,bb}' 60 0.3
			pids=()
			for sv in $svcs; do
				storm burst -U bench -d postgres -a "$sv" -n "$BURST_N" -H 3 -q --csv >"$WORK/burst.$r.$sv.out" 2>&1 &
				pids+=($!)
			done
			for p in "${pids[@]}"; do wait "$p" || true; done
			t0=$(date +%s%N)
			drained=yes
			wait_for burst "$busy_sql" 0 20 || drained=no
			b_drain+="$((($(date +%s%N) - t0) / 1000000))"$'\n'
			sampled
			expect_borrow=0 sum_borrow=0 desc=""
			for sv in $svcs; do
				IFS=, read -r _ att adm ref rours cli tmo lost _ <<<"$(tail -1 "$WORK/burst.$r.$sv.out")"
				peak=$(q burst "SELECT peak_connections FROM dbpool_guard.status WHERE service = '$sv'")
				desc+=" $sv: $adm admitted, $ref refused ($rours ours), $((cli + tmo)) other, $lost lost, peak $peak, sampled own/borrowed max ${SMAX[$sv.own]:-?}/${SMAX[$sv.borrowed]:-?};"
				b_ref=$((b_ref + ref)) b_ours=$((b_ours + rours)) b_other=$((b_other + cli + tmo + lost))
				((r == 0 || r > BURST_ROUNDS)) || b_admlist+="$adm"$'\n'
				((peak > b_peak)) && b_peak=$peak
				((${SMAX[$sv.own]:-0} > b_omax)) && b_omax=${SMAX[$sv.own]:-?}
				((${SMAX[$sv.borrowed]:-0} > b_bmax)) && b_bmax=${SMAX[$sv.borrowed]:-?}
				want_b=$((BURST_N - bcap < BURST_EXTRA ? BURST_N - bcap : BURST_EXTRA))
				expect_borrow=$((expect_borrow + want_b))
				sum_borrow=$((sum_borrow + adm - bcap))
				((adm >= bcap)) || broken "burst round $r: $sv admitted $adm < its cap $bcap: refused while an own slot was free"
				((adm <= bcap + BURST_EXTRA)) || broken "burst round $r: $sv admitted $adm (held together) > cap $bcap + burst $BURST_EXTRA"
				((peak <= bcap + BURST_EXTRA)) || broken "burst round $r: $sv peak_connections $peak > cap $bcap + burst $BURST_EXTRA"
				((${SMAX[$sv.own]:-0} <= bcap)) || broken "burst round $r: $sv sampled $((SMAX[$sv.own])) own slots > cap $bcap"
				((${SMAX[$sv.borrowed]:-0} <= BURST_EXTRA)) || broken "burst round $r: $sv sampled ${SMAX[$sv.borrowed]:-?} borrowed > burst $BURST_EXTRA"
			done
			((expect_borrow < pool)) || expect_borrow=$pool
			((${SMAX[pool]:-0} > b_pmax)) && b_pmax=${SMAX[pool]:-?}
			((${SMAX[pool]:-0} <= pool)) || broken "burst round $r: the pool lent ${SMAX[pool]:-?} slots > burst_pool $pool"
			((sum_borrow >= expect_borrow)) || broken "burst round $r: $sum_borrow slots borrowed in all, $expect_borrow were free to borrow: refused while a pool slot was free"
			[ "$drained" = yes ] || broken "burst round $r: slots or pool slots still in use 20 s after the storms ended: $(q burst "$busy_sql")"
			b_rounds=$((b_rounds + 1))
			if ((sum_borrow == expect_borrow)); then b_exact=$((b_exact + 1)); else b_nonoverlap=$((b_nonoverlap + 1)); fi
			log "  round $r ($svcs, pool $pool):$desc borrowed $sum_borrow in all (expected $expect_borrow), pool sampled max ${SMAX[pool]:-?} (${SMAX[samples]:-?} samples)"
			if ((r > BURST_ROUNDS)); then
				b_big+=" ${svcs// /+}: $(for sv in $svcs; do IFS=, read -r _ _ adm _ <<<"$(tail -1 "$WORK/burst.$r.$sv.out")"; printf '%s %s, ' "$sv" "$adm"; done)pool max ${SMAX[pool]:-?};"
			fi
		done
		read -r _ amin amax <<<"$(printf '%s' "$b_admlist" | mmm)"
		read -r _ _ dmax <<<"$(printf '%s' "$b_drain" | mmm)"
		row "burst: ba, bb = $BURST_BUDGET+$BURST_EXTRA@1.0, burst_pool $BURST_POOL, $BURST_N logins of each at once ($BURST_ROUNDS rounds, + 1 of ba alone; + 2 with burst_pool $big_pool)" \
			"both storming, pool $BURST_POOL: admitted per service and round min $amin, max $amax; borrowed in all == what was free to borrow in $b_exact of $b_rounds rounds ($b_nonoverlap above it: storms not held together); own max $b_omax, borrowed max $b_bmax, pool max $b_pmax (sampled); peak_connections max $b_peak; back to 0 (slots and pool) within $dmax ms; with pool $big_pool (admitted):$b_big" \
			"own <= $bcap, borrowed <= $BURST_EXTRA, pool <= its size, borrowed in all == free" \
			"$( ((b_omax <= bcap && b_bmax <= BURST_EXTRA && b_exact == b_rounds)) && echo yes || echo NO)"
		row "burst: refusals" "$b_ours of $b_ref with our message; $b_other other failures" "all ours" \
			"$([ "$b_ours" = "$b_ref" ] && [ "$b_other" = 0 ] && echo yes || echo NO)"
		drop_cluster burst
	else
		row "burst (two services sharing a pool)" "n/a (needs dbpool_guard 1.5)" "" ""
	fi
fi

# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------
{
	echo
	echo "dbpool_guard benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "$PGVERSION; $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)); $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
	if [ "$HAVE_GUARD" = 1 ]; then
		echo "dbpool_guard: $LIB_ID"
		[ "$(md5sum <"$PKGLIBDIR/dbpool_guard.so" | cut -c1-12)" = "$(echo "$LIB_ID" | awk '{print $3}' | tr -d ,)" ] ||
			echo "WARNING: $PKGLIBDIR/dbpool_guard.so was replaced during the run; clusters started later loaded the new one"
	fi
	echo "pgbench -n -C -c $CLIENTS -j 2 -T $SECS; $PAIRS interleaved pairs (rounds); ratios are median of per-pair ratios"
	echo
	printf '| %s | %s | %s | %s |\n' "figure" "result" "target" "met"
	printf '|---|---|---|---|\n'
	for r in "${RESULTS[@]}"; do
		IFS='|' read -r f v t m <<<"$r"
		printf '| %s | %s | %s | %s |\n' "$f" "$v" "$t" "$m"
	done
	if [ "${#WTABLE[@]}" -gt 0 ]; then
		echo
		echo "worker CPU per sample and share of one core at the default 1000 ms interval (max_connections = 1100)"
		echo
		printf '| listed services | idle sessions | services the sessions use | us/sample at %d ms (schedstat) | (utime+stime) | us/sample at 1000 ms | %% of one core at 1000 ms |\n' "$W_FAST_MS"
		printf '|---|---|---|---|---|---|---|\n'
		for r in "${WTABLE[@]}"; do
			IFS='|' read -r s n a f tk d p <<<"$r"
			printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$s" "$n" "$a" "$f" "$tk" "$d" "$p"
		done
		per_session() { # S -> us per added session between n_lo and n_hi, spread over all S
			local alo ahi
			alo=$(min2 "$1" "$n_lo") ahi=$(min2 "$1" "$n_hi")
			awk -v a="${WCOST[$1.$n_lo.$alo]:-nan}" -v b="${WCOST[$1.$n_hi.$ahi]:-nan}" -v n0="$n_lo" -v n1="$n_hi" \
				'BEGIN {if (a=="nan"||b=="nan") print "n/a"; else printf "%.3f us/sample", (b-a)/(n1-n0)}'
		}
		a_lo=$(min2 "$s_lo" "$n_lo")
		a_hi=$(min2 "$s_hi" "$n_hi")
		a_hl=$(min2 "$s_lo" "$n_hi")
		echo
		echo "per added session: $(per_session "$s_lo") with $s_lo services, $(per_session "$s_hi") with $s_hi services."
		echo "$s_hi vs $s_lo listed services: $(fmt "$(ratio "${WCOST[$s_hi.$n_lo.$a_lo]:-nan}" "${WCOST[$s_lo.$n_lo.$a_lo]:-nan}")" %.2fx) at $n_lo sessions;" \
			"at $n_hi sessions $(fmt "$(ratio "${WCOST[$s_hi.$n_hi.$a_hi]:-nan}" "${WCOST[$s_lo.$n_hi.$a_hl]:-nan}")" %.2fx) spread over all of them," \
			"$(fmt "$(ratio "${WCOST[$s_hi.$n_hi.$s_lo]:-nan}" "${WCOST[$s_lo.$n_hi.$a_hl]:-nan}")" %.2fx) in $s_lo of them."
	fi
	if [ "${#BROKEN[@]}" -gt 0 ]; then
		echo
		echo "CORRECTNESS INVARIANTS BROKEN (${#BROKEN[@]}):"
		for r in "${BROKEN[@]}"; do echo "- $r"; done
	fi
	echo
	echo "total time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
} | tee "${BENCH_OUT:-/dev/null}"
[ "${#BROKEN[@]}" -eq 0 ] || exit 3
exit 0
