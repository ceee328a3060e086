# Client addresses in the rejections view: a refusal of a client whose
# address getnameinfo() writes with a zone (a link-local IPv6 peer,
# "fe80::1%lo") is recorded as pg_stat_activity shows that client
# ("fe80::1", the zone cleaned off), and one such refusal does not make
# every later SELECT on dbpool_guard.rejections fail (issue 13, point 4).
# Refusals over 127.0.0.1, ::1 and the Unix socket show 127.0.0.1, ::1 and
# NULL.
#
# Needs fe80::1 on the loopback interface, which only root can add, so it
# runs in a network namespace of its own: test/run-tests.sh, as root, runs
# the TAP step under `unshare -n`, brings lo up, adds fe80::1/64 to it and
# sets DBPG_NETNS=1.  All traffic stays on that private loopback.  Without
# DBPG_NETNS the test skips; under CI=true as root, run-tests.sh counts that
# skip as a failure.

use strict;
use warnings FATAL => 'all';


use IO::Socket::IP;
use Socket qw(SOCK_STREAM);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

plan skip_all =>
  'needs fe80::1 on lo in a private network namespace: test/run-tests.sh sets it up '
  . 'when run as root with a working "unshare -n" (DBPG_NETNS is not set)'
  unless $ENV{DBPG_NETNS};

my $ll = 'fe80::1%lo';

my $node = guard_node('client_addr', conf => <<'EOC');
listen_addresses = '127.0.0.1,::1,fe80::1%lo'
dbpool_guard.budgets = 'svc=1@1.0'
EOC
# PostgreSQL::Test::Cluster writes lines for 127.0.0.1/32 and ::1/128 only
$node->append_conf('pg_hba.conf', "host all all fe80::/64 trust\n");
$node->reload;
my $port = $node->port;

# A login over TCP with the raw protocol (DbpgTest::raw_login_on), so
# that the refusal's SQLSTATE is read as the server sent it.  Returns
# {ok, pid, sock} or {error => {C, M, ...}}.
sub tcp_login
{
	my ($host, %params) = @_;
	my $sock = IO::Socket::IP->new(
		PeerHost => $host,
		PeerPort => $port,
		Type => SOCK_STREAM,
		Timeout => 30);
	return { error => { C => 'SOCKET', M => "connect to [$host]:$port: $@" } }
	  unless $sock;
	my ($s, $pid, $fields) =
	  raw_login_on($sock, user => 'app', database => 'postgres', %params);
	return { ok => 1, pid => $pid, sock => $s } if defined $s;
	return { error => $fields };    # the socket is closed
}

sub tcp_close
{
	my ($c) = @_;
	my $sock = $c->{sock};
	print $sock "X\0\0\0\4";
	close $sock;
	return;
}

# A login as service svc from $host that must be refused by dbpool_guard.
sub refused_from
{
	my ($host, $what) = @_;
	my $c = tcp_login($host, application_name => 'svc');
	if ($c->{ok})
	{
		tcp_close($c);
		fail("$what: a second svc login is refused");
		return;
	}
	is($c->{error}{C}, '53300', "$what: a second svc login is refused with SQLSTATE 53300");
	is($c->{error}{M}, 'too many connections for service "svc"',
		"$what: ... with dbpool_guard's message");
	return;
}

# The whole view, as any monitoring query reads it; on failure the error.
sub read_rejections
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\pset null NULL\nSELECT rejected_at, service, user_name, database_name, client_addr, connections, budget, enforced FROM dbpool_guard.rejections ORDER BY rejected_at DESC"
	);
	return ($ret, $err);
}

# One value of a query on the rejections view (NULL as "NULL"), or
# "ERROR: ..." when the query fails: an unreadable view must fail the
# checks, not end the test.
sub rq
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\pset null NULL\n$sql");
	return $ret == 0 ? $out : "ERROR: $err";
}

# The newest refusal's address (text of the inet).
sub newest_addr
{
	return rq('SELECT client_addr FROM dbpool_guard.rejections ORDER BY rejected_at DESC LIMIT 1');
}

# --- the link-local peer ---------------------------------------------------------

# a session from fe80::1%lo that is not svc: what pg_stat_activity shows for it
my $other = tcp_login($ll, application_name => 'other');
ok($other->{ok}, "a login over [$ll] gets in")
  or diag("error: $other->{error}{C} $other->{error}{M}");
my $psa_addr = $other->{ok}
  ? scalar_q($node, "SELECT client_addr FROM pg_stat_activity WHERE pid = $other->{pid}")
  : '';
is($psa_addr, 'fe80::1', 'pg_stat_activity shows that client as fe80::1 (zone cleaned)');
tcp_close($other) if $other->{ok};

my $holder = hold($node, 'svc');
ok(wait_count($node, 'svc', 1), 'svc holds its one slot (over the Unix socket)');

refused_from($ll, "over [$ll]");
my ($ret, $err) = read_rejections();
is($ret, 0, 'SELECT * FROM dbpool_guard.rejections succeeds after a refusal from a link-local peer')
  or diag("psql: $err");
is(newest_addr(), 'fe80::1',
	'the refusal shows client_addr fe80::1, as pg_stat_activity shows the client');
is( rq(
		"SELECT family(client_addr) || ' ' || masklen(client_addr) FROM dbpool_guard.rejections ORDER BY rejected_at DESC LIMIT 1"
	),
	'6 128',
	'... an IPv6 host address');

# libpq (psql) with the zone in host= is refused the same way
like(hold_fails($node, app => 'svc', host => $ll),
	refusal_re('svc'),
	"psql with host=$ll is refused with dbpool_guard's message");
is(newest_addr(), 'fe80::1', '... and recorded as fe80::1');

# --- the other kinds of peer ------------------------------------------------------

refused_from('127.0.0.1', 'over 127.0.0.1');
is(newest_addr(), '127.0.0.1', 'a refusal over 127.0.0.1 shows 127.0.0.1');
refused_from('::1', 'over [::1]');
is(newest_addr(), '::1', 'a refusal over ::1 shows ::1');
like(hold_fails($node, app => 'svc'),
	refusal_re('svc'),
	'a login over the Unix socket is refused');
is(newest_addr(), 'NULL', 'a refusal over the Unix socket shows NULL');

($ret, $err) = read_rejections();
is($ret, 0, 'the whole rejections view still reads') or diag("psql: $err");
is( rq(
		"SELECT string_agg(coalesce(host(client_addr), 'NULL'), ' ' ORDER BY rejected_at) FROM dbpool_guard.rejections WHERE service = 'svc'"
	),
	'fe80::1 fe80::1 127.0.0.1 ::1 NULL',
	'every refusal, oldest first, with its address');
is(status_of($node, 'svc', 'connections, rejected_total'), '1|5',
	'the status view counts the five refusals');

quit_all($holder);
ok(wait_count($node, 'svc', 0), 'released');
$node->stop;
done_testing();
