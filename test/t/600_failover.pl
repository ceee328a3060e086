# Failover: a hot standby that enforces its own budgets is promoted with
# pg_promote().  Without a restart (same postmaster, same shared memory)
# its counters, held slots and sampling worker carry on, it keeps its own
# budgets as the new primary and refuses exactly at its caps, and a reload
# is all it takes to change them.  The old primary, stopped cleanly
# before the promotion, rejoins as a standby of the new one (standby.signal
# and primary_conninfo; no pg_rewind needed) and enforces its own budgets
# there.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

# A refused raw-protocol login returns "FATAL:  53300: ..." with the
# SQLSTATE the client receives.
sub refused_with
{
	my ($node, $app) = @_;
	my ($sock, $err) = raw_login($node,
		user => 'app',
		database => 'postgres',
		application_name => $app);
	if (defined $sock)
	{
		print $sock "X\0\0\0\4";
		close $sock;
		return 'admitted';
	}
	return $err;
}

# Two sessions fill "ro" (cap 2 on both nodes' standby budgets) and the
# next login is refused; returns the two sessions.
sub fill_ro
{
	my ($node, $label) = @_;
	my @held = (hold($node, 'ro'), hold($node, 'ro'));
	is(status_of($node, 'ro', 'connections, cap, state'),
		'2|2|rejecting', "$label: two sessions fill \"ro\" (cap 2)");
	is(refused_with($node, 'ro'),
		'FATAL:  53300: too many connections for service "ro"',
		"$label: the next \"ro\" login is refused with 53300");
	return @held;
}

# The node's budgets as the primary; the standby gets its own (a different
# cap for "rw") so that the test can tell whose budgets are in force.
my $primary_budgets = 'rw=6@1.0, ro=1@1.0, *=2@1.0';
my $standby_budgets = 'rw=5@0.5, ro=2@1.0, *=1@1.0';    # caps: rw 3, ro 2
my $rejoin_budgets = 'ro=2@1.0, *=1@1.0';

my $old = guard_node('old_primary',
	allows_streaming => 1,
	conf => "dbpool_guard.budgets = '$primary_budgets'\n"
	  . "dbpool_guard.sample_interval = 100\n");
# written to after the promotion by a session admitted before it
$old->safe_psql('postgres',
	'CREATE TABLE marker (x int); GRANT SELECT, INSERT ON marker TO app;');
$old->backup('bk');

my $new = PostgreSQL::Test::Cluster->new('new_primary');
$new->init_from_backup($old, 'bk', has_streaming => 1);
# later lines win: the standby's own budgets
$new->append_conf('postgresql.conf',
	"dbpool_guard.budgets = '$standby_budgets'\n");
$new->start;
$old->wait_for_catchup($new);

# --- before: the standby enforces its own budgets ------------------------------

is(scalar_q($new, 'SELECT pg_is_in_recovery()'), 't', 'before: the standby is in recovery');
ok(wait_new_worker($new), 'before: the standby runs the worker');

my @ro = fill_ro($new, 'before');
my $rw1 = hold($new, 'rw');
is(status_of($new, 'rw', 'connections, cap'), '1|3', 'before: "rw" has the standby\'s cap 3');
ok( $new->poll_query_until('postgres',
		"SELECT sum(idle) = 3 FROM dbpool_guard.status WHERE service IN ('ro', 'rw')"),
	'before: the worker has sampled the three sessions');

my $worker_before = worker_pid($new);
like($worker_before, qr/^\d+$/, 'before: the worker pid');
my $started = scalar_q($new, 'SELECT pg_postmaster_start_time()');
my $ro_before = status_of($new, 'ro',
	'connections, admitted_total, rejected_total, peak_connections');
is($ro_before, '2|2|1|2', 'before: "ro" counters');
is(status_of($new, 'rw', 'connections, admitted_total, rejected_total'),
	'1|1|0', 'before: "rw" counters');
my $holders = join(',', sort { $a <=> $b } map { $_->{dbpg_pid} } @ro, $rw1);

# --- the old primary stops cleanly, the standby is promoted --------------------

$old->stop;    # fast shutdown: a shutdown checkpoint, streamed to the standby
my ($ctl) = run_command([ 'pg_controldata', $old->data_dir ]);
my ($ckpt) = $ctl =~ /^Latest checkpoint location:\s+(\S+)$/m;
ok($ckpt, "the old primary's shutdown checkpoint: $ckpt");
# the standby has the whole history of the old primary: it can follow
ok( $new->poll_query_until('postgres',
		"SELECT pg_last_wal_replay_lsn() > '$ckpt'::pg_lsn"),
	'the standby has replayed the shutdown checkpoint');

is(scalar_q($new, "SELECT pg_promote(true, $DbpgTest::TIMEOUT)"),
	't', 'pg_promote() completes');

# --- after: no restart; counters, slots, worker carry on -----------------------

is(scalar_q($new, 'SELECT pg_is_in_recovery()'), 'f', 'after: no longer in recovery');
is(scalar_q($new, 'SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)'),
	'00000002', 'after: it writes WAL on a new timeline, 2');
is(scalar_q($new, 'SELECT pg_postmaster_start_time()'),
	$started, 'after: same postmaster (no restart)');
is(worker_pid($new), $worker_before, 'after: the same worker process runs on');
is( status_of($new, 'ro',
		'connections, admitted_total, rejected_total, peak_connections'),
	$ro_before,
	'after: "ro" counters and held slots are those from before');
is(status_of($new, 'rw', 'connections, admitted_total, rejected_total'),
	'1|1|0', 'after: "rw" counters are those from before');
is(scalar_q($new, 'SELECT string_agg(pid::text, \',\' ORDER BY pid) FROM dbpool_guard.sessions'),
	$holders, 'after: the same backends hold the slots');
is($ro[0]->query_safe('SELECT pg_is_in_recovery()'), 'f',
	'after: a session admitted on the standby is still connected, now on a primary');
$rw1->query_safe('INSERT INTO marker VALUES (1)');
is(scalar_q($new, 'SELECT count(*) FROM marker'), '1',
	'after: and writes (an "rw" session admitted before the promotion)');
ok(wait_samples($new, 2), 'after: the worker goes on sampling (sampled_at moves)');
ok( $new->poll_query_until('postgres',
		"SELECT sum(idle) = 3 FROM dbpool_guard.status WHERE service IN ('ro', 'rw')"),
	'after: its samples still see the three sessions');

# --- the new primary refuses exactly at its own caps ---------------------------

my @rw = ($rw1, hold($new, 'rw'), hold($new, 'rw'));
is(status_of($new, 'rw', 'connections, cap, state, admitted_total'),
	'3|3|rejecting|3',
	'new primary: "rw" fills to the standby\'s cap 3 (not the old primary\'s 6), new logins on top');
my $off = -s $new->logfile;
is(refused_with($new, 'rw'),
	'FATAL:  53300: too many connections for service "rw"',
	'new primary: the next "rw" login is refused with 53300');
ok(log_wait($new, qr/ 53300 FATAL:  too many connections for service "rw"/, $off),
	'new primary: the refusal is logged with 53300');
is(status_of($new, 'rw', 'connections, rejected_total'), '3|1',
	'new primary: "rw" still 3 held, one refusal');
is(refused_with($new, 'ro'),
	'FATAL:  53300: too many connections for service "ro"',
	'new primary: "ro" is still at its cap');
is(status_of($new, 'ro', 'connections, admitted_total, rejected_total'),
	'2|2|2', 'new primary: that refusal counted on top of the standby\'s');
is( scalar_q($new,
		"SELECT count(*) FROM dbpool_guard.rejections WHERE enforced AND service IN ('ro', 'rw')"),
	'3', 'new primary: its rejections view has the refusals from before and after');

# --- a reload, no restart, sets budgets fit for a primary ----------------------

$off = -s $new->logfile;
set_conf($new, 'dbpool_guard.budgets' => $primary_budgets);
ok( log_wait($new,
		qr/LOG:  dbpool_guard: mode "enforce", 3 budgets in force\n.*DETAIL:  .*The budgets total 9 of 37 available connections\./,
		$off),
	'reload: the worker reports the new budgets');
is(status_of($new, 'rw', 'cap, state'), '6|ok', 'reload: "rw" cap is now 6');
push @rw, hold($new, 'rw');
is(status_of($new, 'rw', 'connections, admitted_total'), '4|4', 'reload: a fourth "rw" login is admitted');
is(status_of($new, 'ro', 'connections, cap, state'), '2|1|rejecting',
	'reload: "ro" lowered below its sessions: nobody is disconnected');
is(refused_with($new, 'ro'),
	'FATAL:  53300: too many connections for service "ro"',
	'reload: and "ro" is refused');
is(worker_pid($new), $worker_before, 'reload: still the same worker');
is(scalar_q($new, 'SELECT pg_postmaster_start_time()'), $started,
	'reload: still the same postmaster');

# --- the old primary rejoins as a standby of the new one -----------------------

$old->append_conf('postgresql.conf',
	"dbpool_guard.budgets = '$rejoin_budgets'\n");
$old->enable_streaming($new);    # primary_conninfo and standby.signal
$old->start;
$new->wait_for_catchup($old);

is(scalar_q($old, 'SELECT pg_is_in_recovery()'), 't', 'rejoin: the old primary is a standby');
is(scalar_q($old, 'SELECT received_tli FROM pg_stat_wal_receiver'),
	'2', 'rejoin: it streams the new primary\'s timeline 2');
is(scalar_q($old, 'SELECT count(*) FROM marker'), '1',
	'rejoin: it has the row written after the promotion');
ok(wait_new_worker($old), 'rejoin: it runs the worker');
is(status_of($old, 'ro', 'connections, cap, admitted_total, rejected_total'),
	'0|2|0|0',
	'rejoin: its own budgets ("ro" cap 2, was 1), counters from zero (it was restarted)');

my @old_ro = fill_ro($old, 'rejoin');
is($old_ro[0]->query_safe('SELECT pg_is_in_recovery()'), 't',
	'rejoin: the admitted sessions are read-only');
is(status_of($old, 'ro', 'rejected_total'), '1', 'rejoin: counted');
ok( $old->poll_query_until('postgres',
		"SELECT idle = 2 FROM dbpool_guard.status WHERE service = 'ro'"),
	'rejoin: its worker samples the sessions');
is( status_of($new, 'ro', 'connections') . ' '
	  . status_of($new, 'rw', 'connections') . ' '
	  . status_of($new, '*', 'connections'),
	'2 4 0',
	'new primary: the walsender serving the old primary is not counted');

# --- cleanup -----------------------------------------------------------------

quit_all(@old_ro);
ok(wait_count($old, 'ro', 0), 'rejoin: slots released');
quit_all(@ro, @rw);
ok(wait_count($new, 'rw', 0) && wait_count($new, 'ro', 0), 'new primary: slots released');
is(scalar_q($new, 'SELECT count(*) FROM dbpool_guard.sessions'), '0',
	'new primary: no holders left');

$old->stop;
$new->stop;
done_testing();
