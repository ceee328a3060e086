# dbpool_guard.health() (extension version 1.1): the readiness summary
# follows the services' states (ok, warning, critical), reports the mode
# and the worker's sample age, agrees with dbpool_guard.status service by
# service, ignores budgets of 0 for its overall status, and is readable by
# pg_monitor only.  The upgrade from 1.0 is tested by sql/upgrade.sql.
# Since 1.4 it says whether budgets are enforced (keys enforced and
# enforcement, from dbpool_guard.enforcement()), and a guard that enforces
# nothing is never "ok": mode monitor, mode off, empty budgets, and a
# budgets value that postgresql.conf had at server start but that was
# rejected (the server starts without budgets) all make it "warning", until
# the configuration is fixed and reloaded.  Since 1.5 each service shows
# its burst, borrowed slots and waiting logins, and the top level the
# burst pool (a bursting service's health: test/t/700_burst.pl).

use strict;
use warnings FATAL => 'all';


use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $node = guard_node('health',
	conf => "dbpool_guard.budgets = 'cdn-service=2, feed-service=8, zero-service=0, *=4'\n"
	  . "dbpool_guard.sample_interval = 100\n");
# guard_node created the default version; health() needs 1.1 or later
$node->safe_psql('postgres', 'ALTER EXTENSION dbpool_guard UPDATE');
is( scalar_q(
		$node, "SELECT to_regprocedure('dbpool_guard.health()') IS NOT NULL"),
	't',
	'the default extension version has health()');
ok(wait_samples($node, 1), 'the worker has sampled');

sub health
{
	my ($n) = @_;
	return decode_json(scalar_q($n // $node, 'SELECT dbpool_guard.health()'));
}

# dbpool_guard.enforcement() as a hash: enforced (1 or 0), reason, detail.
sub enforcement
{
	my ($n) = @_;
	return decode_json(
		scalar_q(
			$n // $node, q{
		SELECT json_build_object('enforced', enforced, 'reason', reason, 'detail', detail)
		  FROM dbpool_guard.enforcement()}));
}

# health() and enforcement() on $n agree, and say (enforced, reason).
sub enforcement_is
{
	my ($n, $enforced, $reason, $what) = @_;
	my $h = health($n);
	my $e = enforcement($n);
	is_deeply(
		[ $h->{enforced} ? 'true' : 'false', $h->{enforcement} ],
		[ $enforced ? 'true' : 'false', $reason ],
		"$what: health() enforced " . ($enforced ? 'true' : 'false') . ", enforcement $reason");
	is_deeply(
		[ $e->{enforced} ? 'true' : 'false', $e->{reason} ],
		[ $enforced ? 'true' : 'false', $reason ],
		"$what: enforcement() agrees");
	like($e->{detail}, qr/^[A-Z"].{20,}\.$/,
		"$what: detail is a sentence ($e->{detail})");
	return $h;
}

# Services of health() that differ from their dbpool_guard.status row, or
# are missing on either side.
sub mismatches
{
	return scalar_q(
		$node, q{
		SELECT count(*)
		  FROM jsonb_array_elements(dbpool_guard.health()->'services') AS e
		  FULL JOIN dbpool_guard.status AS s ON s.service = e->>'name'
		 WHERE e IS NULL OR s.service IS NULL
		    OR (e->>'connections')::int IS DISTINCT FROM s.connections
		    OR (e->>'cap')::int IS DISTINCT FROM s.cap
		    OR (e->>'budget')::int IS DISTINCT FROM s.budget
		    OR (e->>'utilization')::float8 IS DISTINCT FROM s.utilization
		    OR (e->>'burst')::int IS DISTINCT FROM s.burst
		    OR (e->>'borrowed')::int IS DISTINCT FROM s.borrowed
		    OR (e->>'waiting_logins')::int IS DISTINCT FROM s.waiting_logins
		    OR e->>'state' IS DISTINCT FROM s.state});
}

sub service
{
	my ($h, $name) = @_;
	my ($s) = grep { $_->{name} eq $name } @{ $h->{services} };
	return $s;
}

# --- nothing held ------------------------------------------------------------

my $h = health();
is_deeply([ sort keys %$h ],
	[qw(enforced enforcement mode pool sample_age_seconds sampled_at services status)],
	'health() has status, mode, enforced, enforcement, sampled_at, sample_age_seconds, pool, services');
is_deeply($h->{pool}, { size => 0, borrowed => 0, waiting_logins => 0 },
	'pool: size, borrowed, waiting_logins (1.5), all 0 without a pool');
is($h->{status}, 'ok', 'idle server: status ok');
ok(JSON::PP::is_bool($h->{enforced}), 'enforced is a JSON boolean');
enforcement_is($node, 1, 'enforced', 'mode enforce with budgets');
is($h->{mode}, 'enforce', 'mode is reported');
ok(defined $h->{sample_age_seconds}
	  && $h->{sample_age_seconds} >= 0
	  && $h->{sample_age_seconds} < 30,
	"sample age is a small number of seconds ($h->{sample_age_seconds})");
is_deeply([ map { $_->{name} } @{ $h->{services} } ],
	[ 'cdn-service', 'feed-service', 'zero-service', '*' ],
	'one object per service, in name order, "*" last');
is_deeply([ sort keys %{ $h->{services}[0] } ],
	[qw(borrowed budget burst cap connections name state utilization waiting_logins)],
	'service objects: name, connections, cap, budget, burst, borrowed, waiting_logins, utilization, state');
is(service($h, 'zero-service')->{state}, 'rejecting',
	'a budget of 0 is always rejecting');
is(mismatches(), 0, 'every service object agrees with dbpool_guard.status');

# --- warning: feed-service at 6 of 8 (warning_threshold 0.75, cap 7) -----------

my @feed = map { hold($node, 'feed-service') } 1 .. 6;
ok(wait_count($node, 'feed-service', 6), 'feed-service holds 6');
$h = health();
is($h->{status}, 'warning', 'a service at 75 % of its budget: status warning');
is_deeply(
	service($h, 'feed-service'),
	{   name => 'feed-service',
		connections => 6,
		cap => 7,
		budget => 8,
		burst => 0,
		borrowed => 0,
		waiting_logins => 0,
		utilization => 0.75,
		state => 'warning'
	},
	'feed-service: 6 of cap 7, budget 8, 0.75, warning');
is(mismatches(), 0, 'health() agrees with status at warning');

# --- critical: cdn-service at its cap and refusing -----------------------------

my @cdn = map { hold($node, 'cdn-service') } 1 .. 2;
ok(wait_count($node, 'cdn-service', 2), 'cdn-service holds 2');
like(hold_fails($node, app => 'cdn-service'),
	$DbpgTest::REFUSAL, 'a third cdn-service login is refused');
$h = health();
is($h->{status}, 'critical', 'a service at its cap: status critical');
is(service($h, 'cdn-service')->{state}, 'rejecting', 'cdn-service is rejecting');
is(mismatches(), 0, 'health() agrees with status at critical');

# --- mode ------------------------------------------------------------------------

set_conf($node, 'dbpool_guard.mode' => 'monitor');
$h = health();
is($h->{mode}, 'monitor', 'mode follows dbpool_guard.mode');
is($h->{status}, 'critical',
	'monitor mode with a service at its cap: still critical (not enforced does not lower it)');
ok(!$h->{enforced}, '... and enforced is false');
set_conf($node, 'dbpool_guard.mode' => 'enforce');

# --- privileges: pg_monitor, not PUBLIC ---------------------------------------

$node->safe_psql('postgres',
	'CREATE ROLE probe LOGIN IN ROLE pg_monitor; CREATE ROLE nobody LOGIN;');
my ($ret, $out, $err) = $node->psql(
	'postgres',
	"SELECT dbpool_guard.health()->>'status'",
	connstr => conn($node, user => 'probe', app => 'readiness-probe'));
is($out, 'critical', 'a member of pg_monitor reads health()');
($ret, $out, $err) = $node->psql(
	'postgres',
	'SELECT dbpool_guard.health()',
	connstr => conn($node, user => 'nobody', app => 'readiness-probe'));
like($err, qr/permission denied for function health/,
	'a role outside pg_monitor may not call health()');
($ret, $out, $err) = $node->psql(
	'postgres',
	'SELECT reason FROM dbpool_guard.enforcement()',
	connstr => conn($node, user => 'probe', app => 'readiness-probe'));
is($out, 'enforced', 'a member of pg_monitor reads enforcement()');
($ret, $out, $err) = $node->psql(
	'postgres',
	'SELECT reason FROM dbpool_guard.enforcement()',
	connstr => conn($node, user => 'nobody', app => 'readiness-probe'));
like($err, qr/permission denied for function enforcement/,
	'a role outside pg_monitor may not call enforcement()');

# --- everything released: ok again -------------------------------------------------

quit_all(@feed, @cdn);
ok(wait_count($node, 'feed-service', 0) && wait_count($node, 'cdn-service', 0),
	'all slots released');
is(health()->{status}, 'ok', 'status back to ok');

# --- budgets not enforced: never "ok", but "warning" ----------------------------
#
# Every service is "ok" below; only enforcement makes the status a warning.

# No service is at its warning level or cap (a budget of 0 is always
# "rejecting" and does not count).
sub all_services_ok
{
	my ($h) = @_;
	return !grep { $_->{state} ne 'ok' && ($_->{budget} // -1) != 0 }
	  @{ $h->{services} };
}

set_conf($node, 'dbpool_guard.mode' => 'monitor');
$h = enforcement_is($node, 0, 'mode_monitor', 'mode monitor');
is($h->{status}, 'warning', 'mode monitor: status warning');
ok(all_services_ok($h), '... although no service is at its warning level');
($ret, $out, $err) = $node->psql(
	'postgres',
	"SELECT dbpool_guard.health()->>'status'",
	connstr => conn($node, user => 'probe', app => 'readiness-probe'));
like($out, qr/^(ok|warning)$/,
	'the readiness probe of docs/monitoring.md still passes (warning)');

set_conf($node, 'dbpool_guard.mode' => 'off');
$h = enforcement_is($node, 0, 'mode_off', 'mode off');
is($h->{status}, 'warning', 'mode off: status warning');
is($h->{mode}, 'off', 'mode off: mode is reported');

# the mode is checked first: monitor with empty budgets is mode_monitor
set_conf($node, 'dbpool_guard.mode' => 'monitor', 'dbpool_guard.budgets' => '');
enforcement_is($node, 0, 'mode_monitor', 'mode monitor and empty budgets');

set_conf($node, 'dbpool_guard.mode' => 'enforce');
$h = enforcement_is($node, 0, 'no_budgets', 'mode enforce, empty budgets');
is($h->{status}, 'warning', 'empty budgets: status warning');

# "*" alone is a budget in force
set_conf($node, 'dbpool_guard.budgets' => '*=4');
$h = enforcement_is($node, 1, 'enforced', 'only a "*" budget');
is($h->{status}, 'ok', 'only a "*" budget: status ok');

# a bad value at reload keeps the budgets in force
set_conf($node, 'dbpool_guard.budgets' => 'feed-service=8, search-service=abc');
$h = enforcement_is($node, 1, 'enforced', 'a bad value at reload over "*=4"');
is(service($h, '*')->{budget}, 4, '... the previous budgets stay in force');
is($h->{status}, 'ok', '... status ok');

# --- no "*" entry: the shared bucket has no budget -------------------------------

set_conf($node, 'dbpool_guard.budgets' => 'cdn-service=2');
$h = enforcement_is($node, 1, 'enforced', 'a named budget and no "*" entry');
is($h->{status}, 'ok', 'a named budget and no "*" entry: status ok');
is_deeply(
	service($h, '*'),
	{   name => '*',
		connections => 0,
		cap => undef,
		budget => undef,
		burst => 0,
		borrowed => 0,
		waiting_logins => 0,
		utilization => undef,
		state => 'ok'
	},
	'"*" without a budget: budget, cap and utilization are null');
is(mismatches(), 0, 'health() agrees with status without a "*" entry');

$node->stop;

# --- a budgets value rejected at server start -----------------------------------
#
# PostgreSQL rejects the value with a WARNING when the library defines the
# setting and starts with no budgets.  health() must not say "ok".

my $bad = guard_node('health_rejected',
	conf => "dbpool_guard.budgets = 'feed=8, search=abc'\n"
	  . "dbpool_guard.sample_interval = 100\n");
like(
	slurp_file($bad->logfile),
	qr/invalid value for parameter "dbpool_guard\.budgets": "feed=8, search=abc"/,
	'the server log says the value was rejected at start');
is(scalar_q($bad, 'SHOW dbpool_guard.budgets'), '', 'no budgets are in force');
$h = enforcement_is($bad, 0, 'budgets_rejected', 'budgets rejected at start');
isnt($h->{status}, 'ok', "budgets rejected at start: status is not ok ($h->{status})");
is($h->{status}, 'warning', 'budgets rejected at start: status warning');
is($h->{mode}, 'enforce', '... in mode enforce');

# still rejected after a reload with another bad value
set_conf($bad, 'dbpool_guard.budgets' => 'feed=8, search=-1');
enforcement_is($bad, 0, 'budgets_rejected', 'another bad value at reload');
ok( log_wait(
		$bad,
		qr/WARNING:  dbpool_guard: no budgets are in force\n.*DETAIL:  The value of "dbpool_guard\.budgets" in the configuration was rejected/,
		0),
	'the worker says the value was rejected, not that it is empty');

# a failed ALTER SYSTEM applies nothing and changes nothing
($ret, $out, $err) = $bad->psql('postgres',
	"ALTER SYSTEM SET dbpool_guard.budgets = 'x=oops'");
like($err, qr/invalid value for parameter "dbpool_guard\.budgets"/,
	'ALTER SYSTEM with a bad value fails');
enforcement_is($bad, 0, 'budgets_rejected', 'after a failed ALTER SYSTEM');

# the bad lines removed from postgresql.conf: no longer "rejected", just empty
my $conf = slurp_file($bad->data_dir . '/postgresql.conf');
$conf =~ s/^dbpool_guard\.budgets\b.*\n//mg;
open(my $fh, '>', $bad->data_dir . '/postgresql.conf') or die $!;
print $fh $conf;
close $fh;
$bad->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( $bad->poll_query_until(
		'postgres', "SELECT reason = 'no_budgets' FROM dbpool_guard.enforcement()"),
	'bad lines removed and reloaded: the reason becomes no_budgets');
enforcement_is($bad, 0, 'no_budgets', 'bad lines removed');

# set in postgresql.conf and reloaded: enforced, status ok
$bad->append_conf('postgresql.conf', "dbpool_guard.budgets = 'feed=8, search=4'\n");
$bad->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( $bad->poll_query_until(
		'postgres', "SELECT (dbpool_guard.health()->'enforced')::bool"),
	'after the fix and pg_reload_conf(), health() says enforced');
$h = enforcement_is($bad, 1, 'enforced', 'budgets fixed and reloaded');
is($h->{status}, 'ok', 'budgets fixed and reloaded: status ok');
is_deeply([ map { $_->{name} } @{ $h->{services} } ],
	[ 'feed', 'search', '*' ], '... with the fixed budgets');

# enforcement() reads the configuration files at each call: it must not
# log (a missing include_if_exists file is reported at LOG by the parser)
# nor send its caller anything, however often a probe calls it
$bad->append_conf('postgresql.conf',
	"include_if_exists = 'dbpg_missing.conf'\ndbpool_guard.budgets = ''\n");
set_conf($bad);
my $probe = $bad->safe_psql(
	'postgres', q{
	SET client_min_messages = debug5;
	SELECT reason FROM dbpool_guard.enforcement();
	SELECT reason FROM dbpool_guard.enforcement();
	SELECT pg_backend_pid();});
my ($r1, $r2, $ppid) = split /\n/, $probe;
is("$r1 $r2", 'no_budgets no_budgets', 'budgets emptied: no_budgets');
my @noise = grep { /\[$ppid\] .*(?:skipping missing configuration file|dbpg_missing)/ }
  split /\n/, slurp_file($bad->logfile);
is(scalar(@noise), 0, 'reading the configuration files for enforcement() logs nothing');
$bad->stop;

done_testing();
