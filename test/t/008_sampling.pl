# The worker's sample visits only the buckets that hold sessions, did at
# the last sample, or are in the warning state; a full pass runs
# periodically.  Check that the published figures stay right across
# those cases: sessions leaving (zeros are published once), a service
# falling back below its warning level as its sessions leave, and with no
# session left at its next sample, and many listed services that never
# log in.  Every check waits for the state it asserts: which sample sees
# which state is up to the scheduler, except where the worker is stopped.

use strict;
use warnings FATAL => 'all';


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
	  . "dbpool_guard.budgets = 'a=4\@1, b=4\@1, c=4\@1, $many, *=4\@1'\n");

my $stopped_worker;
END { kill 'CONT', $stopped_worker if $stopped_worker; }

sub figures
{
	my ($service) = @_;
	return scalar_q($node,
		"SELECT s.connections || '/' || s.idle || '/' || s.state
		   FROM dbpool_guard.status s WHERE s.service = '$service'");
}

# Wait until a service shows these figures (connections/idle/state).
sub wait_figures
{
	my ($service, $want) = @_;
	return $node->poll_query_until('postgres',
		"SELECT s.connections || '/' || s.idle || '/' || s.state
		   FROM dbpool_guard.status s WHERE s.service = '$service'", $want);
}

# --- sessions come and go ------------------------------------------------------

# (connections and state are live, the per-state counts are sampled)
my $offset = -s $node->logfile;
my @a = map { hold($node, 'a') } 1 .. 3;
my @b = map { hold($node, 'b') } 1 .. 1;
ok(wait_figures('a', '3/3/warning'), 'a: 3 idle sessions, warning at 3 of 4');
ok(wait_figures('b', '1/1/ok'), 'b: 1 idle session');
# the sample that crossed the level saw 2 or 3 sessions; its line is
# written after the figures are published
ok( log_wait($node, qr/service "a" is at \d+% of its budget \([23] of 4 connections\)/, $offset),
	'a: the worker logged the warning');
is( scalar_q(
		$node,
		q{SELECT count(*) FROM dbpool_guard.status
		   WHERE service LIKE 'quiet-%' AND (connections, active, idle, idle_in_transaction, waiting) <> (0, 0, 0, 0, 0)}),
	'0', 'the 40 services that never logged in show zeros');

# The sessions leave one by one: a sample may see 2, 1 or 0 of them.
# The line comes from the first sample below the warning level (2 of 4),
# whatever it saw; the zeros come at the latest from the first sample
# that sees no session.
$offset = -s $node->logfile;
quit_all(@a);
ok(wait_count($node, 'a', 0), 'a: its slots come back');
ok(wait_figures('a', '0/0/ok'), 'a: zeros are published once its sessions are gone');
my $back_a = qr/service "a" is back below its warning level \((\d+) of 4 connections\)/;
ok(log_wait($node, $back_a, $offset), 'a: the worker logs its return below the warning level');
my $log = slurp_file($node->logfile, $offset);
my ($held) = $log =~ $back_a;
$held //= 'no line';
ok($held =~ /^[01]$/, "a: the line reports a count below the warning level of 2 ($held of 4)");
ok(wait_samples($node, 2), 'samples go on');
$log = slurp_file($node->logfile, $offset);
is(count_lines($log, qr/service "a" is back below/), 1, 'a: "back below" is logged once');
is(count_lines($log, qr/service "a" is at \d+% of its budget/), 0,
	'a: no new warning on the way down');
ok(wait_figures('b', '1/1/ok'), 'b: unchanged');

# --- back below with no session left at the next sample --------------------------

# The worker is stopped (in its sleep, holding nothing) while every
# session of "c" leaves: its next sample sees 0 of 4 at once, and must
# still visit "c" (it is in the warning state) to publish zeros and log
# its return.
$offset = -s $node->logfile;
my @c = map { hold($node, 'c') } 1 .. 3;
ok(wait_figures('c', '3/3/warning'), 'c: 3 idle sessions, warning at 3 of 4');
ok( log_wait($node, qr/service "c" is at \d+% of its budget \([23] of 4 connections\)/, $offset),
	'c: the worker logged the warning');
my $wpid = stop_worker($node);
$stopped_worker = $wpid;
$offset = -s $node->logfile;
quit_all(@c);
ok(wait_count($node, 'c', 0), 'c: its slots come back while the worker is stopped');
is(figures('c'), '0/3/ok',
	'c: connections and state are live, the idle count is still that of the last sample');
kill 'CONT', $wpid;
$stopped_worker = undef;
ok( log_wait($node,
		qr/service "c" is back below its warning level \(0 of 4 connections\)/, $offset),
	'c: the first sample after SIGCONT logs the return below the warning level with no session left');
ok(wait_figures('c', '0/0/ok'), 'c: and publishes zeros');
is(worker_pid($node), $wpid, 'the same worker carried on');
ok(wait_figures('b', '1/1/ok'), 'b: unchanged');

unlike(slurp_file($node->logfile), qr/holdings disagree/,
	'no disagreement between slots and holdings was reported');

quit_all(@b);
$node->stop;
done_testing();
