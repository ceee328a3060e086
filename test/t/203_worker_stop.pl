# SIGSTOP the sampling worker for 10 seconds.  Admission does not depend
# on it: while it is stopped, logins are neither slowed (latency compared
# with a baseline taken just before) nor refused wrongly (every login to
# a service under its cap gets in; storms admit exactly the cap), a
# service added by a reload is enforced at once, and slots are released.
# The status view shows the staleness: sampled_at stops moving and the
# per-state counts stay those of the last sample.  SIGCONT: the same
# worker samples again at once.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;
use lib "$FindBin::RealBin/../soak";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
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

sub login_params
{
	my (%p) = @_;
	return (host => $node->host, port => $node->port, user => 'app',
		dbname => 'postgres', %p);
}

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

# Wait until /proc shows the process stopped (state T).
sub process_stopped
{
	my ($pid) = @_;
	for (1 .. 100)
	{
		open(my $fh, '<', "/proc/$pid/stat") or return 0;
		my $stat = <$fh>;
		close $fh;
		return 1 if $stat =~ /^\d+ \(.*\) [tT] /;
		usleep(20_000);
	}
	return 0;
}

# Sequential logins to "known": returns (latencies of the admitted, failures).
sub sequential_logins
{
	my ($n) = @_;
	my (@lat, @fail);
	for (1 .. $n)
	{
		my $c = DbpgWire::login(login_params(application_name => 'known'));
		if ($c->{ok}) { push @lat, $c->{login_seconds}; $c->close; }
		else { push @fail, "$c->{error}{C} $c->{error}{M}"; }
	}
	return (\@lat, \@fail);
}

# A storm of 3 * cap on "stop": true when exactly the cap got in and every
# other login was refused by us; the admitted are closed and released.
sub exact_storm
{
	my @c = DbpgWire::storm([ map { { login_params(application_name => 'stop') } } 1 .. 3 * $cap ]);
	my $ok = grep { $_->{ok} } @c;
	my $refused = grep { $_->is_refusal } @c;
	$_->close for @c;
	my $released = wait_count($node, 'stop', 0);
	diag("storm: $ok admitted, $refused refused") unless $ok == $cap && $refused == 2 * $cap;
	return $ok == $cap && $refused == 2 * $cap && $released;
}

# --- baseline, worker running ---------------------------------------------------------

# the same mix as while stopped below: 10 logins, a storm, and again
my (@base, @base_fail);
my $base_exact = 0;
for (1 .. 8)
{
	my ($lat, $f) = sequential_logins(10);
	push @base, @$lat;
	push @base_fail, @$f;
	$base_exact++ if exact_storm();
}
my $base = \@base;
is(scalar(@base_fail), 0, 'baseline: every login gets in');
is($base_exact, 8, 'baseline: storms admit exactly the cap');

my @known = map { DbpgWire::login(login_params(application_name => 'known')) } 1 .. 3;
ok( $node->poll_query_until(
		'postgres', "SELECT connections = 3 AND idle = 3 FROM dbpool_guard.status WHERE service = 'known'"),
	'the worker has sampled the 3 idle "known" sessions');

# --- SIGSTOP for 10 s -------------------------------------------------------------------

my $wpid = worker_pid($node);
my $offset = -s $node->logfile;
kill 'STOP', $wpid;
$stopped = $wpid;
my $t0 = time();
ok(process_stopped($wpid), 'the worker is stopped');
my $sampled_at = status_of($node, 'known', 'sampled_at');

my (@during, @wrong, $storms, $exact);
$storms = $exact = 0;

# a service added by a reload: its first login inserts its bucket
set_conf($node, 'dbpool_guard.budgets' => "$budgets, late=2\@1.0");
my @late = map { DbpgWire::login(login_params(application_name => 'late')) } 1 .. 3;
is(join(' ', map { $_->{ok} ? 'ok' : $_->is_refusal ? 'refused' : 'error' } @late),
	'ok ok refused', 'worker stopped: a service added by a reload is enforced at once');
$_->close for @late;
ok(wait_count($node, 'late', 0), 'worker stopped: its slots are released');

# two more held sessions, admitted while the worker cannot see them
push @known, map { DbpgWire::login(login_params(application_name => 'known')) } 1 .. 2;
is(scalar(grep { $_->{ok} } @known), 5, 'worker stopped: 5 sessions hold "known" slots');

while (time() - $t0 < 10)
{
	my ($lat, $f) = sequential_logins(10);
	push @during, @$lat;
	push @wrong, @$f;
	$storms++;
	$exact++ if exact_storm();
}
is(scalar(@wrong), 0,
	'worker stopped: no login to a service under its cap was refused ('
	  . scalar(@during) . ' logins)');
is($exact, $storms, "worker stopped: all $storms storms admitted exactly the cap");

my ($mb, $xb, $md, $xd) = (median(@$base), max_of(@$base), median(@during), max_of(@during));
note(sprintf('login latency: baseline median %.1f ms, max %.1f ms; stopped median %.1f ms, max %.1f ms',
		1000 * $mb, 1000 * $xb, 1000 * $md, 1000 * $xd));
ok($md <= 3 * $mb + 0.010,
	sprintf('worker stopped: median login latency %.1f ms (baseline %.1f ms)', 1000 * $md, 1000 * $mb));
ok($xd < 2, sprintf('worker stopped: no login took long (max %.0f ms)', 1000 * $xd));

# staleness, just before SIGCONT
is(status_of($node, 'known', 'sampled_at'), $sampled_at,
	'worker stopped: sampled_at has not moved');
ok( scalar_q($node,
		"SELECT now() - sampled_at >= interval '9.5 s' FROM dbpool_guard.status WHERE service = 'known'")
	  eq 't',
	'worker stopped: now() - sampled_at shows the staleness (>= 9.5 s)');
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

$_->close for @known;
ok( $node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM dbpool_guard.status WHERE connections <> 0'),
	'every slot is released');

$node->stop;
done_testing();
