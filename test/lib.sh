# shellcheck shell=bash
# test/lib.sh: shared by test/run-tests.sh and test/demo.sh.  Source it; do
# not run it.
#
# Provides: installing the Debian packages in test/debian-packages.txt,
# building and installing the extension for $PG_CONFIG, and running commands
# as an unprivileged user (initdb refuses to run as root).
#
# Environment:
#   PG_CONFIG       pg_config of the server to build for (default: pg_config)
#   DBPG_SKIP_APT   1 = never call apt-get (you installed the packages)
#   DBPG_SKIP_BUILD 1 = use the dbpool_guard already installed for PG_CONFIG
#   DBPG_TEST_USER  unprivileged user to run servers as when we are root
#                   (default: dbpg_test, created with useradd if missing)

DBPG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DBPG_PACKAGES_FILE="$DBPG_ROOT/test/debian-packages.txt"
DBPG_TEST_USER=${DBPG_TEST_USER:-dbpg_test}
PG_CONFIG=${PG_CONFIG:-pg_config}
export DEBIAN_FRONTEND=noninteractive

dbpg_say()
{
	printf '\n==> %s\n' "$*"
}

dbpg_note()
{
	printf '    %s\n' "$*"
}

dbpg_die()
{
	printf 'error: %s\n' "$*" >&2
	exit 1
}

dbpg_is_root()
{
	[ "$(id -u)" -eq 0 ]
}

# Run a command as root: directly when we are root, else through sudo.
dbpg_as_root()
{
	if dbpg_is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		dbpg_die "this step needs root and sudo is not installed: $*"
	fi
}

# Package names from test/debian-packages.txt: one per line, '#' comments.
dbpg_packages()
{
	sed -e 's/#.*//' "$DBPG_PACKAGES_FILE" | tr -s ' \t' '\n' | sed -e '/^$/d'
}

dbpg_missing_packages()
{
	local p
	for p in $(dbpg_packages); do
		if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
			echo "$p"
		fi
	done
}

# apt-get update + install of every listed package, unless all are present
# already (then no network is needed at all).
dbpg_install_packages()
{
	local all missing
	all=$(dbpg_packages | tr '\n' ' ')
	if [ "${DBPG_SKIP_APT:-0}" = 1 ]; then
		dbpg_say "Debian packages: skipped (DBPG_SKIP_APT=1)"
		return 0
	fi
	if ! command -v dpkg-query >/dev/null 2>&1; then
		dbpg_say "Debian packages: no dpkg here; install these yourself: $all"
		return 0
	fi
	missing=$(dbpg_missing_packages | tr '\n' ' ')
	if [ -z "${missing// /}" ]; then
		dbpg_say "Debian packages: all present ($all)"
		return 0
	fi
	dbpg_say "Installing Debian packages (missing: $missing)"
	dbpg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	# shellcheck disable=SC2086
	dbpg_as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends $all
}

# Absolute path of pg_config (after the packages are in).
dbpg_resolve_pg_config()
{
	local p
	p=$(command -v "$PG_CONFIG" 2>/dev/null) ||
		dbpg_die "pg_config not found: PG_CONFIG=$PG_CONFIG"
	PG_CONFIG=$p
	PG_BINDIR=$("$PG_CONFIG" --bindir)
	PG_VERSION_STRING=$("$PG_CONFIG" --version)
	export PG_CONFIG PG_BINDIR
}

# Run a command as the owner of the work tree.  Under `sudo test/...` in a
# user's clone this keeps the build products owned by that user.
dbpg_as_tree_owner()
{
	local owner
	owner=$(stat -c %U "$DBPG_ROOT")
	if dbpg_is_root && [ "$owner" != root ] && [ "$owner" != UNKNOWN ]; then
		runuser -u "$owner" -- "$@"
	else
		"$@"
	fi
}

# make WERROR=1 in the work tree, then make install (sudo only when the
# server's directories are not writable by us).
dbpg_build_and_install()
{
	local libdir sharedir
	if [ "${DBPG_SKIP_BUILD:-0}" = 1 ]; then
		dbpg_say "Build and install: skipped (DBPG_SKIP_BUILD=1); using what $PG_CONFIG's server has installed"
		return 0
	fi
	dbpg_say "Building dbpool_guard for $PG_VERSION_STRING ($PG_CONFIG)"
	# from clean: objects left by a build for another major must not be reused
	dbpg_as_tree_owner make -C "$DBPG_ROOT" --no-print-directory -s clean PG_CONFIG="$PG_CONFIG" || return 1
	dbpg_as_tree_owner make -C "$DBPG_ROOT" --no-print-directory WERROR=1 PG_CONFIG="$PG_CONFIG" || return 1
	dbpg_say "Installing into $("$PG_CONFIG" --pkglibdir)"
	libdir=$("$PG_CONFIG" --pkglibdir)
	sharedir=$("$PG_CONFIG" --sharedir)
	if [ -w "$libdir" ] && [ -w "$sharedir/extension" ]; then
		make -C "$DBPG_ROOT" --no-print-directory install PG_CONFIG="$PG_CONFIG" || return 1
	else
		dbpg_as_root make -C "$DBPG_ROOT" --no-print-directory install PG_CONFIG="$PG_CONFIG" || return 1
	fi
}

# The user that runs servers and tests: $DBPG_TEST_USER when we are root
# (created if needed), otherwise ourselves.
dbpg_setup_test_user()
{
	if dbpg_is_root; then
		if ! id -u "$DBPG_TEST_USER" >/dev/null 2>&1; then
			dbpg_say "Creating unprivileged user $DBPG_TEST_USER"
			useradd --system --user-group --no-create-home \
				--home-dir /nonexistent --shell /usr/sbin/nologin \
				"$DBPG_TEST_USER"
		fi
		DBPG_RUN_USER=$DBPG_TEST_USER
	else
		DBPG_RUN_USER=$(id -un)
	fi
}

# Run a command as the test user, from directory $1, with a usable HOME and
# the server's bin directory first in PATH.
dbpg_as_test_user_in()
{
	local dir=$1
	shift
	if dbpg_is_root; then
		(cd "$dir" && runuser -u "$DBPG_RUN_USER" -- env HOME="$dir" \
			PATH="$PG_BINDIR:$PATH" PG_CONFIG="$PG_CONFIG" "$@")
	else
		(cd "$dir" && env PATH="$PG_BINDIR:$PATH" PG_CONFIG="$PG_CONFIG" "$@")
	fi
}

# A fresh directory owned by the test user.
dbpg_mktemp_dir()
{
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	if dbpg_is_root; then
		chown "$DBPG_RUN_USER:" "$d"
	fi
	echo "$d"
}

# Copy the work tree (without .git and old test output) into $1, owned by
# the test user.
dbpg_copy_tree()
{
	local dest=$1
	tar -C "$DBPG_ROOT" --exclude=./.git --exclude=./tmp_check \
		--exclude=./tmp_regress --exclude=./results \
		--exclude=./regression.diffs --exclude=./regression.out \
		-cf - . | tar -C "$dest" -xf -
	if dbpg_is_root; then
		chown -R "$DBPG_RUN_USER:" "$dest"
	fi
}

# The value of a make variable of the project's Makefile (e.g. REGRESS).
dbpg_make_var()
{
	# shellcheck disable=SC2016
	printf 'dbpg-print-var:\n\t@echo $(%s)\n' "$1" |
		make -s --no-print-directory -C "$DBPG_ROOT" -f Makefile -f - \
			PG_CONFIG="$PG_CONFIG" dbpg-print-var
}

# ------------------------------------------------------------------------
# Counting, shared by run-tests.sh and run-long.sh.  A script calls
# dbpg_start_counts NAME; its last line is then always "N passed, N
# failed", whatever way it ends.

# Zero counts (PASSED, FAILED, FAILED_NAMES), no work tree yet (WORKDIR,
# LOGDIR), and the EXIT trap that prints the summary for script NAME.
dbpg_start_counts()
{
	PASSED=0
	FAILED=0
	FAILED_NAMES=()
	SUMMARY_DONE=0
	WORKDIR=
	# shellcheck disable=SC2034  # the callers' log directory
	LOGDIR=
	# shellcheck disable=SC2064  # NAME is expanded now, on purpose
	trap "dbpg_on_exit $1" EXIT
}

# The closing lines: what failed, where the kept tree is, the counts.
dbpg_summary()
{
	echo
	if [ "${#FAILED_NAMES[@]}" -gt 0 ]; then
		echo "Failed: ${FAILED_NAMES[*]}"
	fi
	if [ -n "$WORKDIR" ] && [ -d "$WORKDIR" ]; then
		echo "Test tree kept in $WORKDIR"
	fi
	echo "$PASSED passed, $FAILED failed"
	SUMMARY_DONE=1
}

# EXIT trap: an early exit with nothing counted as failed still counts one
# failure ($1, the script's name), then the summary.
dbpg_on_exit()
{
	local rc=$?
	if [ "$SUMMARY_DONE" = 0 ]; then
		if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
			FAILED=1
			FAILED_NAMES+=("$1(exit $rc)")
		fi
		dbpg_summary
	fi
}

# One failed step, by name.
dbpg_fail_step()
{
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$1")
}

# dbpg_run_logged SECONDS LOG COMMAND...: COMMAND as the test user in
# $WORKDIR, killed after SECONDS, its output shown and saved in LOG.
dbpg_run_logged()
{
	local secs=$1 log=$2
	shift 2
	local rc=0
	dbpg_as_test_user_in "$WORKDIR" \
		timeout --kill-after=30 "$secs" "$@" </dev/null 2>&1 |
		tee "$log" || rc=$?
	return "$rc"
}

# dbpg_add_counts NAME LABEL P F RC: add P passes and F failures to the
# totals, and one failure named NAME(exit RC) when RC is non-zero with
# nothing failed; prints "LABEL: P passed, F failed" and sets STEP_FAILED
# to the failures counted.
dbpg_add_counts()
{
	local name=$1 label=$2 p=$3 f=$4 rc=$5
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		FAILED_NAMES+=("$name(exit $rc)")
		f=1
	fi
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	# shellcheck disable=SC2034  # read by the callers
	STEP_FAILED=$f
	dbpg_note "$label: $p passed, $f failed"
}

# dbpg_count_suite NAME LOG RC: add the counts of a part that ends with its
# own "N passed, N failed" line (one pass, or one failure, when it prints
# none), and a failure when it exited non-zero with nothing failed.
dbpg_count_suite()
{
	local name=$1 log=$2 rc=$3 line p f
	line=$(grep -E '^([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" | tail -n 1 || true)
	if [ -n "$line" ]; then
		p=$(echo "$line" | sed -E 's/^([A-Za-z_-]+: )?([0-9]+) passed.*/\2/')
		f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
	elif [ "$rc" -eq 0 ]; then
		p=1 f=0
	else
		p=0 f=0
	fi
	if [ "$f" -gt 0 ]; then
		FAILED_NAMES+=("$name(exit $rc)")
	fi
	dbpg_add_counts "$name" "$name" "$p" "$f" "$rc"
}

# The common start of run-tests.sh and run-long.sh: the Debian packages,
# build and install, the test user, and a copy of the tree in a new
# directory named after $1, owned by that user, in WORKDIR.  A failed
# step is counted and ends the script (the EXIT trap prints the summary).
dbpg_prepare()
{
	if ! dbpg_install_packages; then
		dbpg_fail_step packages
		exit 1
	fi
	dbpg_resolve_pg_config
	if ! dbpg_build_and_install; then
		dbpg_fail_step build
		exit 1
	fi
	dbpg_setup_test_user
	WORKDIR=$(dbpg_mktemp_dir "$1")
	dbpg_copy_tree "$WORKDIR"
}
