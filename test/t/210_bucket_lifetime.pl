# Bucket lifetime across reloads (issue 13, point 3).  A bucket, once a
# listed service has one, keeps its name and its counters while the
# server runs: unlisting a service, filling the table with others and
# listing it again loses none of its totals, and no backend's copy of
# dbpool_guard.budgets decides the fate of another service's bucket.
# When the table is full, a new listed name is admitted without a budget
# (fail open), counted in enforcement().unguarded_total and logged; a
# restart forgets the names that are no longer listed.

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $node = guard_node('bucket_lifetime',
	conf => "dbpool_guard.max_services = 3\n"
	  . "dbpool_guard.budgets = 'a=2\@1, b=2\@1'\n");

# a: two admitted, one refused; b: one admitted
my @a = (hold($node, 'a'), hold($node, 'a'));
like(hold_fails($node, app => 'a'), refusal_re('a'),
	'a: the third login is refused at its cap of 2');
quit_all(@a, hold($node, 'b'));
ok(wait_count($node, $_, 0), "$_: its sessions are gone") for qw(a b);
is(status_of($node, 'a', 'admitted_total, rejected_total, peak_connections'),
	'2|1|2', 'a: 2 admitted, 1 refused, peak 2');

# a and b unlisted and idle; c takes the last entry, d finds the table full
set_conf($node, 'dbpool_guard.budgets' => 'c=2@1, d=1@1');
my $c = hold($node, 'c');
my $offset = -s $node->logfile;
my $d = eval { hold($node, 'd') };
ok(defined $d, 'table full: d is admitted (fail open), not refused');
my $d2 = eval { hold($node, 'd') };
ok(defined $d2, 'table full: d is not limited while it has no bucket');
ok( log_wait(
		$node,
		qr/WARNING:  dbpool_guard: service table is full; admitting service "d" without a budget/,
		$offset),
	'table full: a WARNING names the service');
is(scalar_q($node, 'SELECT unguarded_total FROM dbpool_guard.enforcement()'),
	'2', 'table full: both logins of d counted as unguarded');
is(scalar_q($node, 'SELECT enforced || \':\' || reason FROM dbpool_guard.enforcement()'),
	'false:table_full', 'table full: enforcement() says a listed service is not guarded');
is(scalar_q($node, q{SELECT dbpool_guard.health()->>'status'}),
	'warning', 'table full: health() is warning');
is(scalar_q($node, q{SELECT count(*) FROM dbpool_guard.status WHERE service IN ('a', 'b')}),
	'0', 'a and b have no status row while unlisted and idle');
quit_all($c, $d, $d2);
ok(wait_count($node, 'c', 0), 'c: released');

# listed again: every total is still there, and a's cap holds as before
set_conf($node, 'dbpool_guard.budgets' => 'a=2@1, b=2@1, c=2@1');
is(status_of($node, 'a', 'admitted_total, rejected_total, peak_connections'),
	'2|1|2', 'a listed again: its totals survived the reloads and the full table');
is(status_of($node, 'b', 'admitted_total'), '1', 'b listed again: its total survived');
is(status_of($node, 'c', 'admitted_total'), '1', 'c: its total is its own');
@a = (hold($node, 'a'), hold($node, 'a'));
like(hold_fails($node, app => 'a'), refusal_re('a'),
	'a listed again: refused at its cap');
is(status_of($node, 'a', 'connections, admitted_total, rejected_total'),
	'2|4|2', 'a: the new logins and the refusal are counted on a');
is( scalar_q(
		$node,
		q{SELECT service || ':' || connections || '/' || budget FROM dbpool_guard.rejections
		   ORDER BY rejected_at DESC LIMIT 1}),
	'a:2/2',
	'rejections: the last refusal names a, with its own figures');
quit_all(@a);
ok(wait_count($node, 'a', 0), 'a: released');

# a restart forgets names that are no longer listed: d gets a bucket
set_conf($node, 'dbpool_guard.budgets' => 'c=2@1, d=1@1');
$node->restart;
$d = hold($node, 'd');
like(hold_fails($node, app => 'd'), refusal_re('d'),
	'after a restart: d has a bucket and its cap is enforced');
is(scalar_q($node, 'SELECT unguarded_total || \':\' || reason FROM dbpool_guard.enforcement()'),
	'0:enforced', 'after a restart: nothing unguarded, enforced');
quit_all($d);

$node->stop;
done_testing();
