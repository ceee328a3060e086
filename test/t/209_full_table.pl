# A full service table never admits a listed service uncounted (issue 13,
# point 2).  When inserting a service's bucket makes the table exactly
# full, concurrent first logins of that service all miss under the shared
# lock; every one but the first must find the bucket the first inserted,
# not take the table for full and admit itself without a slot.
#
# max_services = 4, four listed services, three of them with buckets; then
# a storm of first logins of the fourth.  Each round starts from fresh
# shared memory (a restart), so every round races on the first insert.
# Every round must admit exactly the cap, and nothing may be admitted
# without a budget (enforcement().unguarded_total, and no "service table
# is full" line).

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $rounds = 3;
my $clients = 40;
my $cap = 5;

my $node = guard_node('full_table',
	max_connections => $clients + 10,
	conf => "dbpool_guard.max_services = 4\n"
	  . "dbpool_guard.budgets = 'a=2\@1, b=2\@1, c=2\@1, d=$cap\@1'\n");

for my $round (1 .. $rounds)
{
	if ($round > 1)
	{
		$node->restart;
	}
	my $offset = -s $node->logfile;

	# three buckets exist; the fourth insert makes the table exactly full
	quit_all(hold($node, $_)) for qw(a b c);
	ok(wait_count($node, $_, 0), "round $round: $_ has a bucket and no session")
	  for qw(a b c);
	is(status_of($node, 'd', 'admitted_total'), '0',
		"round $round: d has not logged in yet");

	# admitted clients wait on this lock, so that they keep their slots
	my $gate = $node->background_psql('postgres');
	$gate->query_safe('SELECT pg_advisory_lock(4242)');
	my $storm = storm(
		$node,
		clients => $clients,
		app => 'd',
		sql => 'SELECT pg_advisory_lock_shared(4242)',
		held_sql => "SELECT count(*) FROM pg_stat_activity
		             WHERE application_name = 'd' AND wait_event_type = 'Lock'");
	is($storm->{holding}, $cap, "round $round: exactly the cap ($cap) of $clients first logins admitted");
	is($storm->{exited_early}, $clients - $cap, "round $round: the others were refused");
	is( scalar(grep { $_ =~ refusal_re('d') } @{ $storm->{refused} }),
		$clients - $cap, "round $round: every refusal is ours");
	is(status_of($node, 'd', 'connections, admitted_total, rejected_total'),
		"$cap|$cap|" . ($clients - $cap),
		"round $round: status counts every login of d in its own bucket");
	is(scalar_q($node, 'SELECT unguarded_total FROM dbpool_guard.enforcement()'),
		'0', "round $round: no login was admitted without a budget");
	unlike(slurp_file($node->logfile, $offset), qr/service table is full/,
		"round $round: no \"service table is full\" line");

	$gate->query_safe('SELECT pg_advisory_unlock(4242)');
	$gate->quit;
	is($storm->{finish}->(), $cap, "round $round: the admitted clients finish normally");
	ok(wait_count($node, 'd', 0), "round $round: d's slots come back");
}

$node->stop;
done_testing();
