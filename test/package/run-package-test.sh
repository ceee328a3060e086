#!/usr/bin/env bash
# test/package/run-package-test.sh: the Debian package test, and the PGXN
# META.json check.
#
#   sudo bash test/package/run-package-test.sh      as root (CI runs it as root)
#   bash test/package/run-package-test.sh           as a user: META.json only
#
# 1. META.json: test/package/check-meta.pl (Perl's JSON::PP; no root).
# 2. Build: a clean copy of the tree (git ls-files: tracked files plus new,
#    not ignored ones, as they are in the working tree; without git, the
#    tree minus build products) in a temporary directory owned by the
#    unprivileged test user, who runs `dpkg-buildpackage -b -us -uc` there
#    (debian/rules: dh --with pgxs, one build-NN/ per supported major).
# 3. Install test, for each major built, in a private mount namespace
#    (unshare -m) where /usr, /etc, /var/lib/dpkg and /var/log are overlays
#    whose upper layers live on a tmpfs of that namespace: `make uninstall`
#    (the files `make install` put there), `dpkg -i` of the package, `dpkg -S`
#    on the library, the control file and every SQL script (no other
#    dbpool_guard file may be there), a server started by the test user with
#    shared_preload_libraries = 'dbpool_guard', CREATE EXTENSION, one
#    admission and one refusal (SQLSTATE 53300) of service pkg-test (budget
#    1), then `dpkg -r` and no dbpool_guard file left.  Everything it
#    installs or removes vanishes with the namespace.
# 4. The machine as it was: the dbpool_guard files installed for each major
#    (sha256) and dpkg's view of dbpool packages are the same as before, and
#    no mount of the test is left.
#
# Root is needed for steps 2-4 (a mount namespace, dpkg).  As another user
# the script runs step 1 and counts steps 2-4 as one skip, unless CI=true,
# where that is a failure.  The last line is "package: N passed, N failed"
# (", N skipped" when skipping); the exit status is non-zero when anything
# failed.  The temporary directory is removed after a pass, kept after a
# failure or with DBPG_KEEP_TMP=1.
#
# Needs (test/debian-packages.txt): dpkg-dev, debhelper,
# postgresql-server-dev-all (pg_buildext's pgxs debhelper add-on),
# postgresql-server-dev-NN and postgresql-NN, libkrb5-dev, util-linux.
#
# Environment: DBPG_TEST_USER (test/lib.sh), CI, DBPG_KEEP_TMP,
# DBPG_PACKAGE_TIMEOUT seconds per step (default 600).

set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/lib.sh
. "$HERE/../lib.sh"

STEP_TIMEOUT=${DBPG_PACKAGE_TIMEOUT:-600}
PKG_PATTERN='postgresql-%v-dbpool-guard'
# The overlays of the install test: what dpkg -i/-r and make uninstall
# write to.
OVERLAID="/usr /etc /var/lib/dpkg /var/log"
MOUNT_TAG=dbpool_guard-pkgtest

is_ci()
{
	[ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]
}

# One result line, shown and appended to $RESULTS (counted at the end).
ok()
{
	echo "ok - $*"
	echo "ok $*" >>"$RESULTS"
}

not_ok()
{
	echo "not ok - $*"
	echo "not_ok $*" >>"$RESULTS"
}

# check NAME COMMAND...: ok when COMMAND succeeds (returns 0 either way).
check()
{
	local name=$1
	shift
	if "$@"; then
		ok "$name"
	else
		not_ok "$name"
	fi
}

# The dbpool_guard files installed for major $1, one absolute path a line.
ext_files()
{
	local pgc=/usr/lib/postgresql/$1/bin/pg_config libdir sharedir
	libdir=$("$pgc" --pkglibdir)
	sharedir=$("$pgc" --sharedir)
	{
		find "$libdir" -maxdepth 1 -name 'dbpool_guard*' ! -type d
		find "$libdir/bitcode" -maxdepth 1 -name 'dbpool_guard*' ! -type d
		find "$libdir/bitcode/dbpool_guard" ! -type d
		find "$sharedir/extension" -maxdepth 1 -name 'dbpool_guard*' ! -type d
	} 2>/dev/null | sort
}

# ------------------------------------------------------------------------
# Inside the mount namespace (the script runs itself with --inside WORK).

inner_cleanup()
{
	local pid
	set +e
	for pid in "${PM_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -INT "$pid"
			for _ in $(seq 1 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null && kill -QUIT "$pid"
		fi
	done
}

# psql as user $2 with application_name $3 to the server of major $1.
pkg_psql()
{
	local v=$1 user=$2 app=$3
	shift 3
	runuser -u "$DBPG_RUN_USER" -- env HOME="$WORK" PGCONNECT_TIMEOUT=10 \
		timeout 120 "/usr/lib/postgresql/$v/bin/psql" -X -q -At \
		"host=$RUN/sock-$v dbname=postgres user=$user application_name=$app" "$@"
}

# The install test for major $1; the package is in $WORK/build.
inner_version()
{
	local v=$1 pgc=/usr/lib/postgresql/$1/bin/pg_config pkg deb sharedir libdir
	local left f owner bad data pid out status
	pkg=${PKG_PATTERN//%v/$v}
	sharedir=$("$pgc" --sharedir)
	libdir=$("$pgc" --pkglibdir)
	deb=$(ls "$WORK"/build/"${pkg}"_*.deb 2>/dev/null | head -n 1 || true)
	if [ -z "$deb" ]; then
		not_ok "PostgreSQL $v: no ${pkg}_*.deb was built"
		return 0
	fi

	dbpg_say "PostgreSQL $v: $(basename "$deb")"

	# Remove what `make install` put there, then whatever else an older
	# install left (a file no longer in DATA), so that every dbpool_guard
	# file after dpkg -i is the package's.
	make -C "$SRC" --no-print-directory -s uninstall PG_CONFIG="$pgc" >"$WORK/uninstall-$v.log" 2>&1 ||
		{ cat "$WORK/uninstall-$v.log"; not_ok "PostgreSQL $v: make uninstall"; return 0; }
	left=$(ext_files "$v")
	if [ -n "$left" ]; then
		dbpg_note "not removed by make uninstall (left by an older install), removed here:"
		echo "$left" | sed 's/^/      /'
		echo "$left" | xargs rm -f
	fi
	check "PostgreSQL $v: make uninstall, no dbpool_guard file left" test -z "$(ext_files "$v")"

	if ! dpkg -i "$deb" >"$WORK/dpkg-i-$v.log" 2>&1; then
		cat "$WORK/dpkg-i-$v.log"
		not_ok "PostgreSQL $v: dpkg -i $(basename "$deb")"
		return 0
	fi
	status=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$pkg" 2>/dev/null || true)
	check "PostgreSQL $v: dpkg -i $(basename "$deb") ($status)" test "${status%% *}" = installed

	# dpkg -S: the library, the control file and every SQL script of the
	# tree belong to the package, and so does every dbpool_guard file there.
	bad=0
	for f in "$libdir/dbpool_guard.so" "$sharedir/extension/dbpool_guard.control" \
		$(cd "$SRC/sql" && ls dbpool_guard--*.sql | sed "s|^|$sharedir/extension/|") \
		$(ext_files "$v"); do
		owner=$(dpkg -S "$f" 2>/dev/null | sed -E 's/: .*//' || true)
		if [ ! -f "$f" ] || [ "$owner" != "$pkg" ]; then
			echo "    $f: ${owner:-not owned by any package}$([ -f "$f" ] || echo ', missing')"
			bad=1
		fi
	done
	check "PostgreSQL $v: dpkg -S: $pkg owns dbpool_guard.so, dbpool_guard.control, $(cd "$SRC/sql" && ls dbpool_guard--*.sql | wc -l) SQL scripts and every dbpool_guard file" \
		test "$bad" = 0

	# A server preloading the package's library; its files on the tmpfs, in
	# a directory of the test user's, its log in $WORK.
	data=$RUN/data-$v
	runuser -u "$DBPG_RUN_USER" -- mkdir -p "$RUN/sock-$v"
	if ! runuser -u "$DBPG_RUN_USER" -- env HOME="$WORK" "/usr/lib/postgresql/$v/bin/initdb" \
		-D "$data" -U postgres -A trust --no-sync --no-instructions >"$WORK/initdb-$v.log" 2>&1; then
		cat "$WORK/initdb-$v.log"
		not_ok "PostgreSQL $v: initdb"
		return 0
	fi
	cat >>"$data/postgresql.conf" <<EOF

# --- test/package/run-package-test.sh ---
listen_addresses = ''
unix_socket_directories = '$RUN/sock-$v'
log_line_prefix = '%m [%p] %e %q%u@%d '
shared_preload_libraries = 'dbpool_guard'
dbpool_guard.budgets = 'pkg-test=1'
EOF
	if ! runuser -u "$DBPG_RUN_USER" -- env HOME="$WORK" timeout 120 \
		"/usr/lib/postgresql/$v/bin/pg_ctl" -D "$data" -l "$WORK/server-$v.log" -w -s start; then
		tail -n 30 "$WORK/server-$v.log"
		not_ok "PostgreSQL $v: server with shared_preload_libraries = 'dbpool_guard' starts"
		return 0
	fi
	pid=$(head -n 1 "$data/postmaster.pid")
	PM_PIDS+=("$pid")
	ok "PostgreSQL $v: server with shared_preload_libraries = 'dbpool_guard' starts (PID $pid)"

	out=$(pkg_psql "$v" postgres pkg-admin -v ON_ERROR_STOP=1 \
		-c 'CREATE EXTENSION dbpool_guard' -c 'CREATE ROLE app LOGIN' \
		-c "SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard'" 2>&1) || true
	check "PostgreSQL $v: CREATE EXTENSION dbpool_guard (version ${out%%$'\n'*})" \
		test "$out" = "$(sed -nE "s/^default_version *= *'([^']*)'.*/\1/p" "$SRC/dbpool_guard.control")"

	# Role app as service pkg-test (budget 1, so cap 1): the first login is
	# admitted; while it holds the slot, a second one (psql's \!) is refused.
	out=$(printf '%s\n' \
		"SELECT 'admitted ' || current_user || ' ' || current_setting('application_name');" \
		"\\! PGCONNECT_TIMEOUT=10 /usr/lib/postgresql/$v/bin/psql -X -At 'host=$RUN/sock-$v dbname=postgres user=app application_name=pkg-test' -c 'SELECT 1' >$RUN/second-$v.out 2>&1; echo \"second login: exit status \$?\"" |
		pkg_psql "$v" app pkg-test -v ON_ERROR_STOP=1 2>&1) || true
	echo "$out" | sed 's/^/    /'
	sed 's/^/    /' "$RUN/second-$v.out" 2>/dev/null || true
	check "PostgreSQL $v: admission: role app, service pkg-test" \
		test "$(echo "$out" | head -n 1)" = "admitted app pkg-test"
	check "PostgreSQL $v: refusal: the second pkg-test login fails with 'too many connections for service \"pkg-test\"'" \
		grep -q 'FATAL:  too many connections for service "pkg-test"' "$RUN/second-$v.out"
	out=$(pkg_psql "$v" postgres pkg-admin \
		-c "SELECT admitted_total || ' admitted, ' || rejected_total || ' rejected' FROM dbpool_guard.status WHERE service = 'pkg-test'" 2>&1) || true
	check "PostgreSQL $v: SQLSTATE 53300 in the server log, dbpool_guard.status says ${out%%$'\n'*}" \
		eval 'grep -q "53300 app@postgres FATAL:  too many connections for service \"pkg-test\"" "$WORK/server-$v.log" &&
			test "$out" = "1 admitted, 1 rejected"'

	runuser -u "$DBPG_RUN_USER" -- env HOME="$WORK" timeout 120 \
		"/usr/lib/postgresql/$v/bin/pg_ctl" -D "$data" -m fast -w -s stop || true
	inner_cleanup
	PM_PIDS=()

	if ! dpkg -r "$pkg" >"$WORK/dpkg-r-$v.log" 2>&1; then
		cat "$WORK/dpkg-r-$v.log"
		not_ok "PostgreSQL $v: dpkg -r $pkg"
		return 0
	fi
	# (a package without conffiles is forgotten: no status at all)
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	status=${status:-not-installed}
	left=$(ext_files "$v")
	[ -z "$left" ] || echo "$left" | sed 's/^/    left: /'
	check "PostgreSQL $v: dpkg -r $pkg (status ${status:-unknown}), no dbpool_guard file left" \
		test "$status" = not-installed -a -z "$left"
}

inner_main()
{
	local d n
	PM_PIDS=()
	trap inner_cleanup EXIT
	mount -t tmpfs -o mode=0755 "$MOUNT_TAG" "$NS"
	for d in $OVERLAID; do
		n=$(echo "$d" | tr / _)
		mkdir -p "$NS/upper$n" "$NS/work$n"
		mount -t overlay "$MOUNT_TAG" \
			-o "lowerdir=$d,upperdir=$NS/upper$n,workdir=$NS/work$n" "$d"
	done
	mkdir -m 0700 "$RUN"
	chown "$DBPG_RUN_USER:" "$RUN"
	dbpg_note "private mount namespace: $OVERLAID are overlays on a tmpfs"
	for v in $VERSIONS; do
		inner_version "$v"
	done
}

if [ "${1:-}" = --inside ]; then
	WORK=$2 NS=$2/ns RUN=$2/ns/run SRC=$2/build/dbpool-guard
	DBPG_RUN_USER=$3
	VERSIONS=$4
	RESULTS=$5
	inner_main
	exit 0
fi

# ------------------------------------------------------------------------
# Outside: META.json, the build, the namespace, the machine as it was.

WORK=
RESULTS=$(mktemp "${TMPDIR:-/tmp}/dbpool_guard-package-results.XXXXXX")
SKIPPED=0
SUMMARY_DONE=0
T0=$(date +%s)

summary()
{
	local p f
	p=$(grep -c '^ok ' "$RESULTS" || true)
	f=$(grep -c '^not_ok ' "$RESULTS" || true)
	echo
	if [ "$f" -gt 0 ]; then
		echo "Failed:"
		sed -n 's/^not_ok /  /p' "$RESULTS"
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "$f" -gt 0 ] || [ "${DBPG_KEEP_TMP:-0}" = 1 ]; then
			echo "Kept: $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	echo "($(($(date +%s) - T0)) s)"
	if [ "$SKIPPED" -gt 0 ]; then
		echo "package: $p passed, $f failed, $SKIPPED skipped"
	else
		echo "package: $p passed, $f failed"
	fi
	rm -f "$RESULTS"
	SUMMARY_DONE=1
	[ "$f" -eq 0 ]
}

on_exit()
{
	local rc=$?
	if [ "$SUMMARY_DONE" = 0 ]; then
		if [ "$rc" -ne 0 ]; then
			echo "not_ok run-package-test.sh stopped (exit $rc)" >>"$RESULTS"
		fi
		summary || rc=1
	fi
	exit "$rc"
}
trap on_exit EXIT

# Everything that says what dbpool_guard the machine has: the files for
# each installed major with their checksums, and dpkg's dbpool packages.
host_state()
{
	local pgc
	for pgc in /usr/lib/postgresql/*/bin/pg_config; do
		[ -x "$pgc" ] || continue
		ext_files "$(basename "$(dirname "$(dirname "$pgc")")")" | xargs -r sha256sum
	done
	dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\n' '*dbpool*' 2>/dev/null || true
}

# A clean copy of the tree in $1: with git, the tracked files and the new
# ones that are not ignored, as they are in the working tree; without, the
# tree minus build and test products.
copy_clean_tree()
{
	local dest=$1
	mkdir -p "$dest"
	if command -v git >/dev/null 2>&1 &&
		git -c safe.directory="$DBPG_ROOT" -C "$DBPG_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		dbpg_note "copy: git ls-files --cached --others --exclude-standard"
		(cd "$DBPG_ROOT" &&
			git -c safe.directory="$DBPG_ROOT" ls-files -z --cached --others --exclude-standard |
			tar --ignore-failed-read --anchored --exclude='build-[0-9]*' --null -T - -cf - 2>/dev/null) |
			tar -C "$dest" -xf -
	else
		dbpg_note "copy: no git work tree; the tree without build and test products"
		tar -C "$DBPG_ROOT" --exclude=./.git --exclude=./tmp_check --exclude=./tmp_regress \
			--exclude=./results --exclude=./log --exclude='./regression.*' \
			--exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude='./build-[0-9]*' \
			--exclude=./debian/.debhelper --exclude='./debian/postgresql-*-dbpool-guard' \
			--exclude=./debian/files --exclude='./debian/*.substvars' \
			--exclude=./debian/debhelper-build-stamp -cf - . | tar -C "$dest" -xf -
	fi
}

# ---------------------------------------------------------------- META.json

dbpg_say "META.json (test/package/check-meta.pl)"
if out=$(perl "$HERE/check-meta.pl" "$DBPG_ROOT" 2>&1); then
	echo "$out" | grep -vE '^(ok [0-9]+ |1\.\.)' | sed 's/^/    /'
	ok "META.json: $(echo "$out" | tail -n 1 | sed 's/^META: //')"
else
	echo "$out" | sed 's/^/    /'
	not_ok "META.json: $(echo "$out" | tail -n 1 | sed 's/^META: //')"
fi

# ---------------------------------------------------------------- root?

if ! dbpg_is_root; then
	if is_ci; then
		not_ok "package: needs root (a mount namespace, dpkg -i/-r), and CI=true"
	else
		dbpg_say "Package: skipped, needs root (a mount namespace, dpkg -i/-r): sudo bash test/package/run-package-test.sh"
		SKIPPED=1
	fi
	exit 0
fi

missing=
for c in dpkg-buildpackage dh pg_buildext unshare runuser perl make gcc; do
	command -v "$c" >/dev/null 2>&1 || missing+=" $c"
done
[ -f /usr/share/perl5/Debian/Debhelper/Sequence/pgxs.pm ] || missing+=" pgxs-debhelper-addon(postgresql-server-dev-all)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || missing+=" overlayfs"
if [ -n "$missing" ]; then
	not_ok "package: missing:$missing (Debian packages dpkg-dev debhelper postgresql-server-dev-all util-linux, see test/debian-packages.txt)"
	exit 1
fi

dbpg_setup_test_user
WORK=$(dbpg_mktemp_dir dbpool_guard-package)
BEFORE=$(host_state)

# ---------------------------------------------------------------- build

dbpg_say "Building the package from a clean copy of $DBPG_ROOT in $WORK/build, as $DBPG_RUN_USER"
SRC=$WORK/build/dbpool-guard
copy_clean_tree "$SRC"
mkdir -p "$WORK/ns"
chown -R "$DBPG_RUN_USER:" "$WORK"
VERSIONS=$(cd "$SRC" && pg_buildext supported-versions | tr '\n' ' ')
dbpg_note "majors (debian/pgversions and supported-versions): $VERSIONS"
t=$(date +%s)
rc=0
(cd "$SRC" && runuser -u "$DBPG_RUN_USER" -- env HOME="$WORK" \
	timeout --kill-after=30 "$STEP_TIMEOUT" dpkg-buildpackage -b -us -uc) \
	</dev/null >"$WORK/build.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
	tail -n 60 "$WORK/build.log"
	not_ok "dpkg-buildpackage -b -us -uc (exit $rc; log $WORK/build.log)"
	exit 1
fi
debs=$(cd "$WORK/build" && ls ./*.deb | sed 's|^\./||' | tr '\n' ' ')
want=
for v in $VERSIONS; do
	want+="${PKG_PATTERN//%v/$v} "
done
ok "dpkg-buildpackage -b -us -uc ($(($(date +%s) - t)) s): $debs"
for p in $want; do
	check "built $p" test -n "$(compgen -G "$WORK/build/${p}_*.deb" || true)"
done
for deb in "$WORK"/build/postgresql-*-dbpool-guard_*.deb; do
	dbpg_note "dpkg -c $(basename "$deb"):"
	dpkg -c "$deb" | awk '{print "      " $6}'
done

# ---------------------------------------------------------------- install

dbpg_say "Install test in a private mount namespace"
rc=0
timeout --kill-after=30 "$STEP_TIMEOUT" \
	unshare -m --propagation private -- bash "$HERE/run-package-test.sh" --inside \
	"$WORK" "$DBPG_RUN_USER" "$VERSIONS" "$RESULTS" </dev/null || rc=$?
if [ "$rc" -ne 0 ]; then
	not_ok "install test in the mount namespace (exit $rc)"
fi

# ---------------------------------------------------------------- as before

dbpg_say "The machine as it was"
AFTER=$(host_state)
if [ "$BEFORE" = "$AFTER" ]; then
	echo "$AFTER" | sed 's/^/    /'
	ok "dbpool_guard files (sha256) and dpkg's dbpool packages unchanged"
else
	diff <(echo "$BEFORE") <(echo "$AFTER") | sed 's/^/    /' || true
	not_ok "dbpool_guard files (sha256) and dpkg's dbpool packages unchanged"
fi
check "no mount of the test left" eval "! grep -q '$MOUNT_TAG' /proc/self/mountinfo"

exit 0
