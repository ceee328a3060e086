# dbpool_guard.mode (monitor, off), sessions that never use budget
# (superusers, members of dbpool_guard.exempt_roles, walsenders).

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $node = guard_node('monitor',
	allows_streaming => 1,
	conf => "dbpool_guard.budgets = 'mon=1\@1.0, ex=1\@1.0'\n");

# --- monitor: everyone admitted, would-be refusals counted and logged --------------

set_conf($node, 'dbpool_guard.mode' => 'monitor');
my $offset = -s $node->logfile;
my @m = map { eval { hold($node, 'mon') } } 1 .. 3;
is(scalar(grep { defined } @m), 3, 'monitor: three logins admitted on a cap of 1');
is( status_of(
		$node, 'mon',
		'connections, cap, admitted_total, rejected_total, would_reject_total, state'),
	'3|1|3|0|2|rejecting',
	'monitor: 3 counted, 0 rejected, 2 would have been');
is( scalar_q(
		$node, "SELECT count(*), bool_or(enforced), min(budget)
		          FROM dbpool_guard.rejections WHERE service = 'mon'"),
	'2|f|1',
	'monitor: 2 rows in rejections, enforced = false');
ok( $node->log_contains(
		qr/LOG:  dbpool_guard: would refuse connection for service "mon" \(monitor mode\)/,
		$offset),
	'monitor: the would-be refusal is logged');
ok(!$node->log_contains(qr/FATAL:  too many connections/, $offset),
	'monitor: nobody got a FATAL');
quit_all(@m);
ok(wait_count($node, 'mon', 0), 'monitor: released');

# --- off: nothing is counted -------------------------------------------------------

set_conf($node, 'dbpool_guard.mode' => 'off');
my @off = map { eval { hold($node, 'mon') } } 1 .. 2;
is(scalar(grep { defined } @off), 2, 'off: logins admitted');
is(status_of($node, 'mon', 'connections, admitted_total, would_reject_total'),
	'0|3|2', 'off: not counted, not admitted, not noted');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'),
	'0', 'off: no holdings recorded');

# Back to enforce while the "off" sessions are still there: they hold
# no slot (documented undercount), and their exit must not release one.
set_conf($node, 'dbpool_guard.mode' => 'enforce');
my $on = eval { hold($node, 'mon') };
ok(defined $on, 'enforce again: the sessions from "off" hold no slot');
like(hold_fails($node, app => 'mon'), refusal_re('mon'),
	'enforce again: the next login is refused');
quit_all(@off);
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'mon'"),
	'the sessions from "off" are gone');
is(status_of($node, 'mon', 'connections'), '1',
	'their exit released nothing: still 1');
quit_all($on);
ok(wait_count($node, 'mon', 0), 'and 0 after the last one');

# --- exempt: superusers and members of exempt roles ---------------------------------

$node->safe_psql(
	'postgres', q{
	CREATE ROLE su LOGIN SUPERUSER;
	CREATE ROLE monitoring LOGIN;
	CREATE ROLE exporter LOGIN IN ROLE monitoring;
	CREATE ROLE deep LOGIN IN ROLE exporter;
	CREATE ROLE outsider LOGIN;
	CREATE ROLE repl LOGIN REPLICATION;
});
$offset = -s $node->logfile;
set_conf($node, 'dbpool_guard.exempt_roles' => 'monitoring, ghost');

my $full = hold($node, 'ex');
is(status_of($node, 'ex', 'connections, state'), '1|rejecting', '"ex" is full');
my $admitted = status_of($node, 'ex', 'admitted_total');

my @exempt;
for my $user (qw(su monitoring exporter deep))
{
	my $s = eval { hold($node, 'ex', user => $user) };
	ok(defined $s, "exempt: $user gets in while \"ex\" is full");
	push @exempt, $s;
}
is(status_of($node, 'ex', 'connections, admitted_total, rejected_total'),
	"1|$admitted|0", 'exempt: they use no budget and are not counted');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'),
	'1', 'exempt: the sessions view lists only the counted session');
like(hold_fails($node, app => 'ex', user => 'outsider'),
	refusal_re('ex'), 'a role outside the exempt ones is refused');
like(hold_fails($node, app => 'ex', user => 'ghost'),
	refusal_re('ex'),
	'a role named in exempt_roles that does not exist is not exempt');
quit_all(@exempt);

# --- walsenders are never counted ----------------------------------------------------

my $ws = eval { hold($node, 'ex', user => 'repl', replication => 'database') };
ok(defined $ws, 'walsender: a replication connection gets in while "ex" is full');
is( scalar_q(
		$node, "SELECT backend_type FROM pg_stat_activity WHERE pid = $ws->{dbpg_pid}"),
	'walsender',
	'walsender: it is a walsender');
like($ws->query_safe('IDENTIFY_SYSTEM'), qr/^\d+\|/, 'walsender: it works');
my ($ret) = $node->psql('postgres', 'IDENTIFY_SYSTEM',
	connstr => conn($node, app => 'ex', user => 'repl', replication => 'true'));
is($ret, 0, 'walsender: a physical replication connection gets in too');
is(status_of($node, 'ex', 'connections, rejected_total'), '1|2',
	'walsender: not counted in "ex"');
is(scalar_q($node, "SELECT count(*) FROM dbpool_guard.sessions WHERE pid = $ws->{dbpg_pid}"),
	'0', 'walsender: not in the sessions view');
quit_all($ws, $full);
ok(wait_count($node, 'ex', 0), 'released');

$node->stop;
done_testing();
