# dbpool_guard.health() (extension version 1.1): the readiness summary
# follows the services' states (ok, warning, critical), reports the mode
# and the worker's sample age, agrees with dbpool_guard.status service by
# service, ignores budgets of 0 for its overall status, and is readable by
# pg_monitor only.  The upgrade from 1.0 is tested by sql/health.sql.

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib $FindBin::RealBin;

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
	return decode_json(scalar_q($node, 'SELECT dbpool_guard.health()'));
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
	[qw(mode sample_age_seconds sampled_at services status)],
	'health() has status, mode, sampled_at, sample_age_seconds, services');
is($h->{status}, 'ok', 'idle server: status ok');
is($h->{mode}, 'enforce', 'mode is reported');
ok(defined $h->{sample_age_seconds}
	  && $h->{sample_age_seconds} >= 0
	  && $h->{sample_age_seconds} < 30,
	"sample age is a small number of seconds ($h->{sample_age_seconds})");
is_deeply([ map { $_->{name} } @{ $h->{services} } ],
	[ 'cdn-service', 'feed-service', 'zero-service', '*' ],
	'one object per service, in name order, "*" last');
is_deeply([ sort keys %{ $h->{services}[0] } ],
	[qw(budget cap connections name state utilization)],
	'service objects: name, connections, cap, budget, utilization, state');
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
is(health()->{mode}, 'monitor', 'mode follows dbpool_guard.mode');
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

# --- everything released: ok again -------------------------------------------------

quit_all(@feed, @cdn);
ok(wait_count($node, 'feed-service', 0) && wait_count($node, 'cdn-service', 0),
	'all slots released');
is(health()->{status}, 'ok', 'status back to ok');

# --- no "*" entry: the shared bucket has no budget -------------------------------

set_conf($node, 'dbpool_guard.budgets' => 'cdn-service=2');
$h = health();
is_deeply(
	service($h, '*'),
	{   name => '*',
		connections => 0,
		cap => undef,
		budget => undef,
		utilization => undef,
		state => 'ok'
	},
	'"*" without a budget: budget, cap and utilization are null');
is(mismatches(), 0, 'health() agrees with status without a "*" entry');

$node->stop;
done_testing();
