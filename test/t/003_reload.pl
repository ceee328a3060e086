# Reloads: a new budget applies to the next login without a restart,
# lowering one kills nobody, a bad value keeps the old one and the log
# says why, removed services keep their slots, added ones are enforced
# at once (also while the worker is stopped).  A full service table:
# 209_full_table.pl and 210_bucket_lifetime.pl.

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $node = guard_node('reload',
	conf => "dbpool_guard.max_services = 4\n"
	  . "dbpool_guard.budgets = 'r1=2\@1.0, r2=10, gone=2\@1.0'\n");

my $stopped_worker;
END { kill 'CONT', $stopped_worker if $stopped_worker; }

my $started = scalar_q($node, 'SELECT pg_postmaster_start_time()');

# --- raising a budget: the next login sees it ---------------------------------

my @r1 = (hold($node, 'r1'), hold($node, 'r1'));
like(hold_fails($node, app => 'r1'), refusal_re('r1'),
	'budget 2: the third login is refused');
set_conf($node, 'dbpool_guard.budgets' => 'r1=3@1.0, r2=10, gone=2@1.0');
is(status_of($node, 'r1', 'budget, cap'), '3|3', 'after reload: budget 3, cap 3');
push @r1, eval { hold($node, 'r1') };
ok(defined $r1[2], 'after reload: the third login is admitted');
like(hold_fails($node, app => 'r1'), refusal_re('r1'),
	'after reload: the fourth is refused');
is(scalar_q($node, 'SELECT pg_postmaster_start_time()'), $started, 'no restart happened');

# --- lowering a budget kills nobody, it only refuses --------------------------------

set_conf($node, 'dbpool_guard.budgets' => 'r1=1@1.0, r2=10, gone=2@1.0');
is(status_of($node, 'r1', 'connections, cap, state'),
	'3|1|rejecting', 'lowered to 1: the 3 sessions still count, state rejecting');
is(scalar(grep { defined $_ && eval { $_->query_safe('SELECT 1') } eq '1' } @r1),
	3, 'lowered to 1: all 3 sessions still work');
my $err = hold_fails($node, app => 'r1');
like($err, refusal_re('r1'), 'lowered to 1: new logins refused');
like($err, qr/holds 3 of its budget of 1 connections \(300%\)/,
	'lowered to 1: the detail shows 3 held of 1');
quit_all(splice(@r1, 0, 2));
ok(wait_count($node, 'r1', 1), 'two leave');
like(hold_fails($node, app => 'r1'), refusal_re('r1'),
	'still refused at the cap');
quit_all(@r1);
ok(wait_count($node, 'r1', 0), 'the last one leaves');
@r1 = (eval { hold($node, 'r1') });
ok(defined $r1[0], 'admitted again once under the cap');
quit_all(@r1);
ok(wait_count($node, 'r1', 0), 'released');

# --- dbpool_guard.threshold applies to entries without @threshold --------------

is(status_of($node, 'r2', 'cap'), '9', 'r2=10 at 0.85: cap 9');
set_conf($node, 'dbpool_guard.threshold' => '0.5');
is(status_of($node, 'r2', 'threshold, cap'), '0.5|5', 'threshold reloaded to 0.5: cap 5');
is(status_of($node, 'r1', 'cap'), '1', 'an explicit @threshold is not affected');

# --- bad values: the old one stays, the log says why ---------------------------------

my $good = $node->safe_psql('postgres', 'SHOW dbpool_guard.budgets');
my @bad = (
	[ 'r1=2, r2=10, r1=3', qr/Service "r1" is listed more than once\./ ],
	[ 'r1=abc', qr/Entry 1 \("r1=abc"\) has no budget/ ],
	[ 'r1=-1', qr/Entry 1 \("r1=-1"\) has no budget/ ],
	[ 'r1=2@1.5', qr/Entry 1 \("r1=2\@1\.5"\) has a threshold greater than 1/ ],
	[ 'r1=2@0', qr/Entry 1 \("r1=2\@0"\) has a threshold of 0/ ],
	[ 'r1=2, =3', qr/Entry 2 \("=3"\) has an empty name/ ],
	[ 'r1=1000', qr/Entry 1 \("r1=1000"\) has a budget larger than max_connections/ ],
	[ '"*"=3', qr/Entry 1 \(""\*"=3"\) has the quoted name "\*"/ ],
	[ "a=1, b=1, c=1, d=1, e=1, *=2",
		qr/Entry 5 \("e=1"\) is one more than the 4 services that dbpool_guard\.max_services allows/ ],
	[ 'r1=3 r2=4', qr/Entry 1 \("r1=3 r2=4"\) has unexpected text after the budget/ ],);

for my $b (@bad)
{
	my ($value, $why) = @$b;
	my $offset = -s $node->logfile;
	set_conf($node, 'dbpool_guard.budgets' => $value);
	my $log = slurp_file($node->logfile, $offset);
	like(
		$log,
		qr/LOG:  invalid value for parameter "dbpool_guard\.budgets": "\Q$value\E"/,
		"bad reload '$value': logged as invalid");
	like($log, qr/DETAIL:  .*$why/, "bad reload '$value': the detail quotes the entry");
	like($log, qr/contains errors; unaffected changes were applied/,
		"bad reload '$value': the rest of the file applied");
	is($node->safe_psql('postgres', 'SHOW dbpool_guard.budgets'),
		$good, "bad reload '$value': the old value stays");
}
is(status_of($node, 'r1', 'budget, cap'), '1|1', 'after the bad reloads r1 is still 1');
@r1 = (hold($node, 'r1'));
like(hold_fails($node, app => 'r1'), refusal_re('r1'),
	'and is still enforced at 1');
quit_all(@r1);

my $offset = -s $node->logfile;
set_conf($node, 'dbpool_guard.threshold' => '0');
like(
	slurp_file($node->logfile, $offset),
	qr/invalid value for parameter "dbpool_guard\.threshold": "?0"?\n.*DETAIL:  The threshold must be greater than 0/,
	'a threshold of 0 is rejected on reload');
is($node->safe_psql('postgres', 'SHOW dbpool_guard.threshold'),
	'0.5', 'the old threshold stays');
set_conf($node, 'dbpool_guard.budgets' => $good, 'dbpool_guard.threshold' => '0.5');

# --- a removed service keeps its row while it holds slots ---------------------------

my $g = hold($node, 'gone');
set_conf($node, 'dbpool_guard.budgets' => 'r1=1@1.0, r2=10');
is( status_of(
		$node, 'gone',
		"connections, coalesce(budget::text, 'NULL'), coalesce(threshold::text, 'NULL'), coalesce(cap::text, 'NULL')"
	),
	'1|NULL|NULL|NULL',
	'removed service: still has its row with its slot, no budget any more');
my $g2 = hold($node, 'gone');
is(status_of($node, '*', 'connections'), '1',
	'removed service: a new login of that name counts in "*"');
is(status_of($node, 'gone', 'connections'), '1', 'removed service: its old row unchanged');
quit_all($g);
ok(wait_count($node, 'gone', 0), 'removed service: the old slot is released in its row');
is(status_of($node, '*', 'connections'), '1', 'removed service: "*" not touched by that release');
quit_all($g2);
ok(wait_count($node, '*', 0), 'the new one is released from "*"');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0'),
	'0', 'all buckets at 0');

# --- a service added by a reload is enforced at once, worker stopped ----------------

my $wpid = worker_pid($node);
ok($wpid =~ /^\d+$/, 'the worker runs');
# stopped between two samples (DbpgTest::stop_worker), state T or t
is(stop_worker($node), $wpid, 'the worker is stopped (SIGSTOP)');
$stopped_worker = $wpid;
ok(process_stopped($wpid), 'and /proc shows it stopped');
set_conf($node, 'dbpool_guard.budgets' => 'r1=1@1.0, r2=10, added=1@1.0');
my $added = eval { hold($node, 'added') };
ok(defined $added, 'added service: the first login gets in while the worker is stopped');
is(status_of($node, 'added', 'connections, cap'), '1|1', 'added service: counted in its own row');
like(hold_fails($node, app => 'added'),
	refusal_re('added'),
	'added service: the second login is refused while the worker is stopped');
kill 'CONT', $wpid;
$stopped_worker = undef;
quit_all($added);
ok(wait_count($node, 'added', 0), 'added service: released');
is(worker_pid($node), $wpid, 'the worker carries on after SIGCONT');

is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0'),
	'0', 'all buckets at 0 at the end');

$node->stop;
done_testing();
