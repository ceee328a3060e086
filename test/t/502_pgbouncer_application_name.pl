# Behind PgBouncer, budgets keyed by the clients' application_name do not
# work (issue 16), shown with the real program (Debian 12's pgbouncer 1.18)
# and dbpool_guard.service_key = application_name:
#  - PgBouncer's server logins carry the database and the user, and an
#    application_name only when the [databases] entry sets one: the
#    server's log_connections lines show it, and the guard counts every
#    pooled server connection in "*" (or under the entry's fixed name);
#  - the client's own name reaches the server only as a SET after PgBouncer
#    links the client, so pg_stat_activity (and the session itself) shows
#    the client's name while dbpool_guard.sessions shows where the slot
#    was really counted;
#  - so one service's clients fill "*" and another service's client is
#    refused there, and a service's own budget is never used, while a
#    direct login with the same name is counted under that name.
#
# pgbouncer is in /usr/sbin (or $PGBOUNCER); without it the test skips,
# except under CI=true, where a missing binary is a failure.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use DbpgWire;
use DbpgBouncer;

pgbouncer_or_skip();

# A client of PgBouncer with its own application_name, logged in.
sub pooled
{
	my ($db, $app) = @_;
	return DbpgWire::login(pgb_params(user => 'app', dbname => $db, application_name => $app));
}

# ------------------------------------------------------------------------

my $node = guard_node('pgb_appname',
	conf => "listen_addresses = '127.0.0.1'\n"
	  . "log_connections = on\n"
	  . "dbpool_guard.service_key = application_name\n"
	  . "dbpool_guard.budgets = 'web=2, batch=2, pgb-fixed=3, *=3'\n");
my $pgport = $node->port;
pgb_start(
	psql => $node->installed_command('psql'),
	databases => "plain = host=127.0.0.1 port=$pgport dbname=postgres\n"
	  . "fixed = host=127.0.0.1 port=$pgport dbname=postgres application_name=pgb-fixed\n",
	auth => ['app'],
	set => {
		pool_mode => 'session',
		default_pool_size => 10,
		query_wait_timeout => 0,
		max_client_conn => 100
	});

my $log_offset = -s $node->logfile;

# Three clients of "web" through the entry without a name.
my @web = map { pooled('plain', 'web') } 1 .. 3;
is(scalar(grep { $_->{ok} } @web), 3, 'three clients named "web" log in to PgBouncer');
my @pid;
for my $c (@web)
{
	my $rows = eval { $c->query(q{SELECT pg_backend_pid(), current_setting('application_name')}) };
	push @pid, $rows ? $rows->[0][0] : 0;
	is($rows ? $rows->[0][1] : "error: $@", 'web',
		'inside the pooled session, application_name is the client\'s "web"');
}
my $pids = join(',', @pid);

is(status_of($node, '*', 'connections'), '3', 'the guard counts their 3 server connections in "*"');
is(status_of($node, 'web', 'connections'), '0', '... none under "web", whose budget of 2 they exceed');
is( scalar_q($node,
		"SELECT string_agg(DISTINCT service, ',') FROM dbpool_guard.sessions WHERE pid IN ($pids)"),
	'*', 'dbpool_guard.sessions: their slots are in "*"');
is( scalar_q($node,
		"SELECT string_agg(DISTINCT application_name || ' ' || host(client_addr), ',') FROM pg_stat_activity WHERE pid IN ($pids)"),
	'web 127.0.0.1',
	'pg_stat_activity shows them as "web", from PgBouncer\'s address');

# the server's log: what the startup packets carried
my $log = slurp_file($node->logfile, $log_offset);
my @auth = grep { my $l = $_; grep { $l =~ /\[$_\]/ } @pid } grep { /connection authorized:/ } split /\n/, $log;
is(scalar(@auth), 3, 'the server logged the three logins (log_connections)');
is(scalar(grep { /application_name=/ } @auth), 0,
	'... none of them with an application_name: PgBouncer sent none')
  or diag(join("\n", @auth));
note("server log: $_") for @auth;

# A client of another service is refused in "*", which "web" filled.
my $rej0 = status_of($node, '*', 'rejected_total');
my $batch = pooled('plain', 'batch');
ok($batch->{ok}, 'a client named "batch" logs in to PgBouncer');
$batch->send_query('SELECT 1');
ok( $node->poll_query_until('postgres',
		"SELECT rejected_total > $rej0 FROM dbpool_guard.status WHERE service = '*'"),
	'... and its server login is refused in "*", which the "web" clients filled');
is( scalar_q($node,
		"SELECT service || ' ' || host(client_addr) FROM dbpool_guard.rejections ORDER BY rejected_at DESC LIMIT 1"),
	'* 127.0.0.1',
	'the rejection names "*" and PgBouncer\'s address, not "batch"');
is(status_of($node, 'batch', 'connections, rejected_total'), '0|0',
	'"batch" itself, with a budget of 2, has neither a slot nor a refusal');
$batch->close;

# The entry with a fixed application_name: every client is counted there.
$log_offset = -s $node->logfile;
my @fixed_app = qw(web batch);
my @fixed = map { pooled('fixed', $_) } @fixed_app;
my @fpid;
for my $i (0 .. $#fixed)
{
	my $rows = eval { $fixed[$i]->query(q{SELECT pg_backend_pid(), current_setting('application_name')}) };
	push @fpid, $rows ? $rows->[0][0] : 0;
	is($rows ? $rows->[0][1] : "error: $@", $fixed_app[$i],
		"through \"fixed\", the session shows the client's name \"$fixed_app[$i]\"");
}
my $fpids = join(',', @fpid);
is(status_of($node, 'pgb-fixed', 'connections'), '2',
	'the guard counts both under the entry\'s fixed application_name "pgb-fixed"');
is( scalar_q($node,
		"SELECT string_agg(s.service || ' ' || a.application_name, ',' ORDER BY a.application_name) FROM dbpool_guard.sessions s JOIN pg_stat_activity a USING (pid) WHERE pid IN ($fpids)"),
	'pgb-fixed batch,pgb-fixed web',
	'... while pg_stat_activity shows "batch" and "web"');
$log = slurp_file($node->logfile, $log_offset);
@auth = grep { my $l = $_; grep { $l =~ /\[$_\]/ } @fpid } grep { /connection authorized:/ } split /\n/, $log;
is(scalar(grep { /application_name=pgb-fixed/ } @auth), scalar(@auth),
	'the server logged those logins with application_name=pgb-fixed');
is(scalar(@auth), 2, '... both of them');
note("server log: $_") for @auth;

# A direct login with the same name is counted under it.
my $direct = hold($node, 'web');
ok(wait_count($node, 'web', 1), 'a direct login named "web" is counted under "web"');

quit_all($direct);
$_->close for @web, @fixed;
pgb_stop();
$node->stop;
done_testing();
