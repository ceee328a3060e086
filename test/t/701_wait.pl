# Elastic budgets (1.5), waiting: with dbpool_guard.max_wait > 0 a login
# that finds no slot waits for one (in the server, before
# AuthenticationOk: the raw client sees no answer yet), and is listed in
# dbpool_guard.waiting_logins.
#
# - A freed slot is handed to the service's oldest waiter, in the order
#   the logins reached the hook (FIFO), never to a newcomer; a freed pool
#   slot goes to the oldest waiter among the services that may borrow.
# - A wait ends by timeout (a clean 53300 saying how long it waited,
#   reason wait_timeout, wait_timeouts_total), by the client closing its
#   socket (the backend exits, nothing recorded, nothing left behind), by
#   cancel_waiting_login() (a clean 53300, reason wait_cancelled), by
#   pg_terminate_backend() (the connection drops, nothing left behind),
#   and always before authentication_timeout (a clean 53300, never a
#   dropped connection).
# - max_waiters and max_waiters_total refuse at once (queue_full);
#   superusers and exempt roles never wait, also while the waiters are at
#   their bound and while waiters hold every non-reserved process slot.
#
# Every step waits for the state it asserts (the waiting_logins view, a
# client's answer); no assertion depends on the machine's speed except
# lower bounds of waits that the server itself timed.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use DbpgWire;
use DbpgElastic;
use DbpgMonitoring qw(wait_for);
use Time::HiRes qw(time);

my $max_connections = 20;
my $node = guard_node('wait',
	max_connections => $max_connections,
	conf => "superuser_reserved_connections = 3\n"
	  . "dbpool_guard.budgets = 'f=2\@1.0, a=1+1\@1.0, b=1+1\@1.0, c=1\@1.0, t=1\@1.0, q=1\@1.0, r=1\@1.0'\n"
	  . "dbpool_guard.burst_pool = 1\n"
	  . "dbpool_guard.max_wait = 40s\n"
	  . "dbpool_guard.max_waiters = 6\n"
	  . "dbpool_guard.max_waiters_total = 10\n"
	  . "dbpool_guard.exempt_roles = 'monitoring'\n");
$node->safe_psql(
	'postgres', q{
	CREATE ROLE admin SUPERUSER LOGIN;
	CREATE ROLE monitoring NOLOGIN;
	CREATE ROLE mon LOGIN IN ROLE monitoring;
});
my $TIMEOUT = $DbpgTest::TIMEOUT;

# The bootstrap superuser over the raw protocol: one session for every
# query of the test (psql would take a process slot per poll).
my $su = su_session($node);
my $su_name = $su->user;

sub waiting { return $su->q1('SELECT count(*) FROM dbpool_guard.waiting_logins'); }

# "pid:position ..." of a service's waiters, in their order
sub queue_of
{
	my ($service) = @_;
	return $su->q1(qq{SELECT string_agg(pid || ':' || position, ' ' ORDER BY position)
	               FROM dbpool_guard.waiting_logins WHERE service = '$service'});
}

sub expected_queue
{
	my $i = 0;
	return join(' ', map { $_->{wpid} . ':' . ++$i } @_);
}

# A slot was freed: $want (a waiter) must be the one admitted, with its
# own backend, and none of @still.
sub expect_admitted
{
	my ($what, $want, @still) = @_;
	wait_for(sub { scalar grep { answered($_) } $want, @still }, $TIMEOUT, 10);
	ok($want->{ok} && $want->{pid} == $want->{wpid}, "$what: admitted")
	  or diag('outcome: ' . $want->outcome . ' ' . ($want->{error}{M} // ''));
	is(scalar(grep { answered($_) } @still), 0, "$what: the others still wait");
	return;
}

sub process_gone
{
	my ($pid) = @_;
	return wait_for(sub { !kill(0, $pid) }, $TIMEOUT, 20);
}

is($su->q1('SHOW dbpool_guard.max_wait'), '40s', 'max_wait is 40 s');
is($su->q1('SELECT size, borrowed, free, waiting_logins, max_waiters_total FROM dbpool_guard.pool'),
	'1|0|1|0|10', 'pool view: size 1, nobody waiting, max_waiters_total 10');

# --- FIFO among the waiters of one service -----------------------------------------------

my @h = map { wire_login($node, application_name => 'f') } 1 .. 2;
is(scalar(grep { $_->{ok} } @h), 2, 'f is at its cap (2)');
my @w = map { start_waiter($su, 'f') } 1 .. 3;
is(scalar(grep { defined $_->{wpid} && !answered($_) } @w),
	3, 'three logins of f wait, one after the other, with no answer yet');
is(queue_of('f'), expected_queue(@w), 'waiting_logins: positions 1, 2, 3 in the order they came');
is( $su->q1(qq{SELECT string_agg(DISTINCT service || ':' || user_name || ':' || database_name || ':'
                            || coalesce(client_addr::text, 'NULL'), ' ')
            FROM dbpool_guard.waiting_logins}),
	'f:app:postgres:NULL',
	'waiting_logins: service, user, database, no address (Unix socket)');
is( $su->q1(q{SELECT bool_and(waiting_since <= clock_timestamp() AND waited >= interval '0'
                         AND waited <= clock_timestamp() - waiting_since + interval '1 s')
           FROM dbpool_guard.waiting_logins}),
	't', 'waiting_logins: waiting_since and waited agree');
is($su->q1(q{SELECT connections, waiting_logins, state FROM dbpool_guard.status WHERE service = 'f'}),
	'2|3|rejecting', 'status: f holds 2, 3 waiting, rejecting');
is($su->q1('SELECT waiting_logins FROM dbpool_guard.pool'), '3', 'pool view: 3 waiting in the server');

# exempt roles and superusers never wait (if they did, nothing would
# answer them: no slot is freed here)
my $ex = wire_login($node, application_name => 'f', user => 'mon', timeout => 30);
ok($ex->{ok}, 'an exempt role logs in at once while f is full and has waiters');
my $sup = wire_login($node, application_name => 'f', user => 'admin', timeout => 30);
ok($sup->{ok}, 'a superuser logs in at once while f is full and has waiters');
is($su->q1(q{SELECT connections FROM dbpool_guard.status WHERE service = 'f'}) . ' ' . waiting(),
	'2 3', 'neither is counted nor queued');
$_->close for $ex, $sup;

# A slot is freed and a newcomer arrives right away: the slot goes to the
# oldest waiter, the newcomer queues behind the others.
$h[0]->close;
my $n4 = DbpgWire::start(wire_params($node, application_name => 'f'));
expect_admitted('slot 1 freed: the oldest waiter', $w[0], @w[ 1, 2 ], $n4);
wait_for(sub { answered($n4) || waiting() == 3 }, $TIMEOUT, 10);
($n4->{wpid}) = grep { $_ != $w[1]{wpid} && $_ != $w[2]{wpid} } split /\n/,
  $su->q1('SELECT pid FROM dbpool_guard.waiting_logins');
ok(!answered($n4) && defined $n4->{wpid}, 'the newcomer waits');
is(queue_of('f'), expected_queue(@w[ 1, 2 ], $n4), 'the newcomer is behind the two older waiters');

$h[1]->close;
expect_admitted('slot 2 freed: the second waiter', $w[1], $w[2], $n4);
is(queue_of('f'), expected_queue($w[2], $n4), 'the third waiter is next, then the newcomer');
$w[0]->close;
expect_admitted('slot 3 freed: the third waiter', $w[2], $n4);
$w[1]->close;
expect_admitted('slot 4 freed: the newcomer, last', $n4);
is(waiting(), '0', 'nobody waits any more');
is( $su->q1(q{SELECT connections, waiting_logins, waited_total, wait_timeouts_total, rejected_total
           FROM dbpool_guard.status WHERE service = 'f'}),
	'2|0|4|0|0', 'status: f holds 2; 4 admitted after waiting, none refused');
$_->close for $w[2], $n4;
is($su->wait_q(q{SELECT connections FROM dbpool_guard.status WHERE service = 'f'}, '0'), '0', 'f released');

# --- a freed pool slot goes to the oldest waiter that may borrow --------------------------------

my $counts_sql = q{SELECT (SELECT string_agg(service || ':' || connections || ':' || borrowed, ' ' ORDER BY service)
                             FROM dbpool_guard.status WHERE service IN ('a', 'b', 'c'))
                        || ' pool:' || (SELECT borrowed FROM dbpool_guard.pool)};
my @a = map { wire_login($node, application_name => 'a') } 1 .. 2;
my $b1 = wire_login($node, application_name => 'b');
my $c1 = wire_login($node, application_name => 'c');
is(scalar(grep { $_->{ok} } @a, $b1, $c1), 4, 'a (1 own + 1 borrowed), b and c hold their slots');
is($su->q1($counts_sql), 'a:2:1 b:1:0 c:1:0 pool:1', 'the pool (1) is lent to a');
# c cannot borrow (no burst); b could, but the pool is full; a has used
# its burst.  They come in this order.
my $wc = start_waiter($su, 'c');
my $wb = start_waiter($su, 'b');
my $wa = start_waiter($su, 'a');
is(scalar(grep { defined $_->{wpid} && !answered($_) } $wc, $wb, $wa),
	3, 'a login of c, of b and of a wait, in this order');
is($su->q1(q{SELECT string_agg(service || ':' || waiting_logins, ' ' ORDER BY service)
          FROM dbpool_guard.status WHERE service IN ('a', 'b', 'c')}),
	'a:1 b:1 c:1', 'status: one waiting login each');
is($su->q1(q{SELECT string_agg(service || ':' || state, ' ' ORDER BY service)
          FROM dbpool_guard.status WHERE service IN ('a', 'b', 'c')}),
	'a:rejecting b:rejecting c:rejecting', 'status: all three rejecting');

# a's first (own) session ends; a repays its borrowed slot, so a has no
# own slot free but the pool has one: it goes to b's waiter, the oldest
# that may borrow (c's is older but may not borrow, a's is younger)
$a[0]->close;
expect_admitted('pool slot freed: the oldest waiter that may borrow (b)', $wb, $wc, $wa);
is($su->q1($counts_sql), 'a:1:0 b:2:1 c:1:0 pool:1', 'b borrowed the pool slot, a repaid it');
$c1->close;
expect_admitted("c's own slot freed: c's waiter", $wc, $wa);
$wb->close;
expect_admitted("b repays: the pool slot goes to a's waiter", $wa);
is($su->q1($counts_sql), 'a:2:1 b:1:0 c:1:0 pool:1', "a's waiter borrowed it");
is(waiting(), '0', 'nobody waits');
$_->close for $a[1], $b1, $wc, $wa;
is( $su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0}, '0'),
	'0', 'all released');

# --- a wait that times out -------------------------------------------------------------------------

set_conf($node, 'dbpool_guard.max_wait' => '1000');
my $ht = wire_login($node, application_name => 't');
ok($ht->{ok}, 't is at its cap (1)');
my $t0 = time();
my $wt = start_waiter($su, 't');
ok(defined $wt->{wpid}, 'timeout: the login waits');
$wt->wait_ready;
my $elapsed = time() - $t0;
ok($wt->is_refusal, 'timeout: refused with SQLSTATE 53300 and our message')
  or diag('outcome: ' . $wt->outcome . ' ' . ($wt->{error}{M} // ''));
my ($waited) = ($wt->{error}{D} // '') =~ /waited (\d+) ms for a slot/;
ok(defined $waited, 'timeout: the detail says how long it waited')
  or diag($wt->error_text);
ok(defined $waited && $waited >= 950 && $elapsed >= 0.95,
	'timeout: it waited max_wait (' . ($waited // 'undef') . " ms, the client saw $elapsed s)");
is($su->q1(q{SELECT reason, enforced FROM dbpool_guard.rejections WHERE service = 't' ORDER BY rejected_at DESC LIMIT 1}),
	'wait_timeout|t', 'timeout: rejections reason wait_timeout');
is($su->q1(q{SELECT connections, waiting_logins, wait_timeouts_total, waited_total FROM dbpool_guard.status WHERE service = 't'}),
	'1|0|1|0', 'timeout: wait_timeouts_total 1, nobody waiting, the holder still counted');
is(waiting(), '0', 'timeout: waiting_logins is empty');

set_conf($node, 'dbpool_guard.max_wait' => '40s');
my $t_sql = q{SELECT connections, waiting_logins, rejected_total, wait_timeouts_total, waited_total
                FROM dbpool_guard.status WHERE service = 't'};
my $t_before = $su->q1($t_sql);
my $rej_rows = $su->q1('SELECT count(*) FROM dbpool_guard.rejections');

# --- the client goes away --------------------------------------------------------------------------

$wt = start_waiter($su, 't');
ok(defined $wt->{wpid} && !answered($wt), 'client leaves: the login waits');
my $sock = $wt->detach;
close($sock);
is($su->wait_q('SELECT count(*) FROM dbpool_guard.waiting_logins', '0'), '0',
	'client leaves: the wait ends, waiting_logins is empty');
ok(process_gone($wt->{wpid}), 'client leaves: its backend exits');
is($su->q1($t_sql), $t_before, 'client leaves: no slot taken, no refusal counted, nobody waiting');
is($su->q1('SELECT count(*) FROM dbpool_guard.rejections'), $rej_rows, 'client leaves: nothing in rejections');

# --- the operator cancels the wait -------------------------------------------------------------------

$wt = start_waiter($su, 't');
ok(defined $wt->{wpid} && !answered($wt), 'cancel: the login waits');
is($su->q1("SELECT dbpool_guard.cancel_waiting_login($wt->{wpid})"), 't', 'cancel: cancel_waiting_login() returns true');
$wt->wait_ready;
ok($wt->is_refusal, 'cancel: the client is refused with 53300 and our message')
  or diag('outcome: ' . $wt->outcome . ' ' . ($wt->{error}{M} // ''));
like($wt->{error}{D} // '', qr/An administrator cancelled the wait/, 'cancel: the detail says an administrator cancelled it');
is($su->q1(q{SELECT reason FROM dbpool_guard.rejections WHERE service = 't' ORDER BY rejected_at DESC LIMIT 1}),
	'wait_cancelled', 'cancel: rejections reason wait_cancelled');
is(waiting(), '0', 'cancel: waiting_logins is empty');
ok(process_gone($wt->{wpid}), 'cancel: its backend exits');
is($su->q1("SELECT dbpool_guard.cancel_waiting_login($wt->{wpid})"), 'f', 'cancel: false for a pid that no longer waits');
is($su->q1("SELECT dbpool_guard.cancel_waiting_login($ht->{pid})"), 'f', 'cancel: false for an admitted session');
is($su->q1('SELECT dbpool_guard.cancel_waiting_login(pg_backend_pid())'), 'f', 'cancel: false for a superuser session');
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT dbpool_guard.cancel_waiting_login(1)',
	connstr => conn($node, app => 'unlisted'));
like($stderr, qr/permission denied for function cancel_waiting_login/,
	'cancel: an ordinary role may not call cancel_waiting_login()');

# --- pg_terminate_backend() on a waiting login --------------------------------------------------------

$t_before = $su->q1(q{SELECT connections, waiting_logins FROM dbpool_guard.status WHERE service = 't'});
$wt = start_waiter($su, 't');
ok(defined $wt->{wpid} && !answered($wt), 'terminate: the login waits');
is($su->q1("SELECT pg_terminate_backend($wt->{wpid})"), 't', 'terminate: pg_terminate_backend() signals it');
$wt->wait_ready;
ok(!$wt->{ok} && !$wt->is_refusal, 'terminate: the connection drops (' . $wt->outcome . ')');
ok(process_gone($wt->{wpid}), 'terminate: its backend exits');
is(waiting(), '0', 'terminate: waiting_logins is empty');
is($su->q1(q{SELECT connections, waiting_logins FROM dbpool_guard.status WHERE service = 't'}),
	$t_before, 'terminate: no slot taken, nobody waiting');

# nothing was left behind by the four ways out: the holder's slot is not
# handed to a ghost, and the next login neither waits nor is refused
$ht->close;
is($su->wait_q(q{SELECT connections FROM dbpool_guard.status WHERE service = 't'}, '0'), '0',
	'after the four: the freed slot is not handed to anyone');
my $waited_t = $su->q1(q{SELECT waited_total FROM dbpool_guard.status WHERE service = 't'});
$ht = wire_login($node, application_name => 't');
ok($ht->{ok}, 'after the four: the next login of t is admitted');
is($su->q1(q{SELECT connections, waited_total FROM dbpool_guard.status WHERE service = 't'}),
	"1|$waited_t", 'after the four: it took the slot without waiting');

# --- the waiters' bounds: queue_full ------------------------------------------------------------------

set_conf($node, 'dbpool_guard.max_waiters' => 2, 'dbpool_guard.max_waiters_total' => 3);
my $hq = wire_login($node, application_name => 'q');
my $hr = wire_login($node, application_name => 'r');
ok($hq->{ok} && $hr->{ok}, 'q and r are at their caps');
my @qw = map { start_waiter($su, 'q') } 1 .. 2;
is(scalar(grep { defined $_->{wpid} && !answered($_) } @qw), 2, 'two logins of q wait');
my $q3 = wire_login($node, application_name => 'q');
ok($q3->is_refusal, 'max_waiters: the third login of q is refused at once')
  or diag('outcome: ' . $q3->outcome . ' ' . $q3->error_text);
like($q3->error_text, qr/logins are already waiting/, 'max_waiters: the detail says logins are already waiting');
unlike($q3->error_text, qr/in the server/, 'max_waiters: ... for the service');
like($q3->error_text, qr/dbpool_guard\.max_waiters(?!_total)/, 'max_waiters: it names dbpool_guard.max_waiters');
is($su->q1(q{SELECT reason FROM dbpool_guard.rejections WHERE service = 'q' ORDER BY rejected_at DESC LIMIT 1}),
	'queue_full', 'max_waiters: rejections reason queue_full');
my $wr = start_waiter($su, 'r');
ok(defined $wr->{wpid} && !answered($wr), 'a login of r waits (3 waiting in the server)');
my $r2 = wire_login($node, application_name => 'r');
ok($r2->is_refusal, 'max_waiters_total: the next login of r is refused at once')
  or diag('outcome: ' . $r2->outcome . ' ' . $r2->error_text);
like($r2->error_text, qr/logins are already waiting in the server/,
	'max_waiters_total: the detail says logins are already waiting in the server');
like($r2->error_text, qr/dbpool_guard\.max_waiters_total/, 'max_waiters_total: it names dbpool_guard.max_waiters_total');
is($su->q1(q{SELECT reason FROM dbpool_guard.rejections WHERE service = 'r' ORDER BY rejected_at DESC LIMIT 1}),
	'queue_full', 'max_waiters_total: rejections reason queue_full');
is($su->q1('SELECT waiting_logins, max_waiters_total FROM dbpool_guard.pool'), '3|3',
	'pool view: 3 waiting of at most 3');

my @vip = (
	wire_login($node, application_name => 'q', user => 'admin', timeout => 30),
	wire_login($node, application_name => 'r', user => $su_name, timeout => 30),
	wire_login($node, application_name => 'q', user => 'mon', timeout => 30));
is(scalar(grep { $_->{ok} } @vip), 3,
	'waiters at their bounds: superusers and an exempt role are admitted at once');
is($su->q1(q{SELECT string_agg(service || ':' || connections, ' ' ORDER BY service)
          FROM dbpool_guard.status WHERE service IN ('q', 'r')}) . ' ' . waiting(),
	'q:1 r:1 3', 'they are not counted, the waiters are unchanged');
$_->close for @vip, $q3, $r2;

# the waiters go on in order when slots are freed
$hq->close;
expect_admitted("q's slot freed: q's first waiter", $qw[0], $qw[1], $wr);
$hr->close;
expect_admitted("r's slot freed: r's waiter", $wr, $qw[1]);
$qw[0]->close;
expect_admitted("q's slot freed again: q's second waiter", $qw[1]);
$_->close for @qw, $wr;
is($su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE service IN ('q', 'r') AND connections <> 0}, '0'),
	'0', 'q and r released');

# --- a wait ends by itself before authentication_timeout --------------------------------------------

set_conf($node, 'authentication_timeout' => '3s', 'dbpool_guard.max_wait' => '10s');
my $offset = -s $node->logfile;
$t0 = time();
$wt = start_waiter($su, 't');
ok(defined $wt->{wpid}, 'authentication_timeout 3 s, max_wait 10 s: the login waits');
$wt->wait_ready;
$elapsed = time() - $t0;
ok($wt->is_refusal, 'authentication_timeout: refused cleanly with 53300, not a dropped connection')
  or diag('outcome: ' . $wt->outcome . ' ' . ($wt->{error}{M} // ''));
($waited) = ($wt->{error}{D} // '') =~ /waited (\d+) ms for a slot/;
# The wait ends about 500 ms before the timer (3 s after the login's
# authentication started, a little before the hook): the server's count
# is below 3000 ms, and well above what an immediate refusal would show.
# (Exactly 2500 is not a bound: the latch wakes up a few ms after the
# deadline.)
ok( defined $waited && $waited >= 1000 && $waited < 3000,
	'authentication_timeout: it waited until about 500 ms before the timer ('
	  . ($waited // 'undef') . " ms; the client saw $elapsed s)");
is($su->q1(q{SELECT reason FROM dbpool_guard.rejections WHERE service = 't' ORDER BY rejected_at DESC LIMIT 1}),
	'wait_timeout', 'authentication_timeout: reason wait_timeout');
ok(process_gone($wt->{wpid}), 'authentication_timeout: the backend exits');
ok(!$node->log_contains(qr/canceling authentication due to timeout/, $offset),
	'authentication_timeout: the timer never fired');
set_conf($node, 'authentication_timeout' => '60s', 'dbpool_guard.max_wait' => '40s');
$ht->close;
is($su->wait_q(q{SELECT connections FROM dbpool_guard.status WHERE service = 't'}, '0'), '0', 't released');

# --- superusers are never locked out by waiters --------------------------------------------------------

set_conf($node, 'dbpool_guard.max_waiters' => 20, 'dbpool_guard.max_waiters_total' => 20);
my $reserved = $su->q1('SELECT reserved FROM dbpool_guard.budget_check()');
ok($reserved >= 3, "superuser_reserved_connections: $reserved reserved slots");
@h = map { wire_login($node, application_name => 'f') } 1 .. 2;
is(scalar(grep { $_->{ok} } @h), 2, 'f is at its cap');
# waiters until one is refused at once: every process slot beyond the
# reserved ones is then taken
my (@fw, $full);
for (1 .. $max_connections)
{
	my $c = start_waiter($su, 'f');
	if (answered($c)) { $full = $c; last; }
	push @fw, $c;
}
ok(@fw >= 5, scalar(@fw) . ' logins of f wait');
ok($full && $full->is_refusal, 'a login that would take a reserved slot to wait is refused')
  or diag($full ? 'outcome: ' . $full->outcome . ' ' . $full->error_text : 'none refused');
like($full ? $full->error_text : '', qr/no free connection slots to wait in/,
	'the detail says there is no free connection slot to wait in');
# process slots in use: sessions and waiting logins (a waiting login is not
# in pg_stat_activity before 18); the refused login's process may still
# be exiting, so wait for the count to settle
my $free;
wait_for(
	sub {
		$free = $max_connections - $su->q1(
			q{SELECT count(*) FROM (SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'
			                         UNION SELECT pid FROM dbpool_guard.waiting_logins) x});
		return $free >= $reserved && $free <= $reserved + 1;
	},
	$TIMEOUT, 20);
ok($free >= $reserved && $free <= $reserved + 1,
	"the waiters filled the server up to the reserved slots ($free free, $reserved reserved)");
my @sus = DbpgWire::storm(
	[ map { { wire_params($node, user => $_ % 2 ? 'admin' : $su_name, application_name => 'f') } } 1 .. $reserved ],
	timeout => 30);
is(scalar(grep { $_->{ok} } @sus), $reserved,
	"all $reserved reserved slots are left to superusers: $reserved superuser logins at once");
is(waiting(), scalar(@fw), 'the waiters still wait');
$_->close for @sus, grep { defined } $full;
$_->close for @fw;
is($su->wait_q('SELECT count(*) FROM dbpool_guard.waiting_logins', '0'), '0', 'the waiters leave');
$_->close for @h;
is( $su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0 OR waiting_logins <> 0}, '0'),
	'0', 'all released, nobody waiting');
is($su->q1('SELECT borrowed, waiting_logins FROM dbpool_guard.pool'), '0|0', 'the pool is empty');

$su->close;
$node->stop;
done_testing();
