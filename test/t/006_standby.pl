# A physical standby runs the worker and enforces budgets on its own
# sessions; the primary does not count the standby's walreceiver.

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $primary = guard_node('primary',
	allows_streaming => 1,
	conf => "dbpool_guard.budgets = 'sb=2\@1.0, *=2\@1.0'\n"
	  . "dbpool_guard.sample_interval = 100\n");
$primary->backup('bk');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
ok(wait_new_worker($standby), 'the standby runs the worker');

my @sb = (hold($standby, 'sb'), hold($standby, 'sb'));
is(status_of($standby, 'sb', 'connections, cap, state'),
	'2|2|rejecting', 'standby: two sessions fill "sb"');
my $err = hold_fails($standby, app => 'sb');
like($err, refusal_re('sb'),
	'standby: the third login is refused with our message');
like($err, qr/DETAIL:  Service "sb" holds 2 of its budget of 2 connections/,
	'standby: with the detail');
is( scalar_q(
		$standby, "SELECT count(*), bool_and(enforced) FROM dbpool_guard.rejections WHERE service = 'sb'"),
	'1|t',
	'standby: the refusal is in its rejections view');
ok( $standby->poll_query_until(
		'postgres', "SELECT idle = 2 FROM dbpool_guard.status WHERE service = 'sb'"),
	'standby: the worker samples the sessions');

is(status_of($primary, 'sb', 'connections, rejected_total'),
	'0|0', 'primary: its own counters are untouched');
is(scalar_q($primary, 'SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0'),
	'0', 'primary: the walsender serving the standby is not counted');
my @p = eval { (hold($primary, 'sb'), hold($primary, 'sb')) };
is(scalar(@p), 2, 'primary: its own budget is separate from the standby\'s');
quit_all(@p);

quit_all(@sb);
ok(wait_count($standby, 'sb', 0), 'standby: released');
is(scalar_q($standby, 'SELECT count(*) FROM dbpool_guard.sessions'), '0',
	'standby: no holders left');

$standby->stop;
$primary->stop;
done_testing();
