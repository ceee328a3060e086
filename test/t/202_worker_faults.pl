# Faults of the sampling worker during login storms.
#
# pg_terminate_backend (SIGTERM) on the worker, DBPG_WORKER_KILLS times
# (default 3 in the test command, 10 in test/run-long.sh; each costs the
# worker's 5 s restart delay), each during a storm: the server does not
# restart (an idle session survives every time), the worker comes back
# with a new pid each time, and admission is exact throughout: each storm
# admits exactly the cap, refuses the rest with our message, with the
# worker just killed and while it is away; a background load's own tally
# equals the counters at the end.
#
# SIGKILL on the worker, once, during a storm: PostgreSQL does a crash
# restart of every backend; afterwards the worker is back, every counter
# started again from zero, the counts equal the sessions that really
# exist, and enforcement is exact.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use DbpgTest;
use DbpgWire;

my $cap = 5;
my $kills = $ENV{DBPG_WORKER_KILLS} || 3;
die "DBPG_WORKER_KILLS must be a positive number" unless $kills =~ /^\d+$/ && $kills > 0;
my $node = guard_node('worker_faults',
	max_connections => 80,
	conf => "dbpool_guard.budgets = 'storm=$cap\@1.0, bg=4\@1.0, *=4\@1.0'\n"
	  . "dbpool_guard.sample_interval = 100\n"
	  . "restart_after_crash = on\n");

my $superuser = scalar_q($node, 'SELECT current_user');


sub totals
{
	return scalar_q($node,
		"SELECT sum(admitted_total) || ' ' || sum(rejected_total) FROM dbpool_guard.status WHERE service IN ('bg', '*')"
	);
}

# An idle superuser session: it survives unless the server restarts.
my $canary = wire_login($node, user => $superuser, application_name => 'canary');
ok($canary->{ok}, 'an idle superuser session is open');

$node->safe_psql('postgres', 'SELECT dbpool_guard.reset_counters()');
my $loader = DbpgWire::loader(
	login => { wire_params($node) },
	apps => [ 'bg', 'other-a', 'other-b' ],
	batch => 6,
	hold_ms => 30);

# --- pg_terminate_backend, $kills times ---------------------------------------------------

my $offset = -s $node->logfile;
my ($exact_killed, $exact_away, $back, $canary_ok) = (0, 0, 0, 0);
my $storm_admitted = 0;
my $worker = worker_pid($node);
ok($worker =~ /^\d+$/, 'the worker runs');
for my $round (1 .. $kills)
{
	# a storm starts, and the worker is terminated while it runs
	my @s = wire_start($node, 3 * $cap, application_name => 'storm');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($worker)");
	my $t = DbpgWire::tally(DbpgWire::wait_all(\@s));
	$exact_killed += storm_exact($t, $cap, "round $round, storm at the kill");
	$storm_admitted += @{ $t->{ok} };
	$_->close for @{ $t->{ok} };
	wait_count($node, 'storm', 0);

	# most likely while the worker is away (it is restarted after 5 s);
	# exact either way
	my $away = scalar_q($node,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dbpool_guard worker'");
	$t = DbpgWire::tally(wire_storm($node, 3 * $cap, application_name => 'storm'));
	$exact_away += storm_exact($t, $cap, "round $round, storm without worker ($away running)");
	$storm_admitted += @{ $t->{ok} };
	$_->close for @{ $t->{ok} };
	wait_count($node, 'storm', 0);

	if (wait_new_worker($node, $worker))
	{
		$back++;
		$worker = worker_pid($node);
	}
	$canary_ok++ if !$canary->closed_by_server(0) && eval { $canary->query('SELECT 1'); 1 };
}
is($exact_killed, $kills,
	"$kills storms at the moment the worker was terminated: each admitted exactly $cap, refused the rest");
is($exact_away, $kills, "$kills storms while the worker was away: each exact");
is($back, $kills, 'the worker came back each time, with a new pid');
is($canary_ok, $kills, 'the idle session survived every time: the server never restarted');
my $log = slurp_file($node->logfile, $offset);
is(count_lines($log, qr/background worker "dbpool_guard worker" \(PID \d+\) exited with exit code 1/),
	$kills, "the log shows $kills worker exits with code 1");
ok($log !~ /terminated by signal|reinitializing|server process .* was terminated/,
	'the log shows no crash and no restart');

# before stopping the load: it did admit and refuse (however slowly it runs)
ok( $node->poll_query_until('postgres',
		"SELECT sum(admitted_total) > 0 AND sum(rejected_total) > 0 FROM dbpool_guard.status WHERE service IN ('bg', '*')"),
	'the counters saw the background load admitted and refused');
my $tally = $loader->stop;
note('background load: ' . join(' ', map { "$_=$tally->{$_}" } sort keys %$tally));
ok($tally->{ok} > 0 && $tally->{refused} > 0,
	'the background load had both admissions and refusals');
is(join(' ', grep { /^other/ } sort keys %$tally), '',
	'the background load saw nothing but admissions and our refusals');
is(totals(), "$tally->{ok} $tally->{refused}",
	'admitted_total and rejected_total equal what the background load saw');
is(status_of($node, 'storm', 'admitted_total, rejected_total'),
	"$storm_admitted|" . (2 * $kills * 3 * $cap - $storm_admitted),
	'the storms\' counters are exact');
ok(wait_released($node), 'no slot leaked');
ok( $node->poll_query_until(
		'postgres', "SELECT sampled_at > now() - interval '2 s' FROM dbpool_guard.status WHERE service = 'storm'"
	),
	'the last worker samples');

# --- SIGKILL, once, during a storm -----------------------------------------------------

my @held = grep { $_->{ok} } map { wire_login($node, application_name => 'bg') } 1 .. 3;
is(scalar(@held), 3, 'three sessions hold "bg" slots');
$loader = DbpgWire::loader(
	login => { wire_params($node) },
	apps => [ 'storm', 'x' ],
	batch => 6,
	hold_ms => 30);
$offset = -s $node->logfile;
my @s = wire_start($node, 3 * $cap, application_name => 'storm');
$worker = worker_pid($node);
kill 'KILL', $worker;
# logins still queued at the crash may be answered after the restart
my $after_crash = DbpgWire::tally(DbpgWire::wait_all(\@s))->{ok};
ok( log_wait($node, qr/background worker "dbpool_guard worker" \(PID $worker\) was terminated by signal 9/,
		$offset),
	'SIGKILL: the postmaster sees the worker killed');
ok(log_wait($node, qr/all server processes terminated; reinitializing/, $offset),
	'SIGKILL: PostgreSQL does a crash restart');
ok($node->poll_query_until('postgres', 'SELECT 1', '1'), 'SIGKILL: the server accepts logins again');
ok(wait_new_worker($node, $worker), 'SIGKILL: the worker runs again');
ok($canary->closed_by_server, 'SIGKILL: the idle session was ended by the crash restart');
is(scalar(grep { !$_->closed_by_server } @held), 0, 'SIGKILL: so were the "bg" holders');
$tally = $loader->stop;
note('background load around the crash: ' . join(' ', map { "$_=$tally->{$_}" } sort keys %$tally));
$_->close for @held, @$after_crash;

# counters started again from zero: only sessions after the restart count
ok(wait_released($node), 'SIGKILL: no bucket counts a session the restart ended');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'), '0',
	'SIGKILL: the sessions view is empty');
is(status_of($node, 'bg', 'admitted_total, peak_connections'), '0|0',
	'SIGKILL: counters started again from zero ("bg" had 3 sessions before)');
$node->safe_psql('postgres', 'SELECT dbpool_guard.reset_counters()');

@held = (
	(map { wire_login($node, application_name => 'storm') } 1 .. 2),
	(map { wire_login($node, application_name => 'bg') } 1 .. 3),
	(map { wire_login($node, application_name => "new-$_") } 1 .. 2));
is(scalar(grep { $_->{ok} } @held), 7, 'after the restart: 7 sessions log in');
is( scalar_q(
		$node, q{SELECT string_agg(s.service || ':' || s.connections || ':' ||
		          (SELECT count(*) FROM dbpool_guard.sessions x WHERE x.service = s.service), ' ' ORDER BY s.service COLLATE "C")
		          FROM dbpool_guard.status s}),
	'*:2:2 bg:3:3 storm:2:2',
	'after the restart: each bucket counts exactly its live sessions');
is( scalar_q(
		$node, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"),
	'7', 'after the restart: pg_stat_activity agrees');
my $t = DbpgWire::tally(wire_storm($node, 3 * $cap, application_name => 'storm'));
is(scalar(@{ $t->{ok} }) . " $t->{refused} " . join('; ', @{ $t->{other} }),
	($cap - 2) . ' ' . (3 * $cap - ($cap - 2)) . ' ',
	'after the restart: a storm fills "storm" exactly to its cap, the rest refused by us');
is(status_of($node, 'storm', 'connections, admitted_total, rejected_total'),
	"$cap|$cap|" . (3 * $cap - ($cap - 2)),
	'after the restart: the counters count from zero');
$_->close for @{ $t->{ok} }, @held;
ok(wait_released($node), 'no slot leaked');

$node->stop;
done_testing();
