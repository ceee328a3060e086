# Every way an admitted backend can end gives its slot back exactly once;
# the slot stays where the startup application_name put it; the sessions
# view lists the holders.

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $node = guard_node('release',
	conf => "dbpool_guard.budgets = 'rel=10\@1.0, other=5, *=5'\n");

$node->safe_psql(
	'postgres', q{
	CREATE ROLE lim LOGIN CONNECTION LIMIT 1;
	CREATE ROLE nologin_role NOLOGIN;
	CREATE ROLE setrole LOGIN;
	ALTER ROLE setrole SET application_name = 'other';
	CREATE DATABASE limdb CONNECTION LIMIT 0;
	CREATE DATABASE closeddb ALLOW_CONNECTIONS false;
});

sub admitted
{
	return status_of($node, 'rel', 'admitted_total');
}

# --- normal disconnect -------------------------------------------------------

my $s = hold($node, 'rel');
is(status_of($node, 'rel', 'connections'), '1', 'disconnect: counted while connected');
quit_all($s);
ok(wait_count($node, 'rel', 0), 'disconnect: released');

# --- pg_terminate_backend ----------------------------------------------------

$s = hold($node, 'rel');
is(status_of($node, 'rel', 'connections'), '1', 'terminate: counted');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($s->{dbpg_pid})");
ok(wait_count($node, 'rel', 0), 'terminate: released');
quit_all($s);

# --- FATALs after admission: each counted as admitted, each released -----------

my @fatal = (
	[ 'database does not exist', { dbname => 'nosuchdb' },
		qr/database "nosuchdb" does not exist/ ],
	[ 'role does not exist', { user => 'ghost' },
		qr/role "ghost" does not exist/ ],
	[ 'rolcanlogin is false', { user => 'nologin_role' },
		qr/role "nologin_role" is not permitted to log in/ ],
	[ 'database CONNECTION LIMIT', { dbname => 'limdb' },
		qr/too many connections for database "limdb"/ ],
	[ 'database does not allow connections', { dbname => 'closeddb' },
		qr/database "closeddb" is not currently accepting connections/ ],);

for my $f (@fatal)
{
	my ($what, $params, $re) = @$f;
	my $before = admitted();
	my $err = hold_fails($node, app => 'rel', %$params);
	like($err, $re, "$what: PostgreSQL refuses the login");
	unlike($err, qr/for service/, "$what: not our refusal");
	is(admitted(), $before + 1, "$what: the guard had admitted it first");
	ok(wait_count($node, 'rel', 0), "$what: its slot is released");
}

# role CONNECTION LIMIT: one session of "lim" holds, the second fails
my $lim = hold($node, 'rel', user => 'lim');
my $before = admitted();
my $err = hold_fails($node, app => 'rel', user => 'lim');
like($err, qr/too many connections for role "lim"/,
	'role CONNECTION LIMIT: PostgreSQL refuses the second login');
is(admitted(), $before + 1, 'role CONNECTION LIMIT: the guard had admitted it');
ok(wait_count($node, 'rel', 1), 'role CONNECTION LIMIT: back to the one holder');
quit_all($lim);
ok(wait_count($node, 'rel', 0), 'role CONNECTION LIMIT: holder released');

# --- timeouts ------------------------------------------------------------------

$s = hold($node, 'rel');
$s->query_safe("SET idle_session_timeout = '200ms'");
ok(wait_count($node, 'rel', 0), 'idle_session_timeout: released');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $s->{dbpg_pid}"),
	'idle_session_timeout: the backend is gone');
quit_all($s);

$s = hold($node, 'rel');
$s->query_safe(
	"SET idle_in_transaction_session_timeout = '200ms'; BEGIN; SELECT 1;");
ok(wait_count($node, 'rel', 0), 'idle_in_transaction_session_timeout: released');
quit_all($s);

# --- the slot follows the startup application_name only ------------------------

$s = hold($node, 'rel');
$s->query_safe("SET application_name = 'other'");
is( scalar_q(
		$node, "SELECT application_name FROM pg_stat_activity WHERE pid = $s->{dbpg_pid}"),
	'other',
	'SET application_name changes what pg_stat_activity shows');
is(status_of($node, 'rel', 'connections'), '1', 'SET application_name: slot stays in "rel"');
is(status_of($node, 'other', 'connections'), '0', 'SET application_name: "other" untouched');
is( scalar_q(
		$node, "SELECT service FROM dbpool_guard.sessions WHERE pid = $s->{dbpg_pid}"),
	'rel',
	'SET application_name: the sessions view still says "rel"');
quit_all($s);
ok(wait_count($node, 'rel', 0), 'SET application_name: released from "rel"');

# (psql always sends a startup application_name, which PostgreSQL applies
# over these two; what matters here is that the bucket follows it.)
$s = hold($node, 'rel', options => '-c application_name=other');
is(status_of($node, 'rel', 'connections') . '/' . status_of($node, 'other', 'connections'),
	'1/0', 'options=-c application_name: counted under the startup name');
quit_all($s);

# Without a startup application_name the hook sees no name, whatever
# options=-c sets later: the session counts in "*".
my ($sock, $pid) = raw_login($node,
	user => 'app',
	database => 'postgres',
	options => '-c application_name=rel');
ok(defined $sock, 'no startup application_name: admitted');
is(scalar_q($node, "SELECT application_name FROM pg_stat_activity WHERE pid = $pid"),
	'rel', 'no startup application_name: options=-c set it after login');
is(status_of($node, 'rel', 'connections') . '/' . status_of($node, '*', 'connections'),
	'0/1', 'no startup application_name: counted in "*", not in "rel"');
print $sock "X\0\0\0\4";
close $sock;
ok(wait_count($node, '*', 0), 'no startup application_name: released from "*"');

($sock, $pid) = raw_login($node, user => 'setrole', database => 'postgres');
is(scalar_q($node, "SELECT application_name FROM pg_stat_activity WHERE pid = $pid"),
	'other', 'no startup application_name: ALTER ROLE ... SET applies after login');
is(status_of($node, 'other', 'connections') . '/' . status_of($node, '*', 'connections'),
	'0/1', 'no startup application_name: ALTER ROLE ... SET is ignored, counted in "*"');
print $sock "X\0\0\0\4";
close $sock;
ok(wait_count($node, '*', 0), 'released from "*"');

$s = hold($node, 'rel', user => 'setrole');
is(status_of($node, 'rel', 'connections') . '/' . status_of($node, 'other', 'connections'),
	'1/0', 'ALTER ROLE ... SET application_name: counted under the startup name');
quit_all($s);
ok(wait_count($node, 'rel', 0), 'released');

# --- the sessions view lists the holders -----------------------------------------

my @h = (hold($node, 'rel'), hold($node, 'rel', user => 'lim'), hold($node, 'other'));
my @pids = map { $_->{dbpg_pid} } @h;
is( scalar_q(
		$node, 'SELECT string_agg(pid || \':\' || service || \':\' || user_name, \' \' ORDER BY pid)
		          FROM dbpool_guard.sessions'),
	join(' ',
		map { "$_->[0]:$_->[1]:$_->[2]" }
		sort { $a->[0] <=> $b->[0] } (
			[ $pids[0], 'rel', 'app' ],
			[ $pids[1], 'rel', 'lim' ],
			[ $pids[2], 'other', 'app' ])),
	'sessions: one row per holder with pid, service and user_name');
is( scalar_q(
		$node,
		"SELECT count(*) FROM dbpool_guard.sessions WHERE admitted_at <= now() AND admitted_at > now() - interval '5 min'"
	),
	'3',
	'sessions: admitted_at is set');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions WHERE pid = pg_backend_pid()'),
	'0', 'sessions: the superuser running the query holds no slot');
quit_all(@h);
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM dbpool_guard.sessions'),
	'sessions: empty once everyone left');

# --- reserved slots (superuser_reserved_connections; reserved_connections on 16+)

# Leave three slots to ordinary roles: the fourth login passes the guard
# and then fails PostgreSQL's reserved-slot check.
if ($node->pg_version >= 16)
{
	$node->append_conf('postgresql.conf',
		"max_connections = 20\nsuperuser_reserved_connections = 3\nreserved_connections = 14\n"
	);
}
else
{
	$node->append_conf('postgresql.conf',
		"max_connections = 20\nsuperuser_reserved_connections = 17\n");
}
$node->restart;
@h = map { hold($node, 'rel') } 1 .. 3;
$before = admitted();
$err = hold_fails($node, app => 'rel');
like($err, qr/remaining connection slots are reserved/,
	'reserved slots: PostgreSQL refuses the fourth ordinary login');
is(admitted(), $before + 1, 'reserved slots: the guard had admitted it');
ok(wait_count($node, 'rel', 3), 'reserved slots: its slot is released');
quit_all(@h);

# --- everything is back to 0 ------------------------------------------------------

ok(wait_released($node), 'every bucket shows 0 connections after everyone left');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'), '0', 'no holders remain');

$node->stop;
done_testing();
