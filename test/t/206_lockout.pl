# No lockout: while every service (and "*", and a service with budget 0)
# is at its cap and the server has free slots, superusers, members of an
# exempt role (directly or through another role) and replication
# connections always log in, in the middle of a storm of ordinary logins
# that are all refused; they use no budget.  A role with the REPLICATION
# attribute is not exempt on an ordinary connection.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use DbpgWire;

my $node = guard_node('lockout',
	max_connections => 100,
	allows_streaming => 'logical',
	conf => "dbpool_guard.budgets = 'a=2\@1.0, b=2\@1.0, zero=0, *=2\@1.0'\n"
	  . "dbpool_guard.exempt_roles = 'monitoring'\n"
	  . "max_wal_senders = 20\n");
$node->safe_psql(
	'postgres', q{
	CREATE ROLE admin SUPERUSER LOGIN;
	CREATE ROLE monitoring NOLOGIN;
	CREATE ROLE mon LOGIN IN ROLE monitoring;
	CREATE ROLE mongroup NOLOGIN IN ROLE monitoring;
	CREATE ROLE mon2 LOGIN IN ROLE mongroup;
	CREATE ROLE repl LOGIN REPLICATION;
});
my $bootstrap = scalar_q($node, 'SELECT current_user');

my $counts_sql = q{SELECT string_agg(service || ':' || connections || ':' || admitted_total, ' '
                    ORDER BY service COLLATE "C") FROM dbpool_guard.status};

# every bucket at its cap
my @held = map {
	my $app = $_;
	map { wire_login($node, application_name => $app) } 1 .. 2
} qw(a b inv);
is(scalar(grep { $_->{ok} } @held), 6, 'a, b and "*" are full (2 of 2 each)');
my $counts = scalar_q($node, $counts_sql);
is($counts, '*:2:2 a:2:2 b:2:2 zero:0:0', 'status: every bucket at its cap');
is( scalar_q(
		$node, "SELECT string_agg(state, ' ' ORDER BY service COLLATE \"C\") FROM dbpool_guard.status"
	),
	'rejecting rejecting rejecting rejecting',
	'status: every service is rejecting');
is( scalar_q(
		$node, "SELECT setting::int - (SELECT count(*) FROM pg_stat_activity) > 50
		          FROM pg_settings WHERE name = 'max_connections'"),
	't', 'the server has plenty of free slots');

# A storm: each application_name, each kind of role, all at once.
my @apps = ('a', 'b', 'zero', 'invented', '');
my @kinds = (
	[ 'ordinary role' => { user => 'app' }, 'refused' ],
	[ 'role with REPLICATION, ordinary connection' => { user => 'repl' }, 'refused' ],
	[ 'bootstrap superuser' => { user => $bootstrap }, 'ok' ],
	[ 'superuser' => { user => 'admin' }, 'ok' ],
	[ 'exempt role member' => { user => 'mon' }, 'ok' ],
	[ 'exempt through another role' => { user => 'mon2' }, 'ok' ],
	[ 'physical replication' => { user => 'repl', params => { replication => 'true' } }, 'ok' ],
	[ 'logical replication' => { user => 'repl', params => { replication => 'database' } }, 'ok' ],);
my (@list, @expect);
for my $round (1 .. 2)
{
	for my $k (@kinds)
	{
		for my $app (@apps)
		{
			push @list, { wire_params($node, %{ $k->[1] }, application_name => $app) };
			push @expect, [ $k->[0], $app, $k->[2] ];
		}
	}
}
my @c = DbpgWire::storm(\@list);
my %bad;
for my $i (0 .. $#c)
{
	my ($kind, $app, $want) = @{ $expect[$i] };
	my $got = $c[$i]->outcome;
	$got .= " $c[$i]{error}{M}" if $got =~ /^other/;
	$bad{$kind} .= " [$app: $got]" if $got ne $want;
}
for my $k (@kinds)
{
	is($bad{ $k->[0] } // '', '', "$k->[0]: every login $k->[2] (" . 2 * @apps . ' logins, every service name)');
}

# the admitted ones work, and a replication connection replicates (the
# logins of @c are in the order of @expect)
my @ok_kind = map { $c[$_]->{ok} ? [ $expect[$_][0], $c[$_] ] : () } 0 .. $#c;
my $rows = eval {
	(map { $_->[0] eq 'physical replication' ? $_->[1] : () } @ok_kind)[0]->query('IDENTIFY_SYSTEM');
};
ok($rows && @$rows == 1, 'a replication connection at full caps runs IDENTIFY_SYSTEM');
is( scalar(grep { (eval { $_->query('SELECT 1')->[0][0] } // '') eq '1' }
		  map { $_->[0] =~ /replication$/ ? () : $_->[1] } @ok_kind),
	8 * @apps,
	'every admitted superuser and exempt session runs queries');

is(scalar_q($node, $counts_sql), $counts, 'status: they used no budget and were not counted as admitted');
is( scalar_q(
		$node, "SELECT string_agg(service || ':' || rejected_total, ' ' ORDER BY service COLLATE \"C\")
		          FROM dbpool_guard.status"),
	'*:8 a:4 b:4 zero:4',
	'status: only the 20 ordinary logins were refused');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.sessions'), '6',
	'sessions: only the 6 ordinary sessions hold slots');

$_->close for @c, @held;
ok(wait_released($node), 'every slot is released');

$node->stop;
done_testing();
