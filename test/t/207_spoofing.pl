# Spoofing: application_name is chosen by the client.  A client that
# invents many distinct names (DBPG_SPOOF_NAMES, default 500 in the test
# command; test/run-long.sh runs 10 000) gets no more than the shared "*"
# budget, and cannot grow shared memory, the status view, the rejection
# log or the server log (one refusal line per second at most).
# Odd names (63+ bytes, empty, quotes, commas, = @, spaces, control and
# non-ASCII bytes, "*" itself), sent byte for byte as the startup
# parameter, are counted, limited and reported under the name that
# pg_stat_activity shows right after login.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use DbpgTest;
use DbpgWire;

my $star = 5;
my $node = guard_node('spoofing',
	max_connections => 80,
	conf => "dbpool_guard.budgets = 'real=3\@1.0, *=$star\@1.0'\n");

# Everything dbpool_guard keeps in shared memory, and all of it.
my $shmem_sql = q{
	SELECT (SELECT string_agg(name || '=' || allocated_size, ' ' ORDER BY name)
	          FROM pg_shmem_allocations WHERE name LIKE 'dbpool_guard%'),
	       (SELECT sum(allocated_size) FROM pg_shmem_allocations)};
my $shmem_before = scalar_q($node, $shmem_sql);
my $rows_before = scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status');
is($rows_before, '2', 'status has two rows: "real" and "*"');

# --- many invented names -------------------------------------------------------------

# Storms of 100 new names at a time; admitted sessions are kept open, so
# once "*" is full every further invented name must be refused.  The
# assertions are on what was done (counts), never on how fast.
my $names = $ENV{DBPG_SPOOF_NAMES} || 500;
die "DBPG_SPOOF_NAMES must be a number above $star" unless $names =~ /^\d+$/ && $names > $star;
my $batch = 100;
my $what = "$names invented names";
my (@held, $ok, $refused, %other);
($ok, $refused) = (0, 0);
my $offset = -s $node->logfile;
my $t0 = time();
for (my $i = 0; $i < $names; $i += $batch)
{
	my $n = $names - $i < $batch ? $names - $i : $batch;
	my $t = DbpgWire::tally(
		DbpgWire::storm(
			[ map { { wire_params($node, application_name => sprintf('spoof-%05d', $i + $_)) } }
				  0 .. $n - 1 ]));
	$ok += @{ $t->{ok} };
	push @held, @{ $t->{ok} };
	$refused += $t->{refused};
	$other{$_}++ for @{ $t->{other} };
}
my $t1 = time();
my $secs = $t1 - $t0;
note(sprintf('%s in %.1f s (%.0f logins/s)', $what, $secs, $names / $secs));

is($ok, $star, "$what: exactly the \"*\" budget ($star) got in");
is($refused, $names - $star, "$what: all others refused with our message");
is(join(', ', sort keys %other), '', "$what: no other outcome");
is(status_of($node, '*', 'connections, admitted_total, rejected_total, peak_connections'),
	"$star|$star|" . ($names - $star) . "|$star",
	'"*" counts them all, and never held more than its budget');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status'),
	$rows_before, 'the status view still has the same two rows');
is(scalar_q($node, "SELECT count(*) FROM dbpool_guard.status WHERE service LIKE 'spoof-%'"),
	'0', 'no invented name has a row');
is(scalar_q($node, $shmem_sql), $shmem_before,
	'shared memory: dbpool_guard allocations and the total are unchanged');
my $ring = $names - $star < 1000 ? $names - $star : 1000;
is( scalar_q(
		$node, "SELECT count(*), count(DISTINCT service), min(service) FROM dbpool_guard.rejections"),
	"$ring|1|*",
	"the rejection log holds the $ring newest refusals (at most 1000), all for the bucket \"*\"");
is(scalar_q($node, "SELECT count(*) FROM dbpool_guard.sessions WHERE service = '*'"),
	$star, 'the sessions view lists the admitted ones only');

# The limiter logs at most one refusal line per bucket and wall-clock
# second: all the refusals of the run lie between $t0 and $t1, so at most
# one line for each second from the one of $t0 to the one of $t1.
my $log = slurp_file($node->logfile, $offset);
my $spoof_refused = refusal_re(qr/spoof-.*/);
my $logged = count_lines($log, $spoof_refused);
my $spanned = seconds_spanned($t0, $t1);
ok($logged >= 1 && $logged <= $spanned,
	"the server log is not flooded: $logged refusal lines for "
	  . ($names - $star)
	  . " refusals over $spanned distinct seconds (at most one a second)");

# Once the clock has left the second of the last refusal, one more
# refusal is logged with the number of those that were not: lines plus
# the reported numbers add up to every refusal.
$node->poll_query_until('postgres',
	"SELECT date_trunc('second', clock_timestamp()) >
	        date_trunc('second', max(rejected_at)) FROM dbpool_guard.rejections")
  or die 'clock did not move';
my $last = wire_login($node, application_name => 'spoof-last');
ok($last->is_refusal, 'one more invented name is refused');
$log = slurp_file($node->logfile, $offset);
$logged = count_lines($log, $spoof_refused);
my $suppressed = 0;
$suppressed += $1 while $log =~ /(\d+) similar refusals were not logged in the last second/g;
is($logged + $suppressed, $names - $star + 1,
	"refusal lines ($logged) plus the refusals they report as not logged ($suppressed) add up to all "
	  . ($names - $star + 1));

$_->close for @held;
@held = ();
ok(wait_count($node, '*', 0), 'released');

# Churn: invented names that log in and out never hold more than "*".
($ok, $refused) = (0, 0);
for my $round (1 .. 20)
{
	my $t = DbpgWire::tally(
		DbpgWire::storm([ map { { wire_params($node, application_name => "churn-$round-$_") } } 1 .. 10 ]));
	$ok += @{ $t->{ok} };
	$refused += $t->{refused};
	$_->close for @{ $t->{ok} };
}
ok(wait_count($node, '*', 0), 'churn: every slot released');
is($ok + $refused, 200, 'churn: every login was admitted or refused by us');
ok( scalar_q($node, "SELECT peak_connections <= $star FROM dbpool_guard.status WHERE service = '*'")
	  eq 't',
	'churn: "*" never held more than its budget');
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status'),
	$rows_before, 'churn: still two rows');
is(scalar_q($node, $shmem_sql), $shmem_before, 'churn: shared memory unchanged');

# --- odd names, byte for byte -------------------------------------------------------

my @odd = (
	[ '63 bytes' => 'n' x 63 ],
	[ '64 bytes' => 'm' x 64 ],
	[ '200 bytes' => 'L' x 100 . 'R' x 100 ],
	[ 'double quotes' => 'say "hi"' ],
	[ 'a single quote' => "it's" ],
	[ 'commas' => 'a,b,,c' ],
	[ '= and @' => 'svc=1@0.5' ],
	[ 'spaces' => '  spaced  out ' ],
	[ 'a backslash' => 'back\\slash' ],
	[ 'a tab and a newline' => "tab\there\nnl" ],
	[ 'UTF-8' => "caf\xc3\xa9 \xe2\x82\xac" ],
	[ 'a Latin-1 byte' => "na\xefve" ],
	[ 'DEL and ESC' => "del\x7f esc\x1b" ],
	[ 'non-ASCII across the clip' => ('u' x 61) . "\xc3\xa9\xc3\xa9" ],
	[ 'a lone *' => '*' ],);

# What pg_stat_activity shows for a session logged in with these bytes.
sub shown_name
{
	my ($raw) = @_;
	my $c = wire_login($node, application_name => $raw);
	die "login failed: $c->{error}{M}" unless $c->{ok};
	my $rows = $c->query(
		'SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()');
	my $service =
	  scalar_q($node, "SELECT service FROM dbpool_guard.sessions WHERE pid = $c->{pid}");
	$c->close;
	return ($rows->[0][0], $service);
}

# First without a "*" budget, so that every name gets in: learn the
# shown names; unlisted, they are all counted in "*".
set_conf($node, 'dbpool_guard.budgets' => 'real=3@1.0');
my %shown;
for my $o (@odd)
{
	my ($what, $raw) = @$o;
	my ($name, $service) = shown_name($raw);
	$shown{$what} = $name;
	note("$what: pg_stat_activity shows '$name'");
	ok(length($name) <= 63 && $name !~ /[^\x20-\x7e]/,
		"$what: pg_stat_activity shows 1..63 printable ASCII bytes");
	is($service, '*', "$what: unlisted, it is counted in \"*\"");
}
is($shown{'200 bytes'}, 'L' x 63, '200 bytes: clipped to the first 63');
is($shown{'64 bytes'}, 'm' x 63, '64 bytes: clipped to 63');
is($shown{'double quotes'}, 'say "hi"', 'quotes are kept');
is($shown{'commas'}, 'a,b,,c', 'commas are kept');

# List every shown name with a budget of 1 (quoted, quotes doubled):
# each is then counted in its own row and limited there.
my $list = join(', ',
	'real=3@1.0',
	map { (my $q = $shown{$_}) =~ s/"/""/g; "\"$q\"=1\@1.0" }
	grep { $shown{$_} ne '*' } map { $_->[0] } @odd);
set_conf($node, 'dbpool_guard.budgets' => "$list, *=1\@1.0");
is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status'),
	scalar(@odd) - 1 + 2, 'every odd name that is not "*" has its row');

for my $o (@odd)
{
	my ($what, $raw) = @$o;
	my $name = $shown{$what};
	my $bucket = $name eq '*' ? '*' : $name;
	my $first = wire_login($node, application_name => $raw);
	ok($first->{ok}, "$what: the first login gets in");
	next unless $first->{ok};
	my $rows = $first->query(
		'SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()');
	is($rows->[0][0], $name, "$what: pg_stat_activity shows the same name again");
	is(scalar_q($node, "SELECT service FROM dbpool_guard.sessions WHERE pid = $first->{pid}"),
		$bucket, "$what: the sessions view puts it in the row of that name");
	is(status_of($node, $bucket, 'connections'), '1', "$what: that row holds 1");

	my $second = wire_login($node, application_name => $raw);
	ok($second->is_refusal, "$what: the second login is refused by us");
	is($second->refused_service, $name,
		"$what: the refusal names the service as pg_stat_activity shows it");
	is( scalar_q(
			$node, "SELECT service FROM dbpool_guard.rejections ORDER BY rejected_at DESC LIMIT 1"),
		$bucket,
		"$what: the rejections view has the row's name");
	$second->close;
	$first->close;
	ok(wait_count($node, $bucket, 0), "$what: released");
}

# Two different long names with the same first 63 bytes share a row.
my $a1 = wire_login($node, application_name => ('L' x 100) . 'first');
my $a2 = wire_login($node, application_name => ('L' x 100) . 'second');
ok($a1->{ok} && $a2->is_refusal,
	'names equal in their first 63 bytes share one row and one budget');
$a1->close;

# The empty name: counted in "*", refused there under the name "".
my $e1 = wire_login($node, application_name => '');
my $e2 = wire_login($node, application_name => '');
my $n1 = wire_login($node);    # no application_name at all
ok($e1->{ok}, 'empty name: admitted in "*"');
is($e2->refused_service, '', 'empty name: the refusal names service ""');
is($n1->refused_service, '', 'absent application_name: counted in "*" as ""');
like($e2->{error}{D}, qr/counted in the shared budget "\*"/,
	'empty name: the detail says it is counted in "*"');
$e1->close;
ok(wait_count($node, '*', 0), 'released');

is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0'),
	'0', 'every bucket is back to 0');
is(scalar_q($node, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"),
	'0', 'no session is left');

$node->stop;
done_testing();
