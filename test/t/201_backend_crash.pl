# SIGKILL of a regular backend that holds a slot, while a login storm and
# a background load are running: the postmaster's crash restart
# reinitializes shared memory; afterwards the counts equal the sessions
# that really exist (none of the old ones, all of the new ones), the
# counters started again from zero, and enforcement is exact.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use DbpgWire;

my $cap = 6;
my $node = guard_node('backend_crash',
	max_connections => 80,
	conf => "dbpool_guard.budgets = 'crash=$cap\@1.0, other=4\@1.0, *=3\@1.0'\n"
	  . "dbpool_guard.sample_interval = 100\n"
	  . "restart_after_crash = on\n");

sub live_vs_counted
{
	return scalar_q(
		$node, q{SELECT string_agg(s.service || ':' || s.connections || ':' ||
		           (SELECT count(*) FROM dbpool_guard.sessions x WHERE x.service = s.service), ' '
		           ORDER BY s.service COLLATE "C")
		         FROM dbpool_guard.status s});
}

# --- before: sessions held in three buckets -------------------------------------------

my @held = (
	(map { wire_login($node, application_name => 'other') } 1 .. 3),
	(map { wire_login($node, application_name => "inv-$_") } 1 .. 2));
is(scalar(grep { $_->{ok} } @held), 5, 'five sessions hold slots in "other" and "*"');

my $loader = DbpgWire::loader(
	login => { wire_params($node) },
	apps => [ 'crash', 'inv-x' ],
	batch => 6,
	hold_ms => 30);
ok( $node->poll_query_until('postgres',
		"SELECT sum(admitted_total + rejected_total) >= 100 FROM dbpool_guard.status WHERE service IN ('crash', '*')"
	),
	'the background load is running');

# A storm on "crash"; one admitted backend is SIGKILLed while the rest of
# the storm is still being answered.  The background load also logs in as
# "crash" and may hold all its slots while a whole storm is answered: then
# every login of that storm is refused, and another storm is sent, until
# one login is admitted (bounded by $TIMEOUT).
my $offset = -s $node->logfile;
my (@storm, $victim);
my $deadline = time() + $DbpgTest::TIMEOUT;
while (!defined $victim && time() < $deadline)
{
	$_->close for @storm;
	@storm = wire_start($node, 30, application_name => 'crash');
	for my $c (@storm)
	{
		$c->wait_ready;
		if ($c->{ok}) { $victim = $c; last; }
	}
}
ok(defined $victim, 'a storm login is admitted');
kill 'KILL', $victim->{pid};
DbpgWire::wait_all(\@storm);
my %outcome;
$outcome{ $_->outcome }++ for @storm;
note('storm outcomes: ' . join(' ', map { "$_=$outcome{$_}" } sort keys %outcome));

ok( log_wait($node,
		qr/(?:server process|client backend) \(PID $victim->{pid}\) was terminated by signal 9/,
		$offset),
	'the postmaster sees the backend killed');
ok(log_wait($node, qr/all server processes terminated; reinitializing/, $offset),
	'PostgreSQL does a crash restart');
ok($node->poll_query_until('postgres', 'SELECT 1', '1'), 'the server accepts logins again');
ok(wait_new_worker($node, undef), 'the worker runs again');
is(status_of($node, 'other', 'admitted_total, peak_connections'), '0|0',
	'the counters started again from zero ("other" held 3 before)');
ok( $node->poll_query_until('postgres',
		"SELECT sum(admitted_total + rejected_total) >= 100 FROM dbpool_guard.status WHERE service IN ('crash', '*')"
	),
	'the background load goes on after the restart');

my $tally = $loader->stop;
note('background load: ' . join(' ', map { "$_=$tally->{$_}" } sort keys %$tally));
is(scalar(grep { !$_->closed_by_server } @held, $victim),
	0, 'every session of before the crash was ended');

# Logins of the storm still queued at the crash were answered after the
# restart: those are real sessions now, and the only ones.
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = 'app' AND application_name <> 'crash'"),
	'the background load has left');
my %live = map { $_ => 1 } split /\n/,
  $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE usename = 'app'");
my @after = grep { $_->{ok} && $live{ $_->{pid} } } @storm;
is(scalar(grep { $_->{ok} && !$live{ $_->{pid} } && !$_->closed_by_server } @storm),
	0, 'every other admitted storm session was ended by the crash');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = " . scalar(@after) . " FROM pg_stat_activity WHERE usename = 'app'"),
	'only the storm sessions answered after the restart are left (' . scalar(@after) . ')');
is(status_of($node, 'crash', 'connections') . ' ' . scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'),
	scalar(@after) . ' ' . scalar(@after),
	'"crash" and the sessions view count exactly those');
$_->close for @held, @storm;

# --- after: counts equal the sessions that exist ----------------------------------------

ok(wait_released($node), 'no bucket counts a session that the crash restart ended');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'), '0',
	'the sessions view is empty');

@held = (
	(map { wire_login($node, application_name => 'crash') } 1 .. 4),
	(map { wire_login($node, application_name => 'other') } 1 .. 2),
	wire_login($node, application_name => 'inv-new'));
is(scalar(grep { $_->{ok} } @held), 7, 'seven new sessions log in');
is(live_vs_counted(), '*:1:1 crash:4:4 other:2:2',
	'each bucket counts exactly its live sessions');
is( scalar_q(
		$node, q{SELECT string_agg(application_name || ':' || n, ' ' ORDER BY application_name COLLATE "C")
		           FROM (SELECT application_name, count(*) n FROM pg_stat_activity
		                  WHERE usename = 'app' GROUP BY 1) a}),
	'crash:4 inv-new:1 other:2',
	'pg_stat_activity agrees');

# enforcement: a storm of 20 fills "crash" exactly to its cap
my ($adm, $rej) = split /\|/, status_of($node, 'crash', 'admitted_total, rejected_total');
my @s2 = wire_storm($node, 20, application_name => 'crash');
is(scalar(grep { $_->{ok} } @s2), $cap - 4, 'a storm after the restart gets exactly the 2 free slots');
is(scalar(grep { $_->is_refusal } @s2), 20 - ($cap - 4), 'the other 18 are refused by us');
is(status_of($node, 'crash', 'connections, admitted_total, rejected_total, state'),
	"$cap|" . ($adm + 2) . '|' . ($rej + 18) . '|rejecting',
	'the counters are exact');
ok( $node->poll_query_until('postgres',
		"SELECT idle = $cap FROM dbpool_guard.status WHERE service = 'crash'"),
	'the new worker samples them');

$_->close for @held, @s2;
ok(wait_released($node), 'every slot is released at the end');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'), '0', 'no holder remains');

$node->stop;
done_testing();
