# Every release path, all at once, under a background load: normal
# disconnect, pg_terminate_backend, idle_session_timeout,
# idle_in_transaction_session_timeout, and the FATALs PostgreSQL raises
# after the guard admitted a login (the database does not exist, the
# role's CONNECTION LIMIT).  Three rounds; after each, the bucket is back
# to exactly the sessions still open, the guard's admitted_total grew by
# every login that passed it, and nothing leaks.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use DbpgWire;

my $node = guard_node('release_load',
	max_connections => 120,
	conf => "dbpool_guard.budgets = 'rel=80\@1.0, load=6\@1.0, *=4\@1.0'\n");
$node->safe_psql('postgres', 'CREATE ROLE lim LOGIN CONNECTION LIMIT 2;');

my $loader = DbpgWire::loader(
	login => { wire_params($node) },
	apps => [ 'load', 'inv-a', 'inv-b' ],
	batch => 8,
	hold_ms => 20);

# One round: all the logins in one storm, then every path at once.  (A
# session of idle_session_timeout may be ended before the storm reads its
# answer, on a busy machine: DbpgWire counts a login admitted once its
# ReadyForQuery arrived, whatever followed.)
my @paths = (
	[ disconnect => 8, {} ],
	[ terminate => 8, {} ],
	[ idle_session_timeout => 5, { options => '-c idle_session_timeout=300' } ],
	[ idle_in_transaction => 5, { options => '-c idle_in_transaction_session_timeout=300' } ],
	[ no_database => 5, { dbname => 'no_such_db' } ],
	[ role_limit => 6, { user => 'lim' } ],);
my $per_round = 0;
$per_round += $_->[1] for @paths;

for my $round (1 .. 3)
{
	my $before = status_of($node, 'rel', 'admitted_total');
	my (@list, @kind);
	for my $p (@paths)
	{
		my ($kind, $n, $params) = @$p;
		for (1 .. $n)
		{
			push @list, { wire_params($node, application_name => 'rel', %$params) };
			push @kind, $kind;
		}
	}
	my @c = DbpgWire::storm(\@list);
	my (%got, %ok);
	for my $i (0 .. $#c)
	{
		my $c = $c[$i];
		my $o = $c->{ok} ? 'ok' : "$c->{error}{C}";
		$got{ $kind[$i] }{$o}++;
		push @{ $ok{ $kind[$i] } }, $c if $c->{ok};
	}
	my $summary = join('; ',
		map { my $k = $_; "$k: " . join(' ', map { "$_=$got{$k}{$_}" } sort keys %{ $got{$k} }) }
		map { $_->[0] } @paths);
	note("round $round: $summary");
	is( $summary,
		'disconnect: ok=8; terminate: ok=8; idle_session_timeout: ok=5; idle_in_transaction: ok=5; '
		  . 'no_database: 3D000=5; role_limit: 53300=4 ok=2',
		"round $round: the guard admitted all $per_round; PostgreSQL refused the unknown database and the role limit"
	);
	ok(!grep({ $_->is_refusal } @c), "round $round: the guard refused none of them");
	is(status_of($node, 'rel', 'admitted_total'), $before + $per_round,
		"round $round: admitted_total grew by all $per_round, the later FATALs included");

	# every path at once
	$_->send_query('BEGIN') for @{ $ok{idle_in_transaction} };
	$_->close for @{ $ok{disconnect} };
	$node->safe_psql('postgres',
		'SELECT pg_terminate_backend(pid) FROM (VALUES '
		  . join(', ', map { "($_->{pid})" } @{ $ok{terminate} })
		  . ') v(pid)');

	# left: the two "lim" sessions
	ok(wait_count($node, 'rel', 2), "round $round: the bucket is back to the 2 open sessions");
	my @gone = grep { $_->closed_by_server }
	  map { @{ $ok{$_} } } qw(terminate idle_session_timeout idle_in_transaction);
	is(scalar(@gone), 18, "round $round: the server ended the terminated and timed-out sessions");
	is( scalar_q(
			$node, "SELECT count(*) FROM dbpool_guard.sessions WHERE service = 'rel'"),
		'2', "round $round: the sessions view lists only those 2");
	$_->close for @{ $ok{role_limit} };
	ok(wait_count($node, 'rel', 0), "round $round: and 0 once they leave");
}

my $tally = $loader->stop;
note('background load: ' . join(' ', map { "$_=$tally->{$_}" } sort keys %$tally));
is(join(' ', grep { /^other/ } sort keys %$tally), '',
	'the background load saw only admissions and our refusals');
is( scalar_q(
		$node, "SELECT sum(admitted_total) || ' ' || sum(rejected_total) FROM dbpool_guard.status WHERE service <> 'rel'"
	),
	"$tally->{ok} $tally->{refused}",
	'the counters of the loaded buckets equal what the load saw');
ok(wait_released($node), 'every bucket is back to 0: no slot leaked');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'), '0', 'no holder remains');

$node->stop;
done_testing();
