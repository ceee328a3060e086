#!/usr/bin/env bash
# test/run-majors.sh: the whole test command (test/run-tests.sh) once per
# PostgreSQL build, one pg_config path per argument, from a clean build
# each time; prints one summary line per major and exits non-zero when
# any of them failed.
#
#   sudo test/run-majors.sh /usr/lib/postgresql/15/bin/pg_config \
#       /work/pg/16/bin/pg_config /work/pg/17/bin/pg_config /work/pg/18/bin/pg_config
#
# Builds from source are made as docs/compatibility.md describes; the
# Debian packages are installed once, by the first run.  Each run's full
# output goes to $DBPG_MAJORS_LOGDIR (default: a new directory in $TMPDIR).

set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -eq 0 ]; then
	echo "usage: $0 PG_CONFIG [PG_CONFIG ...]" >&2
	exit 2
fi
logdir=${DBPG_MAJORS_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/dbpool_guard-majors.XXXXXX")}
mkdir -p "$logdir"
chmod 755 "$logdir"

rc=0
first=1
summary=()
for pgc in "$@"; do
	if [ ! -x "$pgc" ]; then
		summary+=("$pgc: not found")
		rc=1
		continue
	fi
	version=$("$pgc" --version)
	log=$logdir/$(echo "$version" | tr -c 'A-Za-z0-9.\n' '_' | tr -d '\n').log
	echo "==> $version ($pgc): log in $log"
	start=$(date +%s)
	r=0
	if [ "$first" = 1 ]; then
		PG_CONFIG=$pgc bash "$here/run-tests.sh" >"$log" 2>&1 || r=$?
	else
		PG_CONFIG=$pgc DBPG_SKIP_APT=1 bash "$here/run-tests.sh" >"$log" 2>&1 || r=$?
	fi
	first=0
	secs=$(($(date +%s) - start))
	# the per-part lines of run-tests.sh ("    pg_regress: N passed, N failed")
	parts=$(grep -E '^ +[^ ]+: [0-9]+ passed, [0-9]+ failed$' "$log" |
		sed -E 's/^ +//' | paste -sd ';' - | sed 's/;/; /g')
	last=$(tail -n 1 "$log")
	summary+=("$version: $last in ${secs}s ($parts)")
	[ "$r" -eq 0 ] || rc=1
	echo "    $last"
done

echo
printf '%s\n' "${summary[@]}"
exit "$rc"
