# The sampling worker: per-state counts, leak signal, peak, warnings with
# hysteresis, configuration lines; and admission without it (terminated,
# SIGKILLed with the crash restart that follows, SIGSTOPped).

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $budgets = 'w=10@1.0, warn=4@1.0, e=1@1.0';
my $node = guard_node('worker',
	start => 0,
	conf => "dbpool_guard.budgets = '$budgets'\n"
	  . "dbpool_guard.sample_interval = 100\n"
	  . "restart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION dbpool_guard; CREATE ROLE app LOGIN;');

my $stopped_worker;
END { kill 'CONT', $stopped_worker if $stopped_worker; }

# max_connections 40 - superuser_reserved_connections 3 (reserved_connections 0)
my $available = 37;

# --- the configuration line at start ---------------------------------------------

ok(wait_new_worker($node), 'the worker runs');
# (it shows in pg_stat_activity before it writes that line)
ok( log_wait($node,
		qr/LOG:  dbpool_guard: mode "enforce", 3 budgets in force\n.*DETAIL:  The service key is "application_name"\. The budgets total 15 of $available available connections\. The default threshold is 0\.85, the warning threshold 0\.75\. Services bound to roles: \d+\. Exempt roles: none\./,
		0),
	'start: one line sums up the configuration');

# --- per-state counts ------------------------------------------------------------------

$node->safe_psql('postgres',
	'CREATE TABLE t (x int); CREATE TABLE stop_flag (x int); GRANT ALL ON t, stop_flag TO app;'
);

my $idle = hold($node, 'w');
my $iit = hold($node, 'w');
$iit->query_safe('BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;');
my $waiter = hold($node, 'w');
$waiter->query_until(qr/start/, "\\echo start\nSELECT count(*) FROM t;\n");
my $active = hold($node, 'w');
$active->query_until(qr/start/,
	"\\echo start\nDO \$\$ BEGIN WHILE NOT EXISTS (SELECT FROM stop_flag) LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$;\n"
);

ok( $node->poll_query_until(
		'postgres',
		"SELECT connections = 4 AND active = 1 AND idle = 1 AND idle_in_transaction = 1 AND waiting = 1
		   FROM dbpool_guard.status WHERE service = 'w'"),
	'states: one active, one idle, one idle in transaction, one waiting on a lock');
is(status_of($node, 'w', 'connections, active, idle, idle_in_transaction, waiting'),
	'4|1|1|1|1', 'states: the columns');
is( scalar_q(
		$node, "SELECT string_agg(state, ',' ORDER BY pid) FROM dbpool_guard.sessions
		          WHERE pid IN ($idle->{dbpg_pid}, $iit->{dbpg_pid}, $waiter->{dbpg_pid}, $active->{dbpg_pid})"
	),
	join(',',
		map { $_->[1] }
		sort { $a->[0] <=> $b->[0] } (
			[ $idle->{dbpg_pid}, 'idle' ],
			[ $iit->{dbpg_pid}, 'idle in transaction' ],
			[ $waiter->{dbpg_pid}, 'waiting' ],
			[ $active->{dbpg_pid}, 'active' ])),
	'states: the sessions view shows each session\'s sampled state');
ok( $node->poll_query_until(
		'postgres',
		"SELECT longest_idle_in_transaction >= interval '300 ms'
		    AND longest_idle_in_transaction < interval '5 min'
		   FROM dbpool_guard.status WHERE service = 'w'"),
	'longest_idle_in_transaction grows with the open transaction');
ok( $node->poll_query_until(
		'postgres',
		"SELECT sampled_at > now() - interval '10 s' FROM dbpool_guard.status WHERE service = 'w'"
	),
	'sampled_at is recent');

$iit->query_safe('COMMIT');
$node->safe_psql('postgres', 'INSERT INTO stop_flag VALUES (1)');
ok( $node->poll_query_until(
		'postgres',
		"SELECT active = 0 AND idle = 4 AND idle_in_transaction = 0 AND waiting = 0
		    AND coalesce(longest_idle_in_transaction, interval '0') = interval '0'
		   FROM dbpool_guard.status WHERE service = 'w'"),
	'states: all four idle once the transaction ends');
quit_all($idle, $iit, $waiter, $active);
ok(wait_count($node, 'w', 0), 'states: released');
is(status_of($node, 'w', 'peak_connections'), '4', 'peak_connections keeps the peak of 4');

my @two = (hold($node, 'w'), hold($node, 'w'));
my $e1 = hold($node, 'e');
like(hold_fails($node, app => 'e'), refusal_re('e'),
	'a refusal to reset');
quit_all($e1);
$node->safe_psql('postgres', 'SELECT dbpool_guard.reset_counters()');
is( status_of(
		$node, 'w',
		'connections, peak_connections, admitted_total, rejected_total, would_reject_total'),
	'2|2|0|0|0',
	'reset_counters(): totals to 0, the peak restarts from the 2 current connections');
is( scalar_q(
		$node, "SELECT count(*) FROM dbpool_guard.rejections"),
	'0',
	'reset_counters(): the rejection log is empty');
is(status_of($node, 'e', "rejected_total, coalesce(last_rejected_at::text, 'NULL')"),
	'0|NULL', 'reset_counters(): last_rejected_at cleared');
quit_all(@two);
ok(wait_count($node, 'w', 0), 'released');
is(status_of($node, 'w', 'peak_connections'), '2', 'the peak stays after they leave');

# --- the warning level, with hysteresis -----------------------------------------------

my $offset = -s $node->logfile;
my @warn = (hold($node, 'warn'), hold($node, 'warn'));
ok(wait_samples($node, 3), 'samples go on');
ok(!$node->log_contains(qr/service "warn" is at \d+% of its budget/, $offset),
	'warning: nothing at 50% of the budget');
is(status_of($node, 'warn', 'state'), 'ok', 'warning: state ok at 50%');
push @warn, hold($node, 'warn');
my $warn_line =
  qr/WARNING:  dbpool_guard: service "warn" is at 75% of its budget \(3 of 4 connections\), at or above the warning level of 75%/;
ok(log_wait($node, $warn_line, $offset), 'warning: WARNING when crossing 75% (3 of 4)');
is(status_of($node, 'warn', 'state'), 'warning', 'warning: state warning at 75%');
push @warn, hold($node, 'warn');
is(status_of($node, 'warn', 'state'), 'rejecting', 'warning: state rejecting at the cap');
ok(wait_samples($node, 3), 'samples go on');
quit_all(pop @warn);
ok(wait_count($node, 'warn', 3), 'back to 3 of 4: still at the warning level');
ok(wait_samples($node, 3), 'samples go on');
my $log = slurp_file($node->logfile, $offset);
is(count_lines($log, qr/service "warn" is at \d+% of its budget/), 1,
	'warning: logged once while the service stays at or above the level');
ok($log !~ /service "warn" is back below/, 'warning: no "back below" at 3 of 4');
quit_all(pop @warn);
ok(wait_count($node, 'warn', 2), 'down to 2 of 4');
ok( log_wait($node,
		qr/LOG:  dbpool_guard: service "warn" is back below its warning level \(2 of 4 connections\)/,
		$offset),
	'warning: LOG when back below the level');
ok(wait_samples($node, 3), 'samples go on');
$log = slurp_file($node->logfile, $offset);
is(count_lines($log, qr/service "warn" is back below/), 1, 'warning: "back below" logged once');
is(count_lines($log, qr/service "warn" is at \d+% of its budget/), 1, 'warning: still one WARNING in all');
quit_all(@warn);
ok(wait_count($node, 'warn', 0), 'released');

# --- configuration lines after reloads ------------------------------------------------

$node->safe_psql('postgres', 'CREATE ROLE monitoring');
$offset = -s $node->logfile;
set_conf($node, 'dbpool_guard.exempt_roles' => 'monitoring');
ok( log_wait($node,
		qr/LOG:  dbpool_guard: mode "enforce", 3 budgets in force\n.*DETAIL:  The service key is "application_name"\. The budgets total 15 of $available available connections\. The default threshold is 0\.85, the warning threshold 0\.75\. Services bound to roles: \d+\. Exempt roles: "monitoring"\./,
		$offset),
	'reload: the configuration line again, with the new value');

$offset = -s $node->logfile;
set_conf($node, 'dbpool_guard.budgets' => "$budgets, big=30");
ok( log_wait($node,
		qr/WARNING:  dbpool_guard: budgets are oversubscribed: total 45 exceeds the $available available connections/,
		$offset),
	'oversubscribed: WARNING after the reload');
is( scalar_q(
		$node, 'SELECT total_budget, max_connections, reserved, available, oversubscribed
		          FROM dbpool_guard.budget_check()'),
	"45|40|3|$available|t",
	'oversubscribed: budget_check() agrees');

$offset = -s $node->logfile;
set_conf($node, 'dbpool_guard.budgets' => '');
ok( log_wait($node, qr/WARNING:  dbpool_guard: no budgets are in force/, $offset),
	'empty budgets: WARNING that no budgets are in force');
set_conf($node, 'dbpool_guard.budgets' => $budgets, 'dbpool_guard.exempt_roles' => '');

# --- pg_terminate_backend on the worker ------------------------------------------------

my $e = hold($node, 'e');
my $wpid = worker_pid($node);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($wpid)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'dbpool_guard worker'"),
	'terminate: the worker is gone');
like(hold_fails($node, app => 'e'), refusal_re('e'),
	'terminate: enforcement goes on without the worker');
quit_all($e);
ok(wait_count($node, 'e', 0), 'terminate: slots are released without the worker');
$e = eval { hold($node, 'e') };
ok(defined $e, 'terminate: the freed slot can be taken');
ok(wait_new_worker($node, $wpid), 'terminate: the worker comes back with a new pid');
like(hold_fails($node, app => 'e'), refusal_re('e'),
	'terminate: still enforced with the new worker');
quit_all($e);
ok(wait_count($node, 'e', 0), 'released');

# --- SIGSTOP: a stopped worker blocks no login -----------------------------------------

# stopped between two samples (DbpgTest::stop_worker)
$wpid = stop_worker($node);
$stopped_worker = $wpid;
set_conf($node, 'dbpool_guard.budgets' => "$budgets, late=1\@1.0");
$e = eval { hold($node, 'e') };
ok(defined $e, 'SIGSTOP: a login of a known service gets in');
my $late = eval { hold($node, 'late') };
ok(defined $late, 'SIGSTOP: a login of a service added meanwhile gets in');
like(hold_fails($node, app => 'late'), refusal_re('late'),
	'SIGSTOP: and that service is enforced');
kill 'CONT', $wpid;
$stopped_worker = undef;
quit_all($e, $late);
ok(wait_count($node, 'late', 0) && wait_count($node, 'e', 0), 'SIGSTOP: released');

# --- SIGKILL: crash restart, then counts match the real sessions ------------------------

my @w = map { hold($node, 'w') } 1 .. 3;
$e = hold($node, 'e');
$wpid = worker_pid($node);
$offset = -s $node->logfile;
kill 'KILL', $wpid;
ok( log_wait($node, qr/all server processes terminated; reinitializing/, $offset),
	'SIGKILL: PostgreSQL does a crash restart');
ok($node->poll_query_until('postgres', 'SELECT 1', '1'), 'SIGKILL: the server is back');
quit_all(@w, $e);
ok(wait_new_worker($node, $wpid), 'SIGKILL: the worker runs again');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0'),
	'0', 'SIGKILL: no bucket counts the sessions that the restart ended');

@w = map { hold($node, 'w') } 1 .. 2;
$e = hold($node, 'e');
is( scalar_q(
		$node, "SELECT string_agg(s.service || ':' || s.connections || ':' ||
		          (SELECT count(*) FROM pg_stat_activity a
		            WHERE a.application_name = s.service AND a.usename = 'app'), ' ' ORDER BY s.service)
		          FROM dbpool_guard.status s WHERE s.service IN ('w', 'e')"),
	'e:1:1 w:2:2',
	'SIGKILL: counts match the live sessions');
like(hold_fails($node, app => 'e'), refusal_re('e'),
	'SIGKILL: enforcement works after the crash restart');
ok( $node->poll_query_until(
		'postgres', "SELECT idle = 2 FROM dbpool_guard.status WHERE service = 'w'"),
	'SIGKILL: the new worker samples');
quit_all(@w, $e);
ok(wait_released($node), 'everything released');

$node->stop;
done_testing();
