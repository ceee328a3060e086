#!/bin/bash
# run-bench.sh: dbpool_guard benchmarks (docs/benchmarks.md).
#
#   test/bench/run-bench.sh                      full run, about 8 minutes on 2 cores
#   PG_CONFIG=/work/pg/17/bin/pg_config test/bench/run-bench.sh
#
# Starts its own throwaway clusters (initdb into a mktemp directory, Unix
# sockets only, as an unprivileged user when run as root), builds pgstorm,
# and prints a table: login throughput with and without dbpool_guard,
# refusal latency against PostgreSQL's role and database CONNECTION LIMIT,
# storm exactness, worker CPU cost, login throughput with 1000 listed
# services, and the time of SELECT * FROM dbpool_guard.status with 10 000
# listed services.  A benchmark, not a test: it exits 0 whether targets are met
# or not, and non-zero only when it cannot run.
#
# Environment:
#   PG_CONFIG      pg_config of the server to use (default: pg_config in PATH)
#   BENCH_USER     OS user that owns the clusters when run as root (postgres)
#   BENCH_PAIRS    A/B pairs for the throughput figures (12; at least 5)
#   BENCH_SECS     seconds per pgbench run (4)
#   BENCH_CLIENTS  pgbench clients (4)
#   BENCH_ONLY     sections to run, of: throughput latency storm worker scale status
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
ONLY=${BENCH_ONLY:-throughput latency storm worker scale status}
LAT_ROUNDS=5			# interleaved rounds of the three refusal kinds
LAT_ATTEMPTS=200		# refused logins per kind and round, one at a time
STORM_ROUNDS=20
STORM_N=200
STORM_CAP=20
ROLE_STORM_ROUNDS=10
W_FAST_MS=10			# sample_interval for the many-sample measurement
W_FAST_SECS=6
W_DEFAULT_SECS=10		# window at the default 1000 ms interval
W_SESSIONS="10 200 1000"
W_SERVICES="10 500"
STATUS_SERVICES=${BENCH_STATUS_SERVICES:-10000}	# listed, and max_services
STATUS_RUNS=${BENCH_STATUS_RUNS:-15}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	PAIRS=2 SECS=2 LAT_ROUNDS=2 LAT_ATTEMPTS=30 STORM_ROUNDS=3 ROLE_STORM_ROUNDS=2
	W_FAST_SECS=2 W_DEFAULT_SECS=3 W_SESSIONS="10 200"
	STATUS_SERVICES=${BENCH_STATUS_SERVICES:-2000} STATUS_RUNS=${BENCH_STATUS_RUNS:-3}
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
make -s -C "$HERE" PG_CONFIG="$PG_CONFIG" pgstorm >"$WORK/make-pgstorm.log" 2>&1 ||
	{ cat "$WORK/make-pgstorm.log" >&2; echo "run-bench: could not build pgstorm" >&2; exit 2; }
PGSTORM=$HERE/pgstorm

# ---------------------------------------------------------------------------
# clusters
# ---------------------------------------------------------------------------
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
		CREATE ROLE rstorm LOGIN CONNECTION LIMIT $STORM_CAP;"
	q template "CREATE DATABASE dlim CONNECTION LIMIT 1;"
	if [ "$HAVE_GUARD" = 1 ]; then
		q template "CREATE EXTENSION dbpool_guard;"
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

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "dbpool_guard benchmark: $PGVERSION, work directory $WORK, load average $LOAD_START"
make_template

# ---------------------------------------------------------------------------
# 1. login throughput, guard vs plain
# ---------------------------------------------------------------------------
if want throughput; then
	if [ "$HAVE_GUARD" = 1 ]; then
		log "login throughput: pgbench -n -C, $CLIENTS clients, $PAIRS pairs x ${SECS}s, guard vs plain"
		new_cluster plain "max_connections = 300"
		new_cluster guard "max_connections = 300
$PRELOAD
dbpool_guard.budgets = '$GUARD_BUDGETS'"
		ab_pairs guard plain
		read -r med mn mx <<<"$(printf '%s' "$AB_RATIOS" | mmm)"
		read -r ga _ _ <<<"$(printf '%s' "$AB_A" | mmm)"
		read -r pa _ _ <<<"$(printf '%s' "$AB_B" | mmm)"
		row "login throughput guard/plain ($PAIRS pairs)" \
			"$(fmt "$med" %.3f) (min $(fmt "$mn" %.3f), max $(fmt "$mx" %.3f)); $(fmt "$ga" %.0f) vs $(fmt "$pa" %.0f) logins/s" \
			">= 0.98" "$(meets "$med" ">= 0.98")"
		# "no service at its cap": nothing may have been refused
		refused=$(q guard "SELECT coalesce(sum(rejected_total), 0) FROM dbpool_guard.status")
		[ "$refused" = 0 ] || log "  note: $refused logins were refused during the throughput runs: the figure is not valid"
		drop_cluster plain
	else
		row "login throughput guard/plain" "n/a (dbpool_guard not installed)" ">= 0.98" "n/a"
	fi
fi

# ---------------------------------------------------------------------------
# 2. refusal latency: ours vs role vs database CONNECTION LIMIT
# ---------------------------------------------------------------------------
if want latency; then
	log "refusal latency: $LAT_ROUNDS rounds x $LAT_ATTEMPTS serial refused logins per kind"
	if [ -z "${PORT[guard]:-}" ] || ! [ -f "$WORK/guard/data/postmaster.pid" ]; then
		if [ "$HAVE_GUARD" = 1 ]; then
			new_cluster guard "max_connections = 300
$PRELOAD
dbpool_guard.budgets = '$GUARD_BUDGETS'"
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
	set -- $kinds
	for ((r = 1; r <= LAT_ROUNDS; r++)); do
		for k in "$@"; do
			# shellcheck disable=SC2046
			storm guard $(lat_args "$k") -n "$LAT_ATTEMPTS" -c 1 -H 0 -q --csv \
				--dump "$WORK/lat.$k.$r.csv" >"$WORK/lat.$k.$r.out"
		done
		set -- "${@:2}" "$1"	# rotate the order each round
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
		for other in role db; do
			per_round=""
			for ((r = 1; r <= LAT_ROUNDS; r++)); do
				a=$(awk -F, '$2 == "refused" {print $5}' "$WORK/lat.ours.$r.csv" | pctl 0.50)
				b=$(awk -F, '$2 == "refused" {print $5}' "$WORK/lat.$other.$r.csv" | pctl 0.50)
				per_round+="$(ratio "$a" "$b")"$'\n'
			done
			read -r med mn mx <<<"$(printf '%s' "$per_round" | mmm)"
			v=$(ratio "${P50[ours]}" "${P50[$other]}")
			if [ "$other" = role ]; then tgt="<= 1.05"; else tgt="< 1.0"; fi
			row "refusal p50 ratio ours/$other limit" \
				"$(fmt "$v" %.3f) (per round median $(fmt "$med" %.3f), min $(fmt "$mn" %.3f), max $(fmt "$mx" %.3f))" \
				"$tgt" "$(meets "$v" "$tgt")"
		done
		row "refusals carrying our message (latency runs)" "$nours of ${NREF[ours]} (other outcomes: ${BAD[ours]})" "all" \
			"$([ "$nours" = "$((LAT_ROUNDS * LAT_ATTEMPTS))" ] && echo yes || echo NO)"
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
			new_cluster guard "max_connections = 300
$PRELOAD
dbpool_guard.budgets = '$GUARD_BUDGETS'"
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
# the table
# ---------------------------------------------------------------------------
{
	echo
	echo "dbpool_guard benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "$PGVERSION; $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)); $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "pgbench -n -C -c $CLIENTS -j 2 -T $SECS; $PAIRS interleaved pairs; ratios are median of per-pair ratios"
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
	echo
	echo "total time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
} | tee "${BENCH_OUT:-/dev/null}"
exit 0
