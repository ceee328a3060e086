# SIGSTOP the sampling worker (between two samples) while a fixed amount
# of login work runs: 8 rounds of 10 sequential logins and a storm, and
# at least 2 s (10 sample intervals).  Admission does not depend on it:
# while it is stopped, every login completes (none waits for the worker),
# logins are not slowed (median latency compared with baselines of the
# same mix taken just before and just after, worker running), nothing is
# refused wrongly (every login to a service under its cap gets in; storms
# admit exactly the cap), a service added by a reload is enforced at once,
# and slots are released.  The status view shows the staleness: sampled_at
# stops moving (now() - sampled_at covers the whole stop) and the
# per-state counts stay those of the last sample.  SIGCONT: the same
# worker samples again at once.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use DbpgTest;
use DbpgWire;

my $cap = 5;
my $budgets = "stop=$cap\@1.0, known=30\@1.0, *=4\@1.0";
my $node = guard_node('worker_stop',
	max_connections => 80,
	conf => "dbpool_guard.budgets = '$budgets'\n"
	  . "dbpool_guard.sample_interval = 200\n");

my $stopped;
END { kill 'CONT', $stopped if $stopped; }

# the work done with the worker stopped, and in each baseline
my $rounds = 8;
my $min_stop_secs = 2;

sub median
{
	my @s = sort { $a <=> $b } @_;
	return @s ? $s[ int($#s / 2) ] : 0;
}

sub max_of
{
	my @s = sort { $a <=> $b } @_;
	return @s ? $s[-1] : 0;
}

# Sequential logins to "known": returns (latencies of the admitted, failures).
sub sequential_logins
{
	my ($n) = @_;
	my (@lat, @fail);
	for (1 .. $n)
	{
		my $c = wire_login($node, application_name => 'known');
		if ($c->{ok}) { push @lat, $c->{login_seconds}; $c->close; }
		else { push @fail, "$c->{error}{C} $c->{error}{M}"; }
	}
	return (\@lat, \@fail);
}

# A storm of 3 * cap on "stop": true when exactly the cap got in and every
# other login was refused by us; the admitted are closed and released.
sub exact_storm
{
	my $t = DbpgWire::tally(wire_storm($node, 3 * $cap, application_name => 'stop'));
	$_->close for @{ $t->{ok} };
	my $released = wait_count($node, 'stop', 0);
	return storm_exact($t, $cap, 'storm') && $released;
}

# $rounds rounds of the mix (10 sequential logins to "known", a storm on
# "stop"), for at least $min_secs; returns (latencies, failed logins,
# rounds, exact storms).
sub mix
{
	my ($min_secs) = @_;
	my (@lat, @fail);
	my ($n, $exact) = (0, 0);
	my $t = time();
	while ($n < $rounds || time() - $t < ($min_secs // 0))
	{
		my ($l, $f) = sequential_logins(10);
		push @lat, @$l;
		push @fail, @$f;
		$exact++ if exact_storm();
		$n++;
	}
	return (\@lat, \@fail, $n, $exact);
}

# --- baseline, worker running ---------------------------------------------------------

my ($base, $base_fail, $base_rounds, $base_exact) = mix();
is(scalar(@$base_fail), 0, 'baseline: every login gets in');
is($base_exact, $base_rounds, 'baseline: storms admit exactly the cap');

my @known = map { wire_login($node, application_name => 'known') } 1 .. 3;
ok( $node->poll_query_until(
		'postgres', "SELECT connections = 3 AND idle = 3 FROM dbpool_guard.status WHERE service = 'known'"),
	'the worker has sampled the 3 idle "known" sessions');

# --- SIGSTOP ---------------------------------------------------------------------------

my $offset = -s $node->logfile;
my $wpid = stop_worker($node);
$stopped = $wpid;
# the worker's last sample is older than this
my $t0 = time();
ok(process_stopped($wpid), 'the worker is stopped');
my $sampled_at = status_of($node, 'known', 'sampled_at');

# a service added by a reload: its first login inserts its bucket
set_conf($node, 'dbpool_guard.budgets' => "$budgets, late=2\@1.0");
my @late = map { wire_login($node, application_name => 'late') } 1 .. 3;
is(join(' ', map { $_->outcome } @late),
	'ok ok refused', 'worker stopped: a service added by a reload is enforced at once');
$_->close for @late;
ok(wait_count($node, 'late', 0), 'worker stopped: its slots are released');

# two more held sessions, admitted while the worker cannot see them
push @known, map { wire_login($node, application_name => 'known') } 1 .. 2;
is(scalar(grep { $_->{ok} } @known), 5, 'worker stopped: 5 sessions hold "known" slots');

# the same work as the baseline (and at least $min_stop_secs)
my ($during, $wrong, $storms, $exact) = mix($min_stop_secs);
is(scalar(@$wrong), 0,
	'worker stopped: every login completed and none to a service under its cap was refused ('
	  . scalar(@$during) . ' logins)');
is($exact, $storms, "worker stopped: all $storms storms admitted exactly the cap");

# staleness, just before SIGCONT: the last sample is older than the stop
my $stop_so_far = sprintf('%.3f', int(1000 * (time() - $t0)) / 1000);
is(status_of($node, 'known', 'sampled_at'), $sampled_at,
	'worker stopped: sampled_at has not moved');
ok( scalar_q($node,
		"SELECT now() - sampled_at >= make_interval(secs => $stop_so_far) FROM dbpool_guard.status WHERE service = 'known'")
	  eq 't',
	"worker stopped: now() - sampled_at shows the staleness (the whole stop so far, $stop_so_far s)");
is(status_of($node, 'known', 'connections, idle'), '5|3',
	'worker stopped: connections are live (5), per-state counts are of the last sample (3 idle)');
is( scalar_q(
		$node, "SELECT count(*) FROM dbpool_guard.sessions WHERE service = 'known' AND state IS NULL"),
	'2', 'worker stopped: the 2 sessions admitted since have no sampled state');

# --- SIGCONT ------------------------------------------------------------------------------

kill 'CONT', $wpid;
$stopped = undef;
my $stop_secs = time() - $t0;
note(sprintf('the worker was stopped for %.1f s', $stop_secs));
ok( $node->poll_query_until(
		'postgres',
		"SELECT sampled_at > '$sampled_at'::timestamptz AND now() - sampled_at < interval '2 s'
		        AND idle = 5 FROM dbpool_guard.status WHERE service = 'known'"),
	'SIGCONT: sampling resumes and counts the 5 idle sessions');
is( scalar_q(
		$node, "SELECT count(*) FROM dbpool_guard.sessions WHERE service = 'known' AND state = 'idle'"),
	'5', 'SIGCONT: every session has its state again');
is(worker_pid($node), $wpid, 'SIGCONT: the same worker carries on');
ok(!$node->log_contains(qr/dbpool_guard worker.*exited|terminated by signal/, $offset),
	'no worker exit and no crash in the log');
ok(exact_storm(), 'SIGCONT: storms are still exact');

# --- latency: stopped against running, before and after -----------------------------------

# A login that waited for the worker would not have completed at all
# (checked above); this compares the speed of the same work with the
# worker stopped and with it running just before and just after, so that
# a change of the machine's load in between is seen by a baseline.
my ($after) = mix();
my ($mb, $ma, $md) = (median(@$base), median(@$after), median(@$during));
my $ref = $mb > $ma ? $mb : $ma;
note(sprintf('login latency: median %.1f ms before, %.1f ms stopped, %.1f ms after; max %.1f / %.1f / %.1f ms',
		1000 * $mb, 1000 * $md, 1000 * $ma, 1000 * max_of(@$base), 1000 * max_of(@$during),
		1000 * max_of(@$after)));
ok($md <= 3 * $ref + 0.010,
	sprintf('worker stopped: median login latency %.1f ms, not above 3 x %.1f ms + 10 ms (the slower baseline)',
		1000 * $md, 1000 * $ref));

$_->close for @known;
ok(wait_released($node), 'every slot is released');

$node->stop;
done_testing();
