# Elastic budgets (1.5), borrowing: "name=budget+burst" entries and the
# server-wide dbpool_guard.burst_pool.  A login of S takes an own slot
# while S's own slots in use (connections - borrowed) are below its cap,
# else a borrowed slot while S borrows fewer than its burst and the pool
# has a free slot, else it is refused (max_wait is 0 here: waiting is
# 701_wait.pl, reloads are 702_elastic_reload.pl).
#
# Sequential logins are checked step by step against a model of these
# rules (counts, borrowed slots, the pool, the state of every service):
# own slots first, borrowing up to the burst, the pool shared and never
# exceeded, 0+N (borrowing only), budget 0, and repay-first (closing an
# own session of a service that holds borrowed slots gives the pool one
# back).  Storms of logins of several services at once: each service
# within its cap and burst, the pool exactly used up and never over, no
# refusal while a slot the login may take was free (the admitted counts
# are exact).  A background load of logins and logouts: the limits hold
# at every sample, and every borrowed slot comes back exactly once (the
# next storm gets exactly the same slots).  monitor mode applies the same
# rules, admits everyone, counts what it would have refused, and never
# waits.

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

# Thresholds are 1.0, so a cap is the budget.  z is 0+N: it may only
# borrow; zero may not connect.
my %limits = (
	a => { budget => 3, burst => 2 },
	b => { budget => 3, burst => 2 },
	c => { budget => 2, burst => 0 },
	z => { budget => 0, burst => 2 },
	zero => { budget => 0, burst => 0 },);
my $pool_size = 3;
my $budgets = 'a=3+2@1.0, b=3+2@1.0, c=2@1.0, z=0+2@1.0, zero=0';

# a storm of 36 and the held sessions fit well below max_connections
my $node = guard_node('burst',
	max_connections => 60,
	conf => "dbpool_guard.budgets = '$budgets'\n"
	  . "dbpool_guard.burst_pool = $pool_size\n");
my $TIMEOUT = $DbpgTest::TIMEOUT;

# The bootstrap superuser, over the raw protocol, for every query of the
# test: never counted, and no client process per poll.
my $su = su_session($node);

# The model of the rules, with the sessions it describes.
my $model = DbpgElastic::Model->new($su, pool => $pool_size, limits => \%limits);
my @services = $model->services;
my $in_list = $model->in_list;

my $counts_sql = qq{SELECT (SELECT string_agg(service || ':' || connections || ':' || borrowed, ' '
                                          ORDER BY service COLLATE "C")
                              FROM dbpool_guard.status WHERE service IN ($in_list))
                         || ' pool:' || (SELECT borrowed FROM dbpool_guard.pool)};
my $states_sql = qq{SELECT string_agg(service || ':' || state, ' ' ORDER BY service COLLATE "C")
                      FROM dbpool_guard.status WHERE service IN ($in_list)};

# One login of $s: its outcome is the model's, and so are the counts and
# states of every service afterwards (the login was answered after its
# slot was taken: nothing to wait for).
sub login_step
{
	my ($s, $what) = @_;
	my ($want, $got, $c) = $model->connect($s);
	my $ok = is($got, $want, "$what: login of \"$s\" is " . ($want eq 'ok' ? 'admitted' : 'refused'));
	if ($want eq 'refused' && $c->is_refusal)
	{
		is($c->refused_service, $s, "$what: the refusal names \"$s\"");
	}
	my $counts = $model->counts;
	$ok = is($su->q1($counts_sql), $counts, "$what: connections:borrowed of every service, pool") && $ok;
	$ok = is($su->q1($states_sql), $model->states, "$what: the state of every service") && $ok;
	$model->sync unless $ok;
	return $c;
}

# The oldest session of $s ends: once its slot is back, the counts and
# states are the model's.
sub logout_step
{
	my ($s, $what) = @_;
	$model->disconnect($s);
	my $counts = $model->counts;
	my $ok = is($su->wait_q($counts_sql, $counts), $counts,
		"$what: \"$s\" closes its oldest session; connections:borrowed, pool");
	$ok = is($su->q1($states_sql), $model->states, "$what: the state of every service") && $ok;
	$model->sync unless $ok;
	return;
}

# --- the configuration as the views show it ----------------------------------------

is( $su->q1(qq{SELECT string_agg(service || ':' || budget || ':' || cap || ':' || burst || ':' || borrowed, ' '
                              ORDER BY service COLLATE "C")
            FROM dbpool_guard.status WHERE service IN ($in_list)}),
	'a:3:3:2:0 b:3:3:2:0 c:2:2:0:0 z:0:0:2:0 zero:0:0:0:0',
	'status: budget, cap, burst (0 when not given) and borrowed of each service');
is($su->q1('SELECT size, borrowed, free, waiting_logins FROM dbpool_guard.pool'),
	'3|0|3|0', 'pool: size 3, nothing borrowed, 3 free, nobody waiting');
is($su->q1('SHOW dbpool_guard.budgets'), $budgets, 'the budgets as configured');
is($su->q1(qq{SELECT string_agg(service || ':' || coalesce(utilization::text, 'NULL'), ' ' ORDER BY service COLLATE "C")
           FROM dbpool_guard.status WHERE service IN ('z', 'zero')}),
	'z:NULL zero:NULL', 'utilization is NULL for a budget of 0, with or without a burst');

# --- sequential logins, step by step against the model --------------------------------

login_step('a', "a own 1 of 3");
login_step('a', "a own 2 of 3");
login_step('a', "a own 3 of 3");
login_step('a', "a borrows 1 of its burst 2");
is($su->q1(q{SELECT round(utilization::numeric, 4) FROM dbpool_guard.status WHERE service = 'a'}),
	'1.3333', 'utilization is connections / budget, above 1 while borrowing');
login_step('a', "a borrows 2 of its burst 2");
login_step('a', "a's burst is used up while the pool has a free slot");
login_step('c', "c own 1 of 2");
login_step('c', "c own 2 of 2");
login_step('c', "c has no burst: refused while the pool has a free slot");
login_step('zero', "budget 0 without a burst");
login_step('z', "0+2: z borrows its first slot (it has no own slot)");
login_step('z', "0+2: the pool is full");
login_step('b', "b own 1 of 3, the pool full");
login_step('b', "b own 2 of 3");
login_step('b', "b own 3 of 3: own slots never need the pool");
login_step('b', "b has an unused burst, but the pool is full");
is($su->q1('SELECT size, borrowed, free FROM dbpool_guard.pool'), '3|3|0',
	'pool: 3 of 3 borrowed (a 2, z 1), none free');
is( $su->q1(q{SELECT h->'pool'->>'size', h->'pool'->>'borrowed', h->'pool'->>'waiting_logins'
           FROM dbpool_guard.health() h}),
	'3|3|0',
	'health(): the pool with its size, borrowed slots and waiting logins');
is( $su->q1(q{SELECT s->>'burst', s->>'borrowed', s->>'waiting_logins'
           FROM jsonb_array_elements(dbpool_guard.health()->'services') s
          WHERE s->>'name' = 'a'}),
	'2|2|0',
	'health(): a service with its burst, borrowed slots and waiting logins');
is( $su->q1(q{SELECT count(*) FROM dbpool_guard.sessions WHERE service IN ('a', 'b', 'c', 'z')}),
	'11', 'sessions: the 11 admitted sessions (a 5, b 3, c 2, z 1), own and borrowed');

# Repay first: a's oldest session holds an own slot, but a holds borrowed
# slots, so the pool gets one back.  Without repayment a would have an own
# slot free (2 of 3) and the pool none.
logout_step('a', "repay first");
login_step('b', "repay first: the slot a gave back to the pool is lent to b");
login_step('a', "repay first: a has no own slot free (3 of 3 own) and the pool is full");
logout_step('z', "z leaves: the pool gets its slot back");
login_step('z', "0+2: z borrows again");
logout_step('b', "b's own session ends: b repays its borrowed slot");
login_step('a', "a borrows the repaid slot");
login_step('a', "a's burst is used up again");

# every borrowed slot goes back exactly once
for my $s (@services)
{
	logout_step($s, "everyone leaves") while $model->sessions($s);
}
is($su->q1('SELECT size, borrowed, free FROM dbpool_guard.pool'), '3|0|3',
	'pool: every borrowed slot is back, once');
is( $su->q1(qq{SELECT coalesce(string_agg(service || ':' || connections || ':' || borrowed, ' ' ORDER BY service COLLATE "C"), '')
            FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0}),
	'', 'status: no connection and no borrowed slot left anywhere');

# --- storms: every service at once ---------------------------------------------------------

# $n{service} logins of each, interleaved, sent back to back.  Admitted
# sessions stay open until the end of the round, so the final counts are
# the peak.  Expected: c exactly its cap (no burst); a and b their 3 own
# slots; the pool used up exactly: a, b and z together borrow exactly the
# pool's $pool_size (each wants more than the pool can give, so a pool
# slot left free would mean a login refused while it could have taken
# it), each within its burst.
sub storm_round
{
	my ($what, $enforce, %n) = @_;
	my $pool = $model->pool_size;
	my @apps;
	my $max = 0;
	$max = $_ > $max ? $_ : $max for values %n;
	for my $i (0 .. $max - 1)
	{
		push @apps, grep { $i < $n{$_} } sort keys %n;
	}
	my $before = $su->q1(qq{SELECT string_agg(service || ':' || rejected_total || ':' || would_reject_total, ' '
	                                     ORDER BY service COLLATE "C")
	                     FROM dbpool_guard.status WHERE service IN ($in_list)});
	my %before = map { my ($s, $r, $w) = split /:/; ($s => [ $r, $w ]) } split / /, $before;

	my @c = DbpgWire::storm([ map { { wire_params($node, application_name => $_) } } @apps ]);
	my (%ok, %refused, @other);
	for my $i (0 .. $#c)
	{
		my $s = $apps[$i];
		if ($c[$i]{ok}) { $ok{$s}++; $model->hold($s, $c[$i]); }
		elsif ($c[$i]->is_refusal && $c[$i]->refused_service eq $s) { $refused{$s}++; }
		else { push @other, "$s: " . $c[$i]->outcome . ' ' . ($c[$i]{error}{M} // ''); }
	}
	$ok{$_} //= 0 for keys %n;
	$refused{$_} //= 0 for keys %n;
	note("$what: admitted " . join(' ', map { "$_=$ok{$_}" } sort keys %n));
	is(join('; ', @other), '', "$what: every login admitted or refused by us for its own service");

	my %admit;    # what each may have been admitted in enforce mode
	my $borrowed = 0;
	my $status = $su->q1(qq{SELECT string_agg(service || ':' || connections || ':' || borrowed || ':' ||
	                                     rejected_total || ':' || would_reject_total, ' ' ORDER BY service COLLATE "C")
	                     FROM dbpool_guard.status WHERE service IN ($in_list)});
	my %st = map { my ($s, @v) = split /:/; ($s => \@v) } split / /, $status;
	for my $s (sort keys %n)
	{
		my $l = $model->limits($s);
		my ($conn, $b, $rej, $would) = @{ $st{$s} };
		$borrowed += $b;
		if ($enforce)
		{
			is($conn, $ok{$s}, "$what: \"$s\" counts its $ok{$s} admitted sessions");
			ok( $ok{$s} >= $l->{budget} && $ok{$s} <= $l->{budget} + $l->{burst},
				"$what: \"$s\" got its $l->{budget} own slots and at most its burst of $l->{burst} more ($ok{$s})");
			is($b, $ok{$s} - $l->{budget}, "$what: \"$s\" borrowed the slots beyond its own");
			is($rej - $before{$s}[0], $n{$s} - $ok{$s}, "$what: \"$s\": rejected_total counts the refused");
		}
		else
		{
			is($ok{$s}, $n{$s}, "$what: every login of \"$s\" admitted");
			ok( $b <= $l->{burst} && $conn - $b >= $l->{budget},
				"$what: \"$s\" borrowed within its burst ($b of $l->{burst}) after its own slots");
			$admit{$s} = $n{$s} - ($would - $before{$s}[1]);
			is($admit{$s}, $l->{budget} + $b,
				"$what: \"$s\": would_reject_total counts all but the $l->{budget} own and $b borrowed");
		}
	}
	is($borrowed, $pool, "$what: the services borrowed exactly the pool's $pool slots together");
	is($su->q1('SELECT borrowed, free FROM dbpool_guard.pool'), "$pool|0",
		"$what: the pool view agrees: $pool borrowed, none free");

	$model->close_all;
	is($su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0}, '0'),
		'0', "$what: all released");
	is($su->q1('SELECT borrowed, free FROM dbpool_guard.pool'), "0|$pool",
		"$what: the pool has every slot back");
	return;
}

my %storm = (a => 12, b => 12, c => 6, z => 6);
storm_round('storm 1', 1, %storm);
storm_round('storm 2', 1, %storm);

# --- a background load: the limits hold at every sample, every slot comes back ----------------

my $totals_sql = qq{SELECT sum(admitted_total) || '|' || sum(rejected_total)
                      FROM dbpool_guard.status WHERE service IN ($in_list)};
my ($adm0, $rej0) = split /\|/, $su->q1($totals_sql);
my $loader = DbpgWire::loader(
	login => { wire_params($node) },
	apps => [qw(a b c z)],
	batch => 10,
	hold_ms => 60);
my @violations;
my $samples = 0;
my $max_lent = 0;
wait_for(
	sub {
		my $v = $su->q1(
			qq{SELECT coalesce(string_agg(service || ':' || connections || ':' || borrowed, ' '), '')
			     FROM dbpool_guard.status
			    WHERE service IN ($in_list)
			      AND (connections - borrowed > cap OR borrowed > burst OR borrowed < 0 OR borrowed > connections)});
		push @violations, "services $v" if $v ne '';
		my ($lent, $size) = split /\|/, $su->q1('SELECT borrowed, size FROM dbpool_guard.pool');
		push @violations, "pool borrowed $lent" if $lent > $size || $lent < 0;
		$max_lent = $lent if $lent > $max_lent;
		$samples++;
		my ($adm, $rej) = split /\|/, $su->q1($totals_sql);
		return $adm + $rej - $adm0 - $rej0 >= 400;
	},
	$TIMEOUT, 5);
my $tally = $loader->stop;
note("load: $samples samples, at most $max_lent pool slots lent at once; " . join(' ', map { "$_=$tally->{$_}" } sort keys %$tally));
is(join('; ', @violations), '',
	"load: at every sample ($samples), own slots within the cap, borrowed within the burst, pool within its size");
is( join(' ', map { "$_=$tally->{$_}" } grep { $_ ne 'ok' && $_ ne 'refused' } sort keys %$tally),
	'', 'load: every login admitted or refused by us');
ok(($tally->{ok} // 0) > 0 && ($tally->{refused} // 0) > 0, 'load: some logins admitted, some refused');
is($su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0}, '0'),
	'0', 'load: every slot is back afterwards');
is($su->q1('SELECT borrowed, free FROM dbpool_guard.pool'), "0|$pool_size",
	'load: every borrowed slot came back to the pool');
my ($adm1, $rej1) = split /\|/, $su->q1($totals_sql);
is(($adm1 - $adm0) . '|' . ($rej1 - $rej0), ($tally->{ok} // 0) . '|' . ($tally->{refused} // 0),
	'load: admitted_total and rejected_total count exactly what the clients saw');

# exactly once: a slot given back twice would let the next storm borrow
# more than the pool, one never given back would let it borrow less
storm_round('storm after the load', 1, %storm);

# --- the bursts bind, not the pool ---------------------------------------------------------------

set_conf($node, 'dbpool_guard.burst_pool' => 10);
$model->set_pool(10);
is($su->q1('SELECT size, borrowed, free FROM dbpool_guard.pool'), '10|0|10', 'pool of 10');
my @apps = map { ('a', 'b', 'z', 'c', 'a', 'b') } 1 .. 6;
my @c = DbpgWire::storm([ map { { wire_params($node, application_name => $_) } } @apps ]);
my %ok;
$ok{ $apps[$_] } += $c[$_]{ok} ? 1 : 0 for 0 .. $#c;
is(join(' ', map { "$_:$ok{$_}" } sort keys %ok), 'a:5 b:5 c:2 z:2',
	'a storm with a large pool: each service gets exactly its own slots plus its burst');
is(scalar(grep { !$_->{ok} && !$_->is_refusal } @c), 0, 'the others were refused by us');
is($su->q1('SELECT borrowed, free FROM dbpool_guard.pool'), '6|4',
	'the pool lent exactly the sum of the bursts (2 + 2 + 2), 4 stay free');
is($su->q1($counts_sql), 'a:5:2 b:5:2 c:2:0 z:2:2 zero:0:0 pool:6', 'every service at its cap plus its burst');
$_->close for @c;
is($su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0}, '0'),
	'0', 'released');
set_conf($node, 'dbpool_guard.burst_pool' => 3);
$model->set_pool(3);

# --- monitor mode: the same rules, everyone admitted, nobody waits ------------------------------------

# max_wait is long: a login that waited would be seen
set_conf($node, 'dbpool_guard.mode' => 'monitor', 'dbpool_guard.max_wait' => '30s');
my $would_sql = qq{SELECT string_agg(service || ':' || would_reject_total, ' ' ORDER BY service COLLATE "C")
                     FROM dbpool_guard.status WHERE service IN ('a', 'b', 'z')};
my $rej_rows = $su->q1('SELECT count(*) FROM dbpool_guard.rejections WHERE NOT enforced');
my %w0 = map { split /:/ } split / /, $su->q1($would_sql);
my @m;
my $slowest = 0;
for my $s (qw(a a a a a a b b b b b z))
{
	my $c = wire_login($node, application_name => $s);
	push @m, $c;
	$slowest = $c->{login_seconds} if $c->{ok} && $c->{login_seconds} > $slowest;
}
is(scalar(grep { $_->{ok} } @m), 12, 'monitor: all 12 logins admitted (a 6, b 5, z 1)');
ok($slowest < 15, "monitor: no login waited for max_wait (30 s); the slowest took $slowest s");
# a: 3 own, 2 borrowed, 1 over; b: 3 own, 1 borrowed (pool full), 1 over;
# z: pool full, over
is($su->q1(q{SELECT string_agg(service || ':' || connections || ':' || borrowed, ' ' ORDER BY service COLLATE "C")
          FROM dbpool_guard.status WHERE service IN ('a', 'b', 'z')}),
	'a:6:2 b:5:1 z:1:0',
	'monitor: borrowed within each burst and the pool, the logins beyond counted as connections');
is($su->q1('SELECT borrowed, free FROM dbpool_guard.pool'), '3|0', 'monitor: the pool never over its size');
my %w1 = map { split /:/ } split / /, $su->q1($would_sql);
is(join(' ', map { "$_:" . ($w1{$_} - $w0{$_}) } qw(a b z)), 'a:1 b:1 z:1',
	'monitor: would_reject_total counts the logins the rules would have refused');
is($su->q1('SELECT count(*) FROM dbpool_guard.rejections WHERE NOT enforced') - $rej_rows,
	3, 'monitor: 3 rows in rejections, enforced = false');
is( $su->q1(q{SELECT sum(waiting_logins) || '|' || sum(waited_total) || '|' || sum(wait_timeouts_total)
           FROM dbpool_guard.status}),
	'0|0|0', 'monitor: nobody waits, waited or timed out');
is($su->q1('SELECT count(*) FROM dbpool_guard.waiting_logins'), '0', 'monitor: no waiting login');
$_->close for @m;
is($su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0}, '0'),
	'0', 'monitor: released');
is($su->q1('SELECT borrowed FROM dbpool_guard.pool'), '0', 'monitor: the pool has its slots back');

storm_round('monitor storm', 0, %storm);
is($su->q1('SELECT sum(waited_total) + sum(wait_timeouts_total) FROM dbpool_guard.status'),
	'0', 'monitor storm: nobody waited');

# --- a service that can never get a slot does not wait -----------------------------------------------

set_conf($node, 'dbpool_guard.mode' => 'enforce', 'dbpool_guard.max_wait' => '30s');
my $t0 = time();
my $zc = wire_login($node, application_name => 'zero');
my $took = time() - $t0;
ok($zc->is_refusal, 'max_wait 30 s: a login of "zero" (budget 0) is refused');
ok($took < 15, sprintf('... at once, without waiting for max_wait (%.2f s)', $took));
like($zc->{error}{D} // '', qr/has a budget of 0 connections: it may not connect/,
	'... as a service that may not connect');
is( $su->q1(q{SELECT reason FROM dbpool_guard.rejections WHERE service = 'zero'
          ORDER BY rejected_at DESC LIMIT 1}),
	'over_cap', '... reason over_cap, not wait_timeout');
set_conf($node, 'dbpool_guard.burst_pool' => 0);
$t0 = time();
my $zc2 = wire_login($node, application_name => 'z');
$took = time() - $t0;
ok($zc2->is_refusal, '0+2 without a burst pool: refused');
ok($took < 15, sprintf('... at once, without waiting for max_wait (%.2f s)', $took));
set_conf($node, 'dbpool_guard.burst_pool' => 3);

set_conf($node, 'dbpool_guard.max_wait' => '0');
storm_round('enforce again', 1, %storm);

$su->close;
$node->stop;
done_testing();
