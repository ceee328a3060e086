# dbpool_guard.terminate_sessions() (1.2): a service whose clients left
# sessions idle in transaction until it is at its cap; a dry run lists
# exactly them, a real run frees the budget, running and idle work is
# left alone, and each caller may end exactly the sessions
# pg_terminate_backend() would let it end.  A session that can no longer
# be signalled when its turn comes (its role became a superuser's while
# the call ran) is reported and skipped without undoing the others; and
# a role whose EXECUTE on pg_terminate_backend() was revoked cannot end
# sessions through terminate_sessions() either.

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use Time::HiRes qw(usleep);

# leaky: cap 5.  No "*" entry: unlisted names are counted, never refused.
# The callers (ops_*) are exempt, so running the function uses no slot.
my $node = guard_node('terminate',
	conf => "dbpool_guard.budgets = 'leaky=5\@1.0, other=3\@1.0, late=4\@1.0'\n"
	  . "dbpool_guard.exempt_roles = 'ops_plain, ops_signal, ops_member, ops_revoked'\n"
	  . "dbpool_guard.sample_interval = 100\n");

# terminate_sessions() is 1.2; the default version may be older
my $v = $node->safe_psql('postgres',
	"SELECT extversion FROM pg_extension WHERE extname = 'dbpool_guard'");
$node->safe_psql('postgres', "ALTER EXTENSION dbpool_guard UPDATE TO '1.2'")
  if $v eq '1.0' || $v eq '1.1';

$node->safe_psql(
	'postgres', q{
	CREATE ROLE boss LOGIN;
	CREATE ROLE ops_plain LOGIN;
	CREATE ROLE ops_signal LOGIN IN ROLE pg_signal_backend;
	CREATE ROLE ops_member LOGIN IN ROLE app;
});

# A session of a counted role, held by a background psql that does not
# stop at errors (an aborted transaction must stay open).
sub open_session
{
	my ($app, $user) = @_;
	local $ENV{PGAPPNAME} = $app;
	local $ENV{PGUSER} = $user // 'app';
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	$pid =~ s/\s+//g;
	$s->{dbpg_pid} = $pid;
	return $s;
}

# psql as another role (undef: the bootstrap superuser):
# ($ret, $stdout, $stderr)
sub run_as
{
	my ($role, $sql, @extra) = @_;
	my @user = defined $role ? ('-U', $role) : ();
	my ($ret, $out, $err) =
	  $node->psql('postgres', $sql, extra_params => [ @user, @extra ]);
	return ($ret, $out, $err);
}

# A query's result as a table, for the log
sub table_as
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = run_as($role, $sql,
		'-P', 'format=aligned', '-P', 'tuples_only=off');
	return $ret == 0 ? $out : $err;
}

sub pids
{
	return join(',', sort { $a <=> $b } @_);
}

sub terminate
{
	my ($args) = @_;
	return
	  "SELECT pid, user_name, database_name, client_addr, state, idle_for, terminated"
	  . " FROM dbpool_guard.terminate_sessions($args) ORDER BY pid";
}

# pids listed by terminate_sessions($args) for $role
sub listed
{
	my ($role, $args) = @_;
	my ($ret, $out, $err) = run_as($role,
		"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM dbpool_guard.terminate_sessions($args)"
	);
	die "terminate_sessions($args) as $role failed: $err" if $ret != 0;
	return $out;
}

sub alive
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = $pid), 'gone')"
	);
}

# --- a leaking service at its cap ---------------------------------------------

my $iit1 = open_session('leaky');
$iit1->query_safe('BEGIN; SELECT 1');
my $aborted = open_session('leaky');
$aborted->query('BEGIN; SELECT 1/0');    # fails: the session stays aborted
my $boss = open_session('leaky', 'boss');
$boss->query_safe('BEGIN; SELECT 1');
my $idle = open_session('leaky');
my $active = open_session('leaky');
$active->query_until(qr/sleeping/, "\\echo sleeping\nSELECT pg_sleep(600);\n");
my $other = open_session('other');
$other->query_safe('BEGIN; SELECT 1');
my $misc = open_session('misc');    # unlisted: counted in "*"
$misc->query_safe('BEGIN; SELECT 1');

my @leaked = ($iit1->{dbpg_pid}, $aborted->{dbpg_pid}, $boss->{dbpg_pid});

ok(wait_count($node, 'leaky', 5), 'leaky holds its cap of 5');
ok( $node->poll_query_until(
		'postgres',
		"SELECT active = 1 AND idle = 1 AND idle_in_transaction = 3 FROM dbpool_guard.status WHERE service = 'leaky'"
	),
	'status shows 3 sessions idle in transaction, 1 active, 1 idle');
is(status_of($node, 'leaky', 'state'), 'rejecting', 'leaky is rejecting');
note "status while leaking:\n"
  . table_as(undef,
	"SELECT service, budget, cap, connections, active, idle, idle_in_transaction, state, longest_idle_in_transaction > '0' AS leak, terminated_total FROM dbpool_guard.status"
  );
like(hold_fails($node, app => 'leaky'),
	$DbpgTest::REFUSAL, 'a new login of leaky is refused');

# the session of boss becomes a superuser's: only superusers may end it
$node->safe_psql('postgres', 'ALTER ROLE boss SUPERUSER');

# --- dry runs -------------------------------------------------------------------

is(listed(undef, "'leaky'"),
	'', 'default min_idle (5 minutes): nothing listed yet');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 3 FROM dbpool_guard.terminate_sessions('leaky', '1 second')"
	),
	'after a second the three leaked sessions qualify');
is(listed(undef, "'leaky', '1 second'"),
	pids(@leaked), 'dry run lists exactly the sessions idle in transaction');
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(format('%s:%s:%s:%s:%s:%s', user_name, database_name, coalesce(client_addr::text, 'local'), state, idle_for >= '1 second', terminated), ' ' ORDER BY pid) FROM dbpool_guard.terminate_sessions('leaky', '1 second')"
	),
	join(' ',
		map { $_->[1] }
		sort { $a->[0] <=> $b->[0] } (
			[ $iit1->{dbpg_pid}, 'app:postgres:local:idle in transaction:t:f' ],
			[ $aborted->{dbpg_pid}, 'app:postgres:local:idle in transaction (aborted):t:f' ],
			[ $boss->{dbpg_pid}, 'boss:postgres:local:idle in transaction:t:f' ])),
	'dry run columns: user, database, address, state, idle time, not terminated');
note "dry run (superuser):\n"
  . table_as(undef, terminate("'leaky', '1 second'"));
is(listed(undef, "'leaky', '0', '{idle}'"),
	$idle->{dbpg_pid}, 'states => {idle} lists the idle session only');
is(status_of($node, 'leaky', 'connections || \'/\' || terminated_total'),
	'5/0', 'a dry run ends nothing');

# --- who may do what --------------------------------------------------------------

my ($ret, $out, $err) = run_as('ops_plain', terminate("'leaky'"));
like($err, qr/permission denied for function terminate_sessions/,
	'a plain role may not execute it');
($ret, $out, $err) = run_as('ops_signal', terminate("'leaky'"));
like($err, qr/permission denied for function terminate_sessions/,
	'pg_signal_backend alone does not grant EXECUTE');

$node->safe_psql('postgres',
	'GRANT EXECUTE ON FUNCTION dbpool_guard.terminate_sessions(text, interval, text[], bool) TO ops_plain, ops_signal, ops_member'
);

is(listed('ops_plain', "'leaky', '1 second'"),
	'', 'granted but with no right to signal: nothing is listed');
is(listed('ops_signal', "'leaky', '1 second'"),
	pids($iit1->{dbpg_pid}, $aborted->{dbpg_pid}),
	'pg_signal_backend member: the superuser\'s session is not listed');
is( $node->safe_psql(
		'postgres',
		"SET ROLE ops_signal; SELECT string_agg(format('%s:%s:%s:%s', user_name, client_addr IS NULL, state IS NULL, idle_for IS NULL), ' ') FROM dbpool_guard.terminate_sessions('leaky', '1 second')"
	),
	'app:t:t:t app:t:t:t',
	'without pg_read_all_stats: no address, state or idle time, as in pg_stat_activity');
is(listed('ops_member', "'leaky', '1 second'"),
	pids($iit1->{dbpg_pid}, $aborted->{dbpg_pid}),
	'member of the sessions\' role: the same two');
is( $node->safe_psql(
		'postgres',
		"SET ROLE ops_member; SELECT string_agg(state, ',' ORDER BY pid) FROM dbpool_guard.terminate_sessions('leaky', '1 second')"
	),
	join(',',
		map { $_->[1] }
		sort { $a->[0] <=> $b->[0] } (
			[ $iit1->{dbpg_pid}, 'idle in transaction' ],
			[ $aborted->{dbpg_pid}, 'idle in transaction (aborted)' ])),
	'with the privileges of the role the state is shown');
note "dry run (ops_signal, member of pg_signal_backend):\n"
  . table_as('ops_signal', terminate("'leaky', '1 second'"));

# pg_read_all_stats shows the rest, as in pg_stat_activity
$node->safe_psql('postgres', 'GRANT pg_read_all_stats TO ops_signal');
is( $node->safe_psql(
		'postgres',
		"SET ROLE ops_signal; SELECT string_agg(format('%s:%s:%s', user_name, state, idle_for >= '1 second'), ' ' ORDER BY pid) FROM dbpool_guard.terminate_sessions('leaky', '1 second')"
	),
	join(' ',
		map { $_->[1] }
		sort { $a->[0] <=> $b->[0] } (
			[ $iit1->{dbpg_pid}, 'app:idle in transaction:t' ],
			[ $aborted->{dbpg_pid}, 'app:idle in transaction (aborted):t' ])),
	'with pg_read_all_stats: state and idle time shown, still not the superuser\'s session');

($ret, $out, $err) =
  run_as('ops_plain', terminate("'leaky', '1 second', dry_run => false"));
is($ret . $out, '0', 'a real run by a role that may signal nobody ends nothing');

# --- the real run -----------------------------------------------------------------

my $offset = -s $node->logfile;
my $real = table_as('ops_signal',
	terminate("'leaky', min_idle => '1 second', dry_run => false"));
note "real run (ops_signal):\n$real";
for my $pid ($iit1->{dbpg_pid}, $aborted->{dbpg_pid})
{
	like($real, qr/^\s*$pid \| app +\| postgres +\| +\| idle in transaction(?: \(aborted\))? +\| \d\d:\d\d:\d\d[.\d]* +\| t$/m,
		"real run: session $pid reported terminated");
}
my $nterminated = () = $real =~ /\| t$/mg;
is($nterminated, 2, 'real run: exactly two rows terminated');

ok(wait_count($node, 'leaky', 3),
	'slots released: leaky drops by exactly the two terminated');
is(status_of($node, 'leaky', 'terminated_total'), '2', 'terminated_total 2');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid IN ($iit1->{dbpg_pid}, $aborted->{dbpg_pid})"
	),
	'the terminated backends have exited');
is(alive($active->{dbpg_pid}), 'active', 'the active session is untouched');
is(alive($idle->{dbpg_pid}), 'idle', 'the idle session is untouched');
is(alive($boss->{dbpg_pid}), 'idle in transaction',
	'the superuser\'s session is spared');
is(alive($other->{dbpg_pid}), 'idle in transaction',
	'another service\'s session is untouched');

my $log = slurp_file($node->logfile, $offset);
is( count_lines(
		$log,
		qr/LOG:  dbpool_guard: terminated session (\d+) of service "leaky": role "app", state "idle in transaction(?: \(aborted\))?" for \d\d:\d\d:\d\d/
	),
	2,
	'each termination is logged with service, pid, role, state and idle time');
like($log, qr/role "ops_signal" ended it with dbpool_guard\.terminate_sessions\(\)/,
	'the log names who ended it');
like($log, qr/terminated session $iit1->{dbpg_pid} of service "leaky"/,
	'the log names the pid');

my $next = hold($node, 'leaky');
ok($next->{dbpg_pid} > 0, 'the next login of leaky succeeds');
quit_all($next);
ok(wait_count($node, 'leaky', 3), 'and gives its slot back');

# a superuser may end the superuser's session
my $su = table_as(undef,
	terminate("'leaky', min_idle => '1 second', dry_run => false"));
note "real run (superuser):\n$su";
like(
	$su,
	qr/^\s*$boss->{dbpg_pid} \| boss +\| postgres +\| +\| idle in transaction +\| \d\d:\d\d:\d\d[.\d]* +\| t$/m,
	'a superuser ends the superuser\'s session');
my $nrows = () = $su =~ /\| [tf]$/mg;
is($nrows, 1, 'and only that one: active and idle sessions are not selected');
ok(wait_count($node, 'leaky', 2), 'leaky drops by one more');
is(status_of($node, 'leaky', 'terminated_total'), '3', 'terminated_total 3');

# --- "*" ---------------------------------------------------------------------------

is(listed(undef, "'*', '0'"), $misc->{dbpg_pid},
	'"*" selects the unlisted services\' sessions');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FILTER (WHERE terminated) FROM dbpool_guard.terminate_sessions('*', '0', dry_run => false)"
	),
	'1',
	'"*": real run');
ok(wait_count($node, '*', 0), '"*" released its slot');
is(status_of($node, '*', 'terminated_total'), '1', '"*" terminated_total 1');
is(status_of($node, 'other', 'connections || \'/\' || terminated_total'),
	'1/0', 'other service untouched');

# an unknown service is an error naming it
($ret, $out, $err) = run_as(undef, terminate("'leakyy'"));
like($err, qr/ERROR:  unknown service "leakyy"/, 'unknown service: error');

# --- a session that can no longer be signalled when its turn comes ---------------
#
# Two leaked sessions of "late", in database "late_db", of two roles.  The
# call signals them in pid order and, after the first signal, logs it,
# which looks up the database's name in pg_database.  A gate holds an
# exclusive lock on pg_database, so the call waits there, between the two
# signals; meanwhile the second session's role becomes a superuser.  The
# second session must be reported as not terminated, and the call must
# complete with the first one terminated, logged and counted.

$node->safe_psql('postgres', q{
	CREATE DATABASE late_db;
	CREATE ROLE late_a LOGIN;
	CREATE ROLE late_b LOGIN;
});
my @late;
for my $role (qw(late_a late_b))
{
	local $ENV{PGAPPNAME} = 'late';
	local $ENV{PGUSER} = $role;
	my $s = $node->background_psql('late_db', on_error_stop => 0);
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	$pid =~ s/\s+//g;
	$s->{dbpg_pid} = $pid;
	$s->{dbpg_role} = $role;
	$s->query_safe('BEGIN; SELECT 1');
	push @late, $s;
}
@late = sort { $a->{dbpg_pid} <=> $b->{dbpg_pid} } @late;
my ($first, $second) = @late;
ok(wait_count($node, 'late', 2), 'late: two sessions idle in transaction');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 2 FROM dbpool_guard.terminate_sessions('late', '1 second')"),
	'late: both qualify after a second');

my $caller = $node->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-U', 'ops_signal' ]);
my $gate = $node->background_psql('postgres');
$gate->query_safe('BEGIN; LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE');
$offset = -s $node->logfile;
# sent, not waited for (it blocks on the gate): its answer is read below
$caller->query_until(qr/CALL-SENT/,
	"\\echo CALL-SENT\nSELECT string_agg(pid || ':' || terminated, ' ' ORDER BY pid) FROM dbpool_guard.terminate_sessions('late', '1 second', dry_run => false);\n"
);
my $waiting = 0;
for (1 .. 1800)
{
	$waiting = $gate->query_safe(
		"SELECT count(*) FROM pg_stat_activity WHERE usename = 'ops_signal' AND wait_event_type = 'Lock'");
	last if $waiting eq '1';
	usleep(100_000);
}
is($waiting, '1', 'the call waits between its two signals');
$gate->query_safe("ALTER ROLE $second->{dbpg_role} SUPERUSER");
$gate->query_safe('COMMIT');
$gate->quit;
# an empty query behind the call: returns with the call's answer, and
# whether anything was written to stderr
my ($result, $failed) = $caller->query('');
$result =~ s/^\s+//;
$result =~ s/\s+$//;
is($result, "$first->{dbpg_pid}:true $second->{dbpg_pid}:false",
	'the call completes: the first session terminated, the second reported as not terminated');
is($failed, 0, 'and no error');
$caller->quit;
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $first->{dbpg_pid}"),
	'the first session has exited');
is(alive($second->{dbpg_pid}), 'idle in transaction',
	'the session whose role became a superuser\'s is left alone');
is(status_of($node, 'late', 'terminated_total'), '1', 'late: terminated_total 1');
like(slurp_file($node->logfile, $offset),
	qr/terminated session $first->{dbpg_pid} of service "late"/,
	'the termination that happened is logged');
$node->safe_psql('postgres', "ALTER ROLE $second->{dbpg_role} NOSUPERUSER");

# --- EXECUTE on pg_terminate_backend() revoked ------------------------------------

$node->safe_psql('postgres', q{
	CREATE ROLE ops_revoked LOGIN IN ROLE pg_signal_backend;
	GRANT EXECUTE ON FUNCTION dbpool_guard.terminate_sessions(text, interval, text[], bool) TO ops_revoked;
	REVOKE EXECUTE ON FUNCTION pg_terminate_backend(integer, bigint) FROM PUBLIC;
});
($ret, $out, $err) = run_as('ops_revoked',
	"SELECT pg_terminate_backend($second->{dbpg_pid})");
like($err, qr/permission denied for function pg_terminate_backend/,
	'revoked: pg_terminate_backend() itself is denied');
is(listed('ops_revoked', "'late', '1 second'"), $second->{dbpg_pid},
	'revoked: a dry run still lists what a real run would end');
($ret, $out, $err) = run_as('ops_revoked',
	terminate("'late', '1 second', dry_run => false"));
like($err, qr/ERROR:  permission denied for function pg_terminate_backend/,
	'revoked: a real run is denied with the same error');
is(alive($second->{dbpg_pid}), 'idle in transaction', 'revoked: nothing was ended');
is(status_of($node, 'late', 'terminated_total'), '1', 'revoked: nothing counted');
$node->safe_psql('postgres',
	'GRANT EXECUTE ON FUNCTION pg_terminate_backend(integer, bigint) TO ops_revoked');
is( $node->safe_psql(
		'postgres',
		"SET ROLE ops_revoked; SELECT string_agg(pid || ':' || terminated, ' ') FROM dbpool_guard.terminate_sessions('late', '1 second', dry_run => false)"),
	"$second->{dbpg_pid}:true",
	'granted again: the real run ends the session');
$node->safe_psql('postgres',
	'GRANT EXECUTE ON FUNCTION pg_terminate_backend(integer, bigint) TO PUBLIC');
ok(wait_count($node, 'late', 0), 'late back to 0');
quit_all(@late);

# --- cleanup: every slot comes back -------------------------------------------------

$node->safe_psql('postgres',
	"SELECT pg_cancel_backend($active->{dbpg_pid})");
quit_all($iit1, $aborted, $boss, $idle, $active, $other, $misc);
ok(wait_count($node, 'leaky', 0), 'leaky back to 0');
ok(wait_count($node, 'other', 0), 'other back to 0');
ok(wait_count($node, '*', 0), '"*" back to 0');

$node->stop;
done_testing();
