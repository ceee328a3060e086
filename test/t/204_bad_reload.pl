# Bad configuration while logins go on.  A reload with an invalid
# budgets value, with more services than max_services, or with an invalid
# exempt_roles value keeps the configuration in force (enforcement and
# exemptions unchanged, the worker's summary line shows the old values)
# and the log says why.  A server started with an invalid budgets value
# fails open: it starts, says no budgets are in force, and counts.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use DbpgWire;

my $good = 'a=2@1.0, b=3@1.0, *=2@1.0';
my $node = guard_node('bad_reload',
	max_connections => 80,
	conf => "dbpool_guard.max_services = 4\n"
	  . "dbpool_guard.budgets = '$good'\n"
	  . "dbpool_guard.exempt_roles = 'monitoring'\n");
$node->safe_psql('postgres',
	'CREATE ROLE monitoring NOLOGIN; CREATE ROLE mon LOGIN IN ROLE monitoring;');

# max_connections 80 - superuser_reserved_connections 3
my $summary_good =
  qr/LOG:  dbpool_guard: mode "enforce", 3 budgets in force\n.*DETAIL:  .*The budgets total 7 of 77 available connections\. .*Exempt roles: "monitoring"\./;

# "a" is full (2 of cap 2): a third login is refused; a member of the
# exempt role gets in.  Returns e.g. "refused ok".
sub probe
{
	my $third = wire_login($node, application_name => 'a');
	my $exempt = wire_login($node, application_name => 'a', user => 'mon');
	my $r = $third->outcome . ' ' . $exempt->outcome;
	$_->close for $third, $exempt;
	return $r;
}

my @a = map { wire_login($node, application_name => 'a') } 1 .. 2;
is(join(' ', map { $_->outcome } @a), 'ok ok', 'two sessions fill "a"');
is(probe(), 'refused ok', 'in force: "a" refuses the third login, the exempt member gets in');

my $loader = DbpgWire::loader(
	login => { wire_params($node) },
	apps => [ 'b', 'inv-1', 'inv-2' ],
	batch => 5,
	hold_ms => 20);

my @bad = (
	[ 'budgets', 'a=5@1.0, b=oops, *=2@1.0', 'an invalid budget',
		qr/DETAIL:  Entry 2 \("b=oops"\) has no budget/ ],
	[ 'budgets', 'a=5@1.0, b=5, c=1, d=1, e=1, *=9', 'five services with max_services = 4',
		qr/DETAIL:  Entry 5 \("e=1"\) is one more than the 4 services that dbpool_guard\.max_services allows\./ ],
	[ 'budgets', 'a=5@1.0, "b=5', 'an unterminated quote',
		qr/DETAIL:  Entry 2 \(""b=5"\) has an unterminated quoted name\./ ],
	[ 'exempt_roles', 'monitoring, monitoring', 'a role listed twice',
		qr/DETAIL:  Role "monitoring" is listed more than once\./ ],
	[ 'exempt_roles', 'nobody, "unterminated', 'an unterminated quote in exempt_roles',
		qr/DETAIL:  Entry 2 \(""unterminated"\) has an unterminated quoted name\./ ],);

for my $b (@bad)
{
	my ($guc, $value, $what, $why) = @$b;
	my $offset = -s $node->logfile;
	set_conf($node, "dbpool_guard.$guc" => $value);
	ok( log_wait($node,
			qr/LOG:  invalid value for parameter "dbpool_guard\.$guc": "\Q$value\E"\n(?:.*\n)*?.*$why/,
			$offset),
		"$what: the log says the value is invalid and why");
	ok( log_wait($node, qr/configuration file ".*" contains errors; unaffected changes were applied/,
			$offset),
		"$what: the rest of the file was applied");
	ok(log_wait($node, $summary_good, $offset),
		"$what: the worker's summary after the reload shows the old configuration");
	is($node->safe_psql('postgres', 'SHOW dbpool_guard.budgets'), $good,
		"$what: SHOW dbpool_guard.budgets is the old value");
	is($node->safe_psql('postgres', 'SHOW dbpool_guard.exempt_roles'), 'monitoring',
		"$what: SHOW dbpool_guard.exempt_roles is the old value");
	is(status_of($node, 'a', 'budget, cap'), '2|2', "$what: \"a\" keeps budget 2, cap 2");
	is(probe(), 'refused ok', "$what: \"a\" is still enforced and the exemption still holds");
}

# before stopping the load: it was refused at times (however slowly it
# ran next to the reloads)
ok( $node->poll_query_until('postgres',
		"SELECT sum(rejected_total) > 0 FROM dbpool_guard.status WHERE service IN ('b', '*')"),
	'the counters saw the background load refused');
my $tally = $loader->stop;
note('background load: ' . join(' ', map { "$_=$tally->{$_}" } sort keys %$tally));
is(join(' ', grep { /^other/ } sort keys %$tally), '',
	'the background load saw only admissions and our refusals');
ok($tally->{refused} > 0, 'and it was refused at times');
$_->close for @a;
ok(wait_released($node), 'no slot leaked');

# a good reload after all that is taken
set_conf($node, 'dbpool_guard.budgets' => 'a=1@1.0, b=3@1.0, *=2@1.0');
is(status_of($node, 'a', 'budget, cap'), '1|1', 'a good reload afterwards is applied');

# --- an invalid value at server start: fail open --------------------------------------

$node->append_conf('postgresql.conf', "dbpool_guard.budgets = 'a=1, a=2'\n");
my $offset = -s $node->logfile;
$node->restart;
ok( $node->log_contains(
		qr/WARNING:  invalid value for parameter "dbpool_guard\.budgets": "a=1, a=2"\n(?:.*\n)*?.*DETAIL:  Service "a" is listed more than once\./,
		$offset),
	'start with an invalid value: the server starts, and the log says why');
ok(log_wait($node, qr/WARNING:  dbpool_guard: no budgets are in force/, $offset),
	'start with an invalid value: the worker says no budgets are in force');
@a = map { wire_login($node, application_name => 'a') } 1 .. 4;
is(join(' ', map { $_->outcome } @a), 'ok ok ok ok',
	'start with an invalid value: nothing is refused (fail open)');
is(status_of($node, '*', 'connections'), '4', 'start with an invalid value: sessions are still counted');
$_->close for @a;
ok(wait_count($node, '*', 0), 'released');

$node->stop;
done_testing();
