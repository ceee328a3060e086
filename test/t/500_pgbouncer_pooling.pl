# PgBouncer in front of a guarded server (issue 16), with the real program:
# Debian 12's pgbouncer 1.18, one pooler user per service, and
# dbpool_guard.service_key = role.  PgBouncer reaches the server over TCP
# (127.0.0.1), so refusals carry PgBouncer's address.  Session pooling
# (database "sess") and transaction pooling (database "txn") run against
# the same PgBouncer, each with its own roles.
#
# It proves, in both pool modes:
#  - each service's server connections are capped exactly by its cap
#    (PgBouncer's pool_size is deliberately larger than the caps), the
#    refusals are recorded with client_addr 127.0.0.1, and when the guard
#    admits again (a higher budget) the waiting clients are served up to
#    the new cap and no further;
#  - what a pooled client sees when the guard refuses PgBouncer's server
#    login, in each pool state: (A) the pool's first login: FATAL 08P01
#    with the guard's message, the next client only after
#    server_login_retry; (B) the pool still has server connections: the
#    client queues and ends with FATAL 08P01 "query_wait_timeout"; (C) the
#    pool was left with none: the first client queues, later ones fail at
#    once with "server login has been failing, try again later
#    (server_login_retry)" for as long as the guard refuses; and that each
#    pool recovers when the guard admits again, no earlier than
#    server_login_retry after the last refused attempt;
# and, in session pooling: PgBouncer's idle server connections keep their
# slots; max_user_connections below the cap means the guard never refuses;
# states A and C once more with PgBouncer's defaults (server_login_retry
# 15 s, query_wait_timeout 120 s).  In transaction pooling: 20 clients
# share at most the cap's server connections.
#
# Delays are measured and printed (note: "FIGURE ..." lines in the log);
# they are asserted only with bounds that do not depend on the machine's
# speed (a lower bound that PgBouncer's own timer guarantees).  The
# client-visible codes and messages are asserted for PgBouncer 1.18 only
# (later releases forward the server's SQLSTATE): with another version the
# test prints them instead.
#
# pgbouncer is in /usr/sbin (or $PGBOUNCER); without it the test skips,
# except under CI=true, where a missing binary is a failure.

use strict;
use warnings FATAL => 'all';

use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use DbpgWire;
use DbpgBouncer;

my $TIMEOUT = $DbpgTest::TIMEOUT;

pgbouncer_or_skip();
my $pgb_version = pgb_version() // 'unknown';
my $v118 = $pgb_version =~ /^1\.18(?:\.|$)/;

# ------------------------------------------------------------------------
# Clients of PgBouncer (DbpgBouncer's timed clients: Unix socket, raw
# protocol, the error's fields as PgBouncer sent them).  pooled() starts
# the login, pgb_send() a query, pgb_await() waits for the answer.

sub pooled
{
	my ($db, $user) = @_;
	return pgb_connect(user => $user, dbname => $db);
}

# Logged in to PgBouncer ({ok} and {error}: DbpgWire's documented result).
sub logged_in { return $_[0]->{ok} && !$_[0]->{error} }

# Whether every connection of @_ has its answer.
sub all_answered { return !grep { !defined pgb_answered_at($_) } @_ }

sub outcome
{
	my ($c) = @_;
	return 'ok' if pgb_answered($c);
	my $e = pgb_error($c);
	return ($e->{S} // '?') . ' ' . ($e->{C} // '?') . ' "' . ($e->{M} // '?') . '"';
}

# A measured figure, printed (and collected for the summary at the end).
my @figures;

sub line
{
	my ($line) = @_;
	push @figures, $line;
	note($line);
	return;
}

sub figure
{
	my ($what, $c, $seconds) = @_;
	line(sprintf('FIGURE %-64s %s after %.2f s', $what, outcome($c), $seconds));
	return;
}

# 1.18's answer, asserted on 1.18, printed on other versions.
sub is_118
{
	my ($got, $want, $name) = @_;
	return is($got, $want, $name) if $v118;
	note("$name: got '$got' (1.18 would give '$want'; pgbouncer $pgb_version)");
	return 1;
}

# ------------------------------------------------------------------------
# The server and PgBouncer

my @budget_order = qw(s_a s_b s_first s_empty s_slow s_safe t_a t_b t_first t_empty t_share *);
my %budget = (
	s_a => '8', s_b => '3@0.5', s_first => '4', s_empty => '4', s_slow => '0', s_safe => '4',
	t_a => '8', t_b => '3@0.5', t_first => '4', t_empty => '4', t_share => '8', '*' => '2');

sub budgets_text { return join(', ', map { "$_=$budget{$_}" } @budget_order) }

my $node = guard_node('pgbouncer',
	max_connections => 80,
	conf => "listen_addresses = '127.0.0.1'\n"
	  . "dbpool_guard.service_key = role\n"
	  . "dbpool_guard.budgets = '" . budgets_text() . "'\n");
my @roles = grep { $_ ne '*' } @budget_order;
$node->safe_psql('postgres', join('', map { "CREATE ROLE $_ LOGIN;\n" } @roles));

# Change budgets and reload the server (set_conf waits for the reload).
sub budgets
{
	my (%chg) = @_;
	@budget{ keys %chg } = values %chg;
	set_conf($node, 'dbpool_guard.budgets', budgets_text());
	return;
}

sub rejected { return status_of($node, $_[0], 'rejected_total') }

sub last_rejected_epoch
{
	return scalar_q($node,
		"SELECT extract(epoch FROM last_rejected_at) FROM dbpool_guard.status WHERE service = '$_[0]'");
}

sub wait_rejected_above
{
	my ($svc, $n) = @_;
	return $node->poll_query_until('postgres',
		"SELECT rejected_total > $n FROM dbpool_guard.status WHERE service = '$svc'");
}

my $R = 2;    # the short server_login_retry
my $W = 3;    # the short query_wait_timeout
my $pgport = $node->port;
pgb_start(
	psql => $node->installed_command('psql'),
	databases => "sess = host=127.0.0.1 port=$pgport dbname=postgres pool_mode=session\n"
	  . "txn = host=127.0.0.1 port=$pgport dbname=postgres pool_mode=transaction\n",
	users => "s_safe = max_user_connections=3\n",
	auth => \@roles,
	set => {
		default_pool_size => 10,
		server_login_retry => $R,
		# no timeout while the caps are checked: queued clients stay queued
		query_wait_timeout => 0,
	});
note("server on 127.0.0.1:$pgport");

my %mode_of = (sess => 'session', txn => 'transaction');

# ------------------------------------------------------------------------
# 1. Caps are exact: pool_size 10, caps 7 and 2

# The query that makes a client hold a server connection: in transaction
# pooling, only an open transaction holds one.
sub hold_sql
{
	my ($db) = @_;
	return $db eq 'txn' ? 'BEGIN; SELECT pg_backend_pid()' : 'SELECT pg_backend_pid()';
}

my %queued;    # db => [clients still waiting for a server]

sub caps_exact
{
	my ($db, $pa, $pb) = @_;
	my $mode = $mode_of{$db};
	my $rej_a0 = rejected($pa);
	my $rej_b0 = rejected($pb);

	my @a = map { pooled($db, $pa) } 1 .. 10;
	my @b = map { pooled($db, $pb) } 1 .. 4;
	pgb_wait_for(sub { all_answered(@a, @b) });
	is(scalar(grep { logged_in($_) } @a, @b), 14,
		"$mode: 14 clients log in to PgBouncer (a server is needed only for queries)");
	pgb_send($_, hold_sql($db)) for @a, @b;

	ok( pgb_wait_for(
			sub {
				(grep { pgb_answered($_) } @a) == 7 && (grep { pgb_answered($_) } @b) == 2;
			}),
		"$mode: 7 $pa clients and 2 $pb clients are served");
	ok(wait_rejected_above($pa, $rej_a0) && wait_rejected_above($pb, $rej_b0),
		"$mode: the guard refused PgBouncer's next server login of each");
	ok( pgb_wait_for(
			sub {
				pgb_pool($db, $pa)->{cl_waiting} == 3 && pgb_pool($db, $pb)->{cl_waiting} == 2;
			}),
		"$mode: PgBouncer queues the other 3 and 2 clients");
	is(status_of($node, $pa, 'connections, cap'), '7|7', "$mode: $pa holds exactly its cap, 7");
	is(status_of($node, $pb, 'connections, cap'), '2|2', "$mode: $pb holds exactly its cap, 2");
	is(scalar(grep { pgb_answered($_) } @a), 7, "$mode: still exactly 7 $pa clients served");
	is(scalar(grep { pgb_pending($_) && !%{ pgb_error($_) } } @a),
		3, "$mode: the other 3 are waiting, without an error");
	is( scalar_q($node,
			"SELECT count(*) FILTER (WHERE client_addr = '127.0.0.1') || '/' || count(*) FROM pg_stat_activity WHERE usename = '$pa'"),
		'7/7',
		"$mode: the server has 7 backends of $pa, all from PgBouncer (127.0.0.1)");
	is( scalar_q($node,
			"SELECT string_agg(DISTINCT host(client_addr) || ' ' || user_name || ' ' || reason || ' ' || enforced, ',') FROM dbpool_guard.rejections WHERE service = '$pa'"),
		"127.0.0.1 $pa over_cap true",
		"$mode: the refusals show PgBouncer's address, 127.0.0.1");

	# the guard admits again: budget 10, cap ceil(0.9 * 10) = 9
	my $t_admit = time();
	budgets($pa => '10@0.9');
	ok(pgb_wait_for(sub { (grep { pgb_answered($_) } @a) == 9 }),
		"$mode: with cap 9, two queued clients are served");
	my ($first) = sort { $a <=> $b } map { pgb_answered_at($_) } grep { pgb_answered($_) && pgb_answered_at($_) > $t_admit } @a;
	line(sprintf('FIGURE %s, state B, retry %ds: a queued client served %.2f s after the guard admits again',
		$mode, $R, ($first // time()) - $t_admit));
	my $rej = rejected($pa);
	ok(wait_rejected_above($pa, $rej), "$mode: the next server login is refused again, at 9");
	is(status_of($node, $pa, 'connections, cap'), '9|9', "$mode: $pa holds exactly its new cap, 9");
	is(pgb_pool($db, $pa)->{cl_waiting}, 1, "$mode: one client still waits");

	$queued{$db} = [ grep { pgb_pending($_) } @a, @b ];
	return ([ grep { pgb_answered($_) } @a ], [ grep { pgb_answered($_) } @b ]);
}

my ($s_a, $s_b) = caps_exact('sess', 's_a', 's_b');
my ($t_a, $t_b) = caps_exact('txn', 't_a', 't_b');

# Transaction pooling: 20 clients, short statements, share the servers.
{
	my $rej0 = rejected('t_share');
	my @c = map { pooled('txn', 't_share') } 1 .. 20;
	pgb_wait_for(sub { all_answered(@c) });
	for my $round (1 .. 3)
	{
		pgb_send($_, 'SELECT pg_backend_pid()') for @c;
		pgb_wait_for(sub { all_answered(@c) });
	}
	is(scalar(grep { pgb_answered($_) } @c), 20, 'transaction: 20 clients, 3 statements each, all answered');
	my %pids = map { (pgb_answered($_) ? $_->query_result->[0][0] : 'none') => 1 } @c;
	my $cap = status_of($node, 't_share', 'cap');
	cmp_ok(scalar(keys %pids), '<=', $cap, "transaction: ... by at most the cap ($cap) of server backends");
	cmp_ok(status_of($node, 't_share', 'peak_connections'), '<=', $cap, 'transaction: peak_connections within the cap');
	note(sprintf('transaction: 20 clients used %d backends; %d server logins refused meanwhile',
		scalar(keys %pids), rejected('t_share') - $rej0));
	$_->close for @c;
}

# The recommended setting: PgBouncer's max_user_connections (3) below the
# cap (4): PgBouncer queues, the guard never has to refuse.
{
	my @c = map { pooled('sess', 's_safe') } 1 .. 6;
	pgb_wait_for(sub { all_answered(@c) });
	pgb_send($_, 'SELECT 1') for @c;
	ok(pgb_wait_for(sub { (grep { pgb_answered($_) } @c) == 3 && pgb_pool('sess', 's_safe')->{cl_waiting} == 3 }),
		'max_user_connections = 3 below cap 4: 3 clients served, 3 queued by PgBouncer');
	is(status_of($node, 's_safe', 'connections, rejected_total'), '3|0',
		'... 3 server connections, and the guard refused nothing');
	$_->close for @c;
}

# ------------------------------------------------------------------------
# 2. State B: the pool has server connections, all in use (the clients of
#    part 1 still hold them), and the guard refuses a new one.  A client
#    queues until query_wait_timeout.

pgb_reload(query_wait_timeout => $W);
{
	# the clients queued since part 1 end so
	for my $db (qw(sess txn))
	{
		for my $c (@{ $queued{$db} })
		{
			pgb_await($c);
			is_118(outcome($c), 'FATAL 08P01 "query_wait_timeout"',
				"$mode_of{$db}: a client queued since part 1 gets query_wait_timeout");
		}
	}
	# a new client of each mode, side by side
	my %role = (sess => 's_a', txn => 't_a');
	my %rej0 = map { ($_ => rejected($role{$_})) } keys %role;
	my %c = map { ($_ => pooled($_, $role{$_})) } keys %role;
	pgb_await($_) for values %c;
	for my $db (sort keys %c)
	{
		ok(logged_in($c{$db}), "$mode_of{$db}, state B: a new client logs in to PgBouncer");
		pgb_send($c{$db}, 'SELECT 1');
	}
	for my $db (sort keys %c)
	{
		my $mode = $mode_of{$db};
		my $s = pgb_await($c{$db});
		figure("$mode, state B (pool busy), retry ${R}s, query_wait_timeout ${W}s:", $c{$db}, $s);
		is_118(outcome($c{$db}), 'FATAL 08P01 "query_wait_timeout"',
			"$mode, state B: its query ends with query_wait_timeout, nothing of the guard's message");
		# PgBouncer starts the clock when it reads the query: a lower bound
		cmp_ok($s, '>=', $W - 0.05, "$mode, state B: it waited query_wait_timeout ($W s) for that");
		note(sprintf('%s, state B: %d server logins refused while it waited',
			$mode, rejected($role{$db}) - $rej0{$db}));
	}
}

# Session pooling: a client that leaves gives its server back to the pool,
# not to the server: the guard still counts it, until PgBouncer closes it.
$_->close for @$s_a, @$s_b, @$t_a, @$t_b;
ok(pgb_wait_for(sub { pgb_pool('sess', 's_a')->{sv_idle} == 9 && pgb_pool('sess', 's_b')->{sv_idle} == 2 }),
	'session: the clients left, their servers are idle in the pool');
is(status_of($node, 's_a', 'connections') . ' ' . status_of($node, 's_b', 'connections'),
	'9 2', 'session: the guard still counts PgBouncer\'s idle server connections');

# ------------------------------------------------------------------------
# 3. State A: the pool's first login is refused.

sub state_a
{
	my ($db, $role, $retry, $label) = @_;
	$label //= '';
	my $mode = $mode_of{$db};
	my $msg = qq{too many connections for service "$role"};

	my $c1 = pooled($db, $role);
	my $s1 = pgb_await($c1);
	figure("$mode, state A (first login), retry ${retry}s, 1st client:", $c1, $s1);
	ok(!logged_in($c1), "$mode, state A$label: the first client's login fails");
	is_118(outcome($c1), qq{FATAL 08P01 "$msg"},
		"$mode, state A$label: with FATAL 08P01 and the guard's message");
	is_118(join(',', sort grep { exists pgb_error($c1)->{$_} } qw(D H)), '',
		"$mode, state A$label: ... without the guard's DETAIL and HINT");
	my $t1 = last_rejected_epoch($role);

	my $c2 = pooled($db, $role);
	my $s2 = pgb_await($c2);
	figure("$mode, state A (first login), retry ${retry}s, next client:", $c2, $s2);
	is_118(outcome($c2), qq{FATAL 08P01 "$msg"}, "$mode, state A$label: the next client gets the same");
	my $t2 = last_rejected_epoch($role);
	# PgBouncer launched its first server login after $c1 came in; the
	# next one waits server_login_retry: a lower bound, whatever the speed
	cmp_ok((pgb_answered_at($c2) // 0) - pgb_sent_at($c1), '>=', $retry - 0.05,
		"$mode, state A$label: PgBouncer tried again only after server_login_retry");
	note(sprintf('%s, state A: the two refused server logins were %.2f s apart', $mode, $t2 - $t1));
	return;
}

budgets(s_first => 0, t_first => 0);
state_a('sess', 's_first', $R);
state_a('txn', 't_first', $R);

# recovery: the guard admits again
budgets(s_first => 4, t_first => 4);
for my $db (qw(sess txn))
{
	my $role = $db eq 'sess' ? 's_first' : 't_first';
	my $mode = $mode_of{$db};
	my $c = pooled($db, $role);
	my $s = pgb_await($c);
	figure("$mode, state A, retry ${R}s, first client after the guard admits:", $c, $s);
	ok(logged_in($c), "$mode, state A: after the budget is raised, the next client logs in");
	pgb_send($c, 'SELECT 1');
	pgb_await($c);
	ok(pgb_answered($c), "$mode, state A: ... and is served");
	$c->close;
}

# ------------------------------------------------------------------------
# 4. State C: the pool had server connections and lost them all while the
#    guard refuses.

# A new client logs in and, if PgBouncer lets it in, runs SELECT 1: the
# connection, and the seconds its last answer took.
sub try_query
{
	my ($db, $role) = @_;
	my $c = pooled($db, $role);
	pgb_await($c);
	pgb_send($c, 'SELECT 1') if logged_in($c);
	return ($c, pgb_await($c));
}

# New clients, one every $pause seconds, until one is served: when it
# was (undef if none in $TIMEOUT s), and how many failed before it.
sub until_served
{
	my ($db, $role, $pause) = @_;
	my ($failed, $t_ok) = (0);
	pgb_wait_for(
		sub {
			my ($c) = try_query($db, $role);
			my $ok = pgb_answered($c);
			$c->close;
			if ($ok) { $t_ok = time(); return 1; }
			$failed++;
			usleep($pause * 1_000_000);
			return 0;
		});
	return ($t_ok, $failed);
}

# Give $role's pool one idle server, then refuse the role and end that
# server's backend: the pool is left with no server connection.
sub empty_pool
{
	my ($db, $role) = @_;
	my ($c) = try_query($db, $role);
	$c->close;
	pgb_wait_for(sub { pgb_pool($db, $role)->{servers} >= 1 })
	  or die "no server connection in pool $db/$role";
	budgets($role => 0);
	$node->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '$role'");
	ok(pgb_wait_for(sub { pgb_pool($db, $role)->{servers} == 0 }),
		"$mode_of{$db}, state C: PgBouncer's pool $db/$role has no server connection left");
	return;
}

sub state_c
{
	my ($db, $role) = @_;
	my $mode = $mode_of{$db};
	my $fast = 'server login has been failing, try again later (server_login_retry)';
	empty_pool($db, $role);

	# the first client after the loss: PgBouncer tries, is refused, queues it
	my $rej0 = rejected($role);
	my $x = pooled($db, $role);
	pgb_await($x);
	ok(logged_in($x), "$mode, state C: a client logs in to PgBouncer");
	pgb_send($x, 'SELECT 1');
	ok(wait_rejected_above($role, $rej0), "$mode, state C: its query makes PgBouncer try a server login, refused");

	# later clients fail at once
	my $y = pooled($db, $role);
	pgb_await($y);
	ok(logged_in($y), "$mode, state C: the next client logs in to PgBouncer too");
	pgb_send($y, 'SELECT 1');
	my $sy = pgb_await($y);
	figure("$mode, state C (pool empty), retry ${R}s, next client's query:", $y, $sy);
	is_118(outcome($y), qq{FATAL 08P01 "$fast"}, "$mode, state C: its query fails with PgBouncer's own message");
	cmp_ok($sy, '<', $W, "$mode, state C: at once, not after query_wait_timeout");

	# the queued one waits for query_wait_timeout
	my $sx = pgb_await($x);
	figure("$mode, state C (pool empty), query_wait_timeout ${W}s, queued client:", $x, $sx);
	is_118(outcome($x), 'FATAL 08P01 "query_wait_timeout"', "$mode, state C: the queued client ends with query_wait_timeout");
	cmp_ok($sx, '>=', $W - 0.05, "$mode, state C: ... after query_wait_timeout ($W s)");

	# more than server_login_retry later: still failing at once (and this
	# client's query makes PgBouncer try once more, refused)
	my $t_last = last_rejected_epoch($role);
	$node->poll_query_until('postgres', "SELECT extract(epoch FROM now()) > $t_last + $R + 0.5");
	my $rej1 = rejected($role);
	my ($z, $sz) = try_query($db, $role);
	figure("$mode, state C, retry ${R}s, a client retry + 0.5 s later:", $z, $sz);
	is_118(outcome($z), qq{FATAL 08P01 "$fast"},
		"$mode, state C: more than server_login_retry later, new clients still fail at once");
	ok(wait_rejected_above($role, $rej1), "$mode, state C: ... and PgBouncer's new try is refused");

	# the guard admits again: clients fail until PgBouncer retries, then pass
	my $t_admit = time();
	budgets($role => 4);
	my ($t_ok, $failed) = until_served($db, $role, 0.1);
	ok(defined $t_ok, "$mode, state C: the pool recovers once the guard admits again");
	# that try came after $z's query; the next waits server_login_retry
	cmp_ok(($t_ok // 0) - pgb_sent_at($z), '>=', $R - 0.05,
		"$mode, state C: not before server_login_retry after PgBouncer's last refused try");
	line(sprintf('FIGURE %s, state C, retry %ds: served %.2f s after the guard admitted again, %d clients failed at once meanwhile',
		$mode, $R, ($t_ok // time()) - $t_admit, $failed));
	return;
}

state_c('sess', 's_empty');
state_c('txn', 't_empty');

# ------------------------------------------------------------------------
# 5. PgBouncer's defaults: server_login_retry 15 s, query_wait_timeout 120 s
#    (session pooling).  States A and C run side by side.

pgb_reload(server_login_retry => undef, query_wait_timeout => undef);
my %shown = map { $_->{key} => $_->{value} } @{ pgb_show('SHOW CONFIG') };
my $R15 = $shown{server_login_retry} // 'unknown';
$R15 =~ s/\.0+$//;
is($R15, '15', 'default server_login_retry is 15 s');
is(($shown{query_wait_timeout} // '') =~ s/\.0+$//r, '120', 'default query_wait_timeout is 120 s');

{
	empty_pool('sess', 's_empty');    # state C, now with the default retry

	# state A on a fresh pool (s_slow, budget 0): two clients
	my $a1 = pooled('sess', 's_slow');
	my $sa1 = pgb_await($a1);
	figure('session, state A, default retry 15s, 1st client:', $a1, $sa1);
	is_118(outcome($a1), 'FATAL 08P01 "too many connections for service "s_slow""',
		'defaults, state A: the first client fails at once with the guard\'s message');
	my $ta1 = last_rejected_epoch('s_slow');
	my $a2 = pooled('sess', 's_slow');    # waits for the next attempt, 15 s later

	# state C: a queued client, then one that fails at once
	my $rej0 = rejected('s_empty');
	my $x = pooled('sess', 's_empty');
	pgb_await($x);
	pgb_send($x, 'SELECT 1');
	ok(wait_rejected_above('s_empty', $rej0), 'defaults, state C: a server login was refused');
	my $t_refused = last_rejected_epoch('s_empty');
	my ($y, $sy) = try_query('sess', 's_empty');
	figure('session, state C, default retry 15s, next client:', $y, $sy);
	is_118(outcome($y),
		'FATAL 08P01 "server login has been failing, try again later (server_login_retry)"',
		'defaults, state C: the next client fails at once');

	# the guard admits again at once: new clients keep failing until
	# PgBouncer's next attempt, server_login_retry after the refused one
	my $t_admit = time();
	budgets(s_empty => 4);
	my ($t_ok, $failed) = until_served('sess', 's_empty', 0.25);
	ok(defined $t_ok, 'defaults, state C: the pool recovers');
	cmp_ok(($t_ok // 0) - pgb_sent_at($x), '>=', 15 - 0.05,
		'defaults, state C: new clients failed until 15 s after the refused login, although the guard admitted');
	my $line = sprintf('FIGURE session, state C, default retry 15s: served %.2f s after the guard admitted again (%.2f s after the refused login), %d clients failed at once meanwhile',
		($t_ok // time()) - $t_admit, ($t_ok // time()) - $t_refused, $failed);
	line($line);
	my $sx = pgb_await($x);
	figure('session, state C, default retry 15s, the queued client:', $x, $sx);
	ok(pgb_answered($x), 'defaults, state C: the queued client is served when PgBouncer retries');

	my $sa2 = pgb_await($a2);
	figure('session, state A, default retry 15s, next client:', $a2, $sa2);
	is_118(outcome($a2), 'FATAL 08P01 "too many connections for service "s_slow""',
		'defaults, state A: the next client gets the same refusal');
	my $ta2 = last_rejected_epoch('s_slow');
	cmp_ok((pgb_answered_at($a2) // 0) - pgb_sent_at($a1), '>=', 15 - 0.05,
		'defaults, state A: ... from an attempt server_login_retry (15 s) after the first');
	note(sprintf('defaults, state A: the two refused server logins were %.2f s apart', $ta2 - $ta1));
	$_->close for $x;
}

diag(join("\n", "pgbouncer $pgb_version; measured:", @figures)) if $ENV{DBPG_PGB_FIGURES};
pgb_stop();
$node->stop;
done_testing();
