# The worker's sample visits only the buckets that hold sessions, did at
# the last sample, or are in the warning state; a full pass runs
# periodically and after a bucket was removed.  Check that the published
# figures stay right across those cases: sessions leaving (zeros are
# published once), a service falling back below its warning level with no
# session left, many listed services that never log in, and a bucket
# removed to make room for another one (the table is full).

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $many = join(', ', map { "quiet-$_=3" } 1 .. 40);
my $node = guard_node('sampling',
	max_connections => 80,
	conf => "dbpool_guard.max_services = 44\n"
	  . "dbpool_guard.sample_interval = 50\n"
	  . "dbpool_guard.warning_threshold = 0.5\n"
	  . "dbpool_guard.budgets = 'a=4\@1, b=4\@1, $many, *=4\@1'\n");

sub figures
{
	my ($service) = @_;
	return scalar_q($node,
		"SELECT s.connections || '/' || s.idle || '/' || s.state
		   FROM dbpool_guard.status s WHERE s.service = '$service'");
}

# --- sessions come and go ------------------------------------------------------

my @a = map { hold($node, 'a') } 1 .. 3;
my @b = map { hold($node, 'b') } 1 .. 1;
ok(wait_samples($node, 3), 'the worker samples');
is(figures('a'), '3/3/warning', 'a: 3 idle sessions, warning at 3 of 4');
is(figures('b'), '1/1/ok', 'b: 1 idle session');
is( scalar_q(
		$node,
		q{SELECT count(*) FROM dbpool_guard.status
		   WHERE service LIKE 'quiet-%' AND (connections, active, idle, idle_in_transaction, waiting) <> (0, 0, 0, 0, 0)}),
	'0', 'the 40 services that never logged in show zeros');

my $offset = -s $node->logfile;
quit_all(@a);
ok(wait_count($node, 'a', 0), 'a: its slots come back');
ok(wait_samples($node, 3), 'the worker samples again');
is(figures('a'), '0/0/ok', 'a: zeros are published once its sessions are gone');
ok( log_wait(
		$node, qr/service "a" is back below its warning level \(0 of 4 connections\)/,
		$offset),
	'a: the worker logs its return below the warning level with no session left');
is(figures('b'), '1/1/ok', 'b: unchanged');

# --- a bucket removed to make room -------------------------------------------------

# 42 named buckets may exist (max_services = 44); log in once under each
# quiet service so that their buckets exist, then unlist them all and
# fill the table with new names: buckets of unlisted, empty services are
# removed and their entries reused.
for my $i (1 .. 40)
{
	my $s = hold($node, "quiet-$i");
	quit_all($s);
}
ok(wait_samples($node, 2), 'samples after the quiet services logged in once');
set_conf($node,
	'dbpool_guard.budgets' => 'b=4@1, '
	  . join(', ', map { "new-$_=2" } 1 .. 42)
	  . ', *=4@1');
my @new = map { hold($node, "new-$_") } 1 .. 42;
is(scalar_q($node, q{SELECT sum(connections) FROM dbpool_guard.status WHERE service LIKE 'new-%'}),
	'42', 'all 42 new services got their session (old buckets were reused)');
ok(wait_samples($node, 3), 'the worker samples after the removals');
is( scalar_q(
		$node,
		q{SELECT count(*) FROM dbpool_guard.status
		   WHERE service LIKE 'new-%' AND connections = 1 AND idle = 1}),
	'42', 'every new service shows its idle session');
is(figures('b'), '1/1/ok', 'b: unchanged through the removals');
is( scalar_q(
		$node,
		q{SELECT sum(connections) || '/' || sum(idle) FROM dbpool_guard.status}),
	'43/43', 'totals: 43 sessions, all idle');
quit_all(@new);
ok(wait_samples($node, 3), 'the worker samples after everyone left');
is( scalar_q(
		$node,
		q{SELECT sum(connections) || '/' || sum(idle) FROM dbpool_guard.status WHERE service LIKE 'new-%'}),
	'0/0', 'the new services publish zeros once their sessions are gone');
unlike(slurp_file($node->logfile), qr/holdings disagree/,
	'no disagreement between slots and holdings was reported');

quit_all(@b);
$node->stop;
done_testing();
