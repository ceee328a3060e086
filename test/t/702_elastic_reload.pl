# Elastic budgets (1.5), reloads: lowering the burst pool, a burst or a
# budget while slots are borrowed disconnects nobody; new borrowing stops
# until repayment brings the counts under the new limits, then resumes;
# raising them takes effect at the next login.  Every step is checked
# against a model of the rules (own slot below the cap, else a borrowed
# slot below the burst while the pool has one free, else refused; repay
# first), with the state of each service.  A backend uses the settings it
# was forked with: a login waiting under the old max_wait keeps waiting
# after a reload to 0, and lowering max_waiters ends no wait.
# budget_check() counts the pool and the waiters' bound.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;
use DbpgWire;
use DbpgElastic;
use Time::HiRes qw(time);

my $max_connections = 30;
my $node = guard_node('elastic_reload',
	max_connections => $max_connections,
	conf => "dbpool_guard.budgets = 'a=2+2\@1.0, b=2+2\@1.0'\n"
	  . "dbpool_guard.burst_pool = 3\n");

my $su = su_session($node);

# The model of the rules, with the sessions it describes.
my $model = DbpgElastic::Model->new($su, pool => 3,
	limits => { a => { budget => 2, burst => 2 }, b => { budget => 2, burst => 2 } });
my @services = $model->services;

# --- budget_check() counts the pool and the waiters' bound ----------------------------------

my $bc_sql = 'SELECT total_budget, burst_pool, waiters_bound, total, oversubscribed FROM dbpool_guard.budget_check()';
my $available = $su->q1('SELECT available FROM dbpool_guard.budget_check()');
is($available, $max_connections - $su->q1('SELECT reserved FROM dbpool_guard.budget_check()'),
	'budget_check(): available = max_connections - reserved');
is($su->q1($bc_sql), '4|3|0|7|f', 'budget_check(): budgets 4 + pool 3, no waiters (max_wait 0): total 7');
set_conf($node, 'dbpool_guard.max_wait' => '1000', 'dbpool_guard.max_waiters_total' => 5);
is($su->q1($bc_sql), '4|3|5|12|f', 'budget_check(): with max_wait > 0 the waiters\' bound (5) counts: total 12');
my $over = $available - 9 + 1;
my $offset = -s $node->logfile;
set_conf($node, 'dbpool_guard.burst_pool' => $over);
is($su->q1($bc_sql), "4|$over|5|" . ($available + 1) . '|t',
	"budget_check(): a pool of $over makes the total one more than the $available available: oversubscribed");
ok( DbpgTest::log_wait($node,
		qr/WARNING:  dbpool_guard: [^\n]*oversubscribed[^\n]*total @{[ $available + 1 ]}\b/, $offset),
	'the reload logs the oversubscription with the total counting the pool and the waiters');
set_conf($node, 'dbpool_guard.burst_pool' => $over - 1);
is($su->q1($bc_sql), '4|' . ($over - 1) . "|5|$available|f", 'budget_check(): a total equal to the available is not oversubscribed');
set_conf($node, 'dbpool_guard.max_wait' => '0');
is($su->q1($bc_sql), '4|' . ($over - 1) . '|0|' . ($available - 5) . '|f', 'budget_check(): max_wait 0: no waiters\' bound');
set_conf($node, 'dbpool_guard.burst_pool' => 3, 'dbpool_guard.max_waiters_total' => 10);
is($su->q1($bc_sql), '4|3|0|7|f', 'budget_check(): back to 7');

my $counts_sql = q{SELECT (SELECT string_agg(service || ':' || connections || ':' || borrowed || ':' || state, ' '
                                         ORDER BY service)
                             FROM dbpool_guard.status WHERE service IN ('a', 'b'))
                        || ' pool:' || (SELECT size || ':' || borrowed || ':' || free FROM dbpool_guard.pool)};

# What $counts_sql must give by the model: "service:connections:borrowed:state
# ... pool:size:borrowed:free".
sub model_text
{
	my $free = $model->pool_size - $model->pool_used;
	$free = 0 if $free < 0;
	return join(' ', map { "$_:" . $model->connections($_) . ':' . $model->borrowed($_) . ':' . $model->state($_) } @services)
	  . ' pool:' . $model->pool_size . ':' . $model->pool_used . ":$free";
}

sub login_step
{
	my ($s, $what) = @_;
	my ($want, $got) = $model->connect($s);
	my $ok = is($got, $want, "$what: login of \"$s\" " . ($want eq 'ok' ? 'admitted' : 'refused'));
	$ok = is($su->q1($counts_sql), model_text(), "$what: counts, states and the pool") && $ok;
	$model->sync unless $ok;
	return;
}

sub logout_step
{
	my ($s, $what) = @_;
	$model->disconnect($s);
	my $want = model_text();
	is($su->wait_q($counts_sql, $want), $want, "$what: \"$s\" closes a session; counts, states and the pool")
	  or $model->sync;
	return;
}

# A reload of the budgets and the pool size; the model follows.
sub reload_step
{
	my ($what, %new) = @_;
	my $pool = delete $new{pool};
	$model->set_pool($pool) if defined $pool;
	$model->set_limits(%new);
	my $budgets = join(', ', map { my $l = $model->limits($_); "$_=$l->{budget}+$l->{burst}\@1.0" } @services);
	set_conf($node, 'dbpool_guard.budgets' => $budgets, 'dbpool_guard.burst_pool' => $model->pool_size);
	is($su->q1($counts_sql), model_text(), "$what: counts unchanged, states and the pool under the new limits");
	is( $su->q1(q{SELECT string_agg(service || ':' || budget || ':' || burst, ' ' ORDER BY service)
	           FROM dbpool_guard.status WHERE service IN ('a', 'b')}),
		join(' ', map { my $l = $model->limits($_); "$_:$l->{budget}:$l->{burst}" } @services),
		"$what: status shows the new budgets and bursts");
	return;
}

# Nobody was disconnected: every held session answers a query.
sub all_alive
{
	my ($what) = @_;
	my @all = $model->sessions;
	my $alive = grep { (eval { $_->query('SELECT 1')->[0][0] } // '') eq '1' } @all;
	is($alive, scalar(@all), "$what: all " . scalar(@all) . ' sessions still work');
	return;
}

sub close_all
{
	my ($what) = @_;
	$model->close_all;
	my $want = model_text();
	is($su->wait_q($counts_sql, $want), $want, "$what: all released");
	return;
}

# --- lowering the pool while slots are borrowed ----------------------------------------------------

login_step('a', 'fill') for 1 .. 4;
login_step('b', 'fill') for 1 .. 3;
is($su->q1($counts_sql), 'a:4:2:rejecting b:3:1:rejecting pool:3:3:0', 'a borrows 2, b 1: the pool of 3 is used up');
reload_step('pool lowered to 1', pool => 1);
all_alive('pool lowered to 1');
login_step('b', 'pool 1, 3 borrowed: b may not borrow');
logout_step('a', 'a repays one: 2 borrowed');
login_step('b', 'pool 1, 2 borrowed: b still may not borrow');
logout_step('a', 'a repays the other: 1 borrowed');
login_step('b', 'pool 1, 1 borrowed: b still may not borrow');
logout_step('b', 'b repays: 0 borrowed');
login_step('b', 'pool 1, 0 borrowed: borrowing resumes');
login_step('a', 'pool 1 used up again');
reload_step('pool raised to 3', pool => 3);
login_step('a', 'pool 3: a borrows at once');
login_step('a', 'a borrows its second');
login_step('b', 'b: the pool is used up');
all_alive('pool raised');
close_all('pool');

# --- lowering a burst while slots are borrowed ---------------------------------------------------------

login_step('a', 'fill') for 1 .. 4;
login_step('b', 'fill') for 1 .. 2;
reload_step("a's burst lowered from 2 to 1", a => { budget => 2, burst => 1 });
all_alive("a's burst lowered");
login_step('a', "a borrows 2 of its new burst of 1: it may not borrow while the pool has a slot free");
logout_step('a', 'a repays one');
login_step('a', 'a borrows 1 of 1: still no');
logout_step('a', 'a repays the other');
login_step('a', 'a borrows nothing: borrowing resumes');
login_step('a', 'a is at its new burst');
reload_step("a's burst raised to 3", a => { budget => 2, burst => 3 });
login_step('a', 'a borrows at once under the raised burst');
login_step('a', 'a borrows its third: the pool is used up');
login_step('a', 'a: the pool is used up');
reload_step("a's burst lowered to 0 (a=2)", a => { budget => 2, burst => 0 });
all_alive("a's burst lowered to 0");
login_step('b', 'b: the pool is still used up by a');
logout_step('a', 'a repays one of its 3');
login_step('b', 'b borrows the repaid slot');
login_step('a', 'a has no burst any more');
close_all('burst');

# --- lowering a budget while slots are borrowed -------------------------------------------------------

reload_step('a=3+1', a => { budget => 3, burst => 1 });
login_step('a', 'fill') for 1 .. 4;
is($su->q1($counts_sql), 'a:4:1:rejecting b:0:0:ok pool:3:1:2', 'a holds 3 own and 1 borrowed');
reload_step("a's budget lowered from 3 to 1", a => { budget => 1, burst => 1 });
all_alive("a's budget lowered");
login_step('a', 'own 3 of the new cap 1, burst used: no');
logout_step('a', 'a repays its borrowed slot first');
login_step('a', 'own 3 of 1 but nothing borrowed: a may borrow');
login_step('a', 'burst used again: no');
logout_step('a', 'a leaves') for 1 .. 3;
is($su->q1($counts_sql), 'a:1:0:warning b:0:0:ok pool:3:0:3', 'a is back to its new cap');
login_step('a', 'a borrows beyond its new cap');
login_step('a', 'a at cap and burst');
reload_step("a's budget raised to 4", a => { budget => 4, burst => 1 });
login_step('a', "a's own slots under the raised budget") for 1 .. 3;
login_step('a', 'a at its raised cap and its burst');
all_alive("a's budget raised");
close_all('budget');

# --- a backend uses the settings it was forked with -----------------------------------------------------

reload_step('a=2, b=2+2', a => { budget => 2, burst => 0 });
set_conf($node, 'dbpool_guard.max_wait' => '30s', 'dbpool_guard.max_waiters' => 4);
my @h = map { wire_login($node, application_name => 'a') } 1 .. 2;
is(scalar(grep { $_->{ok} } @h), 2, 'a is at its cap (2)');

my $w = start_waiter($su, 'a');
ok(defined $w->{wpid} && !answered($w), 'max_wait 30 s: a login of a waits');
set_conf($node, 'dbpool_guard.max_wait' => '0');
my $n = wire_login($node, application_name => 'a');
ok($n->is_refusal, 'max_wait reloaded to 0: a new login is refused')
  or diag('outcome: ' . $n->outcome);
unlike($n->error_text, qr/waited/, '... at once');
ok(!answered($w), 'the login that waited before the reload still waits (its own max_wait)');
is($su->q1('SELECT count(*) FROM dbpool_guard.waiting_logins'), '1', 'waiting_logins: still 1');
$h[0]->close;
ok(admitted($w), 'a freed slot goes to it');

set_conf($node, 'dbpool_guard.max_wait' => '30s');
my @x = map { start_waiter($su, 'a') } 1 .. 2;
is(scalar(grep { defined $_->{wpid} && !answered($_) } @x), 2, 'two logins of a wait');
set_conf($node, 'dbpool_guard.max_waiters' => 1);
is($su->q1('SELECT count(*) FROM dbpool_guard.waiting_logins'), '2', 'max_waiters lowered to 1: both still wait');
$n = wire_login($node, application_name => 'a');
ok($n->is_refusal && $n->error_text =~ /logins are already waiting/,
	'max_waiters lowered to 1: a new login is refused at once, the queue being full')
  or diag('outcome: ' . $n->outcome . ' ' . $n->error_text);
ok(!answered($x[0]) && !answered($x[1]), 'the two waiters are not disturbed');
$w->close;
ok(admitted($x[0]), 'a freed slot goes to the first of them');
$h[1]->close;
ok(admitted($x[1]), 'the next to the second');
$_->close for @x;
is( $su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0 OR waiting_logins <> 0}, '0'),
	'0', 'all released, nobody waiting');
is($su->q1('SELECT borrowed, waiting_logins FROM dbpool_guard.pool'), '0|0', 'the pool is empty');

# --- limits raised while a login waits: younger logins are not held behind it ----------------------
#
# A waiting login keeps the limits it was forked with.  Once a reload
# raises them, a new login that may take a slot by its own limits is
# admitted at once, and the older waiter still gets the first slot within
# its own limits.

set_conf($node, 'dbpool_guard.max_wait' => '30s', 'dbpool_guard.max_waiters' => 4,
	'dbpool_guard.budgets' => 'a=2@1.0, b=2+2@1.0', 'dbpool_guard.burst_pool' => 3);
my @k = map { wire_login($node, application_name => 'a') } 1 .. 2;
is(scalar(grep { $_->{ok} } @k), 2, 'a=2: a at its cap again');
my $old = start_waiter($su, 'a');
ok(defined $old->{wpid} && !answered($old), 'a login of a waits under a=2');
set_conf($node, 'dbpool_guard.budgets' => 'a=4@1.0, b=2+2@1.0');
my $t0 = time();
my $y = wire_login($node, application_name => 'a');
my $took = time() - $t0;
ok($y->{ok}, 'a raised to 4: a new login of a is admitted by its own limits')
  or diag('outcome: ' . $y->outcome . ' ' . $y->error_text);
ok($took < 15, sprintf('... at once, not held behind the older waiter (%.2f s)', $took));
ok(!answered($old), 'the older waiter (cap 2) still waits: a holds 3');
$y->close;
$k[0]->close;
ok(admitted($old), 'a holds 1: the slot within its cap of 2 goes to the older waiter');
$_->close for ($old, $k[1]);

set_conf($node, 'dbpool_guard.budgets' => 'a=1+2@1.0, b=0+2@1.0', 'dbpool_guard.burst_pool' => 0);
my $ka = wire_login($node, application_name => 'a');
ok($ka->{ok}, 'a=1+2 with no pool: a takes its own slot');
my $wa = start_waiter($su, 'a');
ok(defined $wa->{wpid} && !answered($wa), 'the next login of a waits (its pool limit is 0)');
set_conf($node, 'dbpool_guard.burst_pool' => 5);
$t0 = time();
my $yb = wire_login($node, application_name => 'b');
$took = time() - $t0;
ok($yb->{ok}, 'burst_pool raised to 5: a login of b=0+2 borrows')
  or diag('outcome: ' . $yb->outcome . ' ' . $yb->error_text);
ok($took < 15, sprintf('... at once, not held behind the waiter that may not borrow (%.2f s)', $took));
is($su->q1('SELECT borrowed FROM dbpool_guard.pool'), '1', 'the pool lends 1');
ok(!answered($wa), 'the waiter of a, forked with no pool, still waits');
$ka->close;
ok(admitted($wa), "a's own slot goes to its waiter");
$_->close for ($wa, $yb);
is( $su->wait_q(q{SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0 OR borrowed <> 0 OR waiting_logins <> 0}, '0'),
	'0', 'all released again, nobody waiting');

$su->close;
$node->stop;
done_testing();
