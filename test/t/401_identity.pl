# Service identity: dbpool_guard.service_roles and dbpool_guard.service_key.
#
# A role that claims a bound service it is not bound to is counted in "*",
# so a spoofing client cannot eat the bound service's budget; members of a
# bound role count as the service; with service_key = role the role itself
# is the service, whatever application_name says.  Storms go over the raw
# protocol (DbpgWire), so all logins of one storm authenticate together.

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use DbpgTest;
use DbpgWire;

my $node = guard_node('identity',
	max_connections => 80,
	conf => "dbpool_guard.budgets = 'auth-service=5\@1, *=4\@1'\n"
	  . "dbpool_guard.service_roles = 'auth-service=auth_role'\n"
	  . "dbpool_guard.sample_interval = 200\n");
$node->safe_psql(
	'postgres', q{
CREATE ROLE auth_role LOGIN;
CREATE ROLE auth_member LOGIN IN ROLE auth_role;
CREATE ROLE intruder LOGIN;
CREATE ROLE role_a LOGIN;
CREATE ROLE role_b LOGIN;
});

# $n logins at once as $user with application_name $app.  Returns
# (admitted, refused with our message, other outcomes, admitted conns).
sub storm_as
{
	my ($user, $app, $n) = @_;
	my $t = DbpgWire::tally(wire_storm($node, $n, user => $user, application_name => $app));
	diag("other outcome: $_") for @{ $t->{other} };
	return (scalar(@{ $t->{ok} }), $t->{refused}, scalar(@{ $t->{other} }), $t->{ok});
}

sub close_all
{
	$_->close for @_;
	wait_released($node) or die "slots not released";
}

sub slots
{
	return scalar_q($node,
		q{SELECT string_agg(service || ':' || connections, ',' ORDER BY service COLLATE "C")
		    FROM dbpool_guard.status});
}

# --- 1. A foreign role claims the bound service: counted in "*" ------------------

my $offset = -s $node->logfile;
my $t0 = time();
my ($adm, $ref, $oth, $h_intr) = storm_as('intruder', 'auth-service', 20);
my $t1 = time();
is($adm, 4, 'spoofing storm: exactly the "*" cap (4) admitted');
is($ref, 16, 'spoofing storm: the other 16 refused with our message');
is($oth, 0, 'spoofing storm: no other outcome');
is( scalar_q(
		$node,
		q{SELECT string_agg(service || ':' || connections || ':' || misattributed_total, ','
		                    ORDER BY service COLLATE "C")
		    FROM dbpool_guard.status}),
	'*:4:0,auth-service:0:20',
	'the claims are counted on the claimed row, the slots in "*"');
is( scalar_q(
		$node,
		q{SELECT string_agg(DISTINCT service || '/' || reason, ',') FROM dbpool_guard.rejections}),
	'*/misattributed_over_cap',
	'refusals of the claims carry reason misattributed_over_cap');

# --- 2. The bound service keeps its whole budget ------------------------------------

my ($adm2, $ref2, $oth2, $h_auth) = storm_as('auth_role', 'auth-service', 3);
is($adm2, 3, 'the bound role is admitted while intruders fill "*"');
my ($adm3, $ref3, $oth3, $h_member) = storm_as('auth_member', 'auth-service', 4);
is($adm3, 2, 'a member of the bound role counts as the service: the remaining 2 slots');
is($ref3, 2, 'beyond the cap of 5 the service refuses its own members');
is($oth2 + $oth3, 0, 'bound logins: no other outcome');
is(status_of($node, 'auth-service', 'connections'),
	'5', 'auth-service holds its whole budget of 5');
is( scalar_q(
		$node,
		q{SELECT count(*) FROM dbpool_guard.rejections
		   WHERE service = 'auth-service' AND reason = 'over_cap'}),
	'2', "the service's own refusals carry reason over_cap");

my $log = slurp_file($node->logfile, $offset);
my $claims = count_lines($log,
	qr/role "intruder" claimed service "auth-service" without being bound to it/);
# at most one line per wall-clock second that the spoofing storm touched
my $spanned = seconds_spanned($t0, $t1);
ok($claims >= 1 && $claims <= $spanned,
	"claims are logged, rate-limited ($claims lines for 20 claims over $spanned distinct seconds)");
like($log, qr/counted in the shared budget "\*"/,
	'the claim log line says where the session is counted');
unlike($log, qr/role "auth_(?:member|role)" claimed/,
	'logins of the bound role and its members are not claims');

close_all(@$h_intr, @$h_auth, @$h_member);

# --- A role that does not exist yet is accepted, and reported -------------------

$offset = -s $node->logfile;
set_conf($node,
	'dbpool_guard.service_roles' => 'auth-service=auth_role|auth_role_next');
is(scalar_q($node, 'SHOW dbpool_guard.service_roles'),
	'auth-service=auth_role|auth_role_next',
	'a binding to a role that does not exist yet is accepted');
ok( log_wait(
		$node,
		qr/roles in "dbpool_guard.service_roles" that do not exist: "auth_role_next" \(service "auth-service"\)$/m,
		$offset),
	'the worker\'s configuration summary reports the missing role');
ok(log_wait($node, qr/Services bound to roles: 1\./, $offset),
	'the configuration summary counts the bound services');

# --- 3. service_key = role: each role is its own service ---------------------------

set_conf($node,
	'dbpool_guard.service_key' => 'role',
	'dbpool_guard.budgets' => 'role_a=3@1, role_b=5@1');
my ($a_adm, $a_ref, $a_oth, $h_a) = storm_as('role_a', 'whatever-a', 15);
my ($b_adm, $b_ref, $b_oth, $h_b) = storm_as('role_b', 'auth-service', 15);
is($a_adm, 3, 'service_key = role: role_a gets exactly its cap of 3');
is($a_ref, 12, 'service_key = role: role_a refused 12 times with our message');
is($b_adm, 5, 'service_key = role: role_b gets exactly its cap of 5');
is($b_ref, 10, 'service_key = role: role_b refused 10 times with our message');
is($a_oth + $b_oth, 0, 'service_key = role: no other outcome');
is(slots(), '*:0,role_a:3,role_b:5',
	'service_key = role: application_name is ignored');

# --- 4. Back to application_name while role_a and role_b hold slots ----------------

set_conf($node,
	'dbpool_guard.service_key' => 'application_name',
	'dbpool_guard.budgets' => 'auth-service=5@1, *=4@1');
is(slots(), '*:0,auth-service:0,role_a:3,role_b:5',
	'after the switch the old buckets keep their rows while they hold slots');
my ($c_adm, $c_ref, $c_oth, $h_c) = storm_as('role_a', 'auth-service', 6);
is($c_adm, 4, 'after the switch role_a claiming auth-service counts in "*" (cap 4)');
is($c_ref, 2, 'after the switch the claims beyond the "*" cap are refused');
close_all(@$h_a, @$h_b, @$h_c);
is(slots(), '*:0,auth-service:0',
	'after everyone left no slot leaked and the old buckets are gone from the view');

$node->stop;
done_testing();
