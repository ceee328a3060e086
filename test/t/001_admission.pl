# Admission at login: exact caps under a login storm, our refusal as the
# client and the server log see it, cap arithmetic, budget 0, and the
# shared "*" bucket of unlisted services.

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $name63 = 'x' x 63;
my $budgets =
  "storm=12\@0.8, b12=12, b20=20, half=1\@0.5, b100=100\@0.07, zero=0, "
  . "$name63=1\@1.0, *=3\@1.0";

# 60 storm clients + 10 sequential sessions + the harness's own
my $node = guard_node('admission',
	max_connections => 120,
	conf => "dbpool_guard.budgets = '$budgets'\n");

my $hint =
  qq{HINT:  Retry with backoff. Size the service's pool below its cap, or raise its budget in "dbpool_guard.budgets".};

# --- cap arithmetic, shown in the status view ---------------------------

is( scalar_q(
		$node, "SELECT string_agg(service || ':' || budget || ':' || cap, ' ' ORDER BY service)
		  FROM dbpool_guard.status WHERE service IN ('b12', 'b20', 'half', 'b100', 'zero', 'storm')"
	),
	'b100:100:7 b12:12:11 b20:20:17 half:1:1 storm:12:10 zero:0:0',
	'caps: 12@0.85 -> 11, 20@0.85 -> 17, 1@0.5 -> 1, 100@0.07 -> 7, 12@0.8 -> 10, 0 -> 0'
);
is(status_of($node, 'b12', 'threshold'),
	'0.85', 'an entry without @threshold uses dbpool_guard.threshold');
is(status_of($node, '*', 'budget || \':\' || cap'),
	'3:3', 'the "*" entry has its own row');

# --- a login storm: exactly cap admitted, the rest refused by us -----------

# The admitted clients wait for a shared advisory lock that the gate
# session holds exclusively, so they keep their slot until we let go.
my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(4242)');

my $log_offset = -s $node->logfile;
my $storm = storm(
	$node,
	clients => 60,
	app => 'storm',
	sql => 'SELECT pg_advisory_lock_shared(4242)',
	held_sql => "SELECT count(*) FROM pg_stat_activity
	             WHERE application_name = 'storm' AND wait_event_type = 'Lock'");

is($storm->{holding}, 10, 'storm: exactly cap (10) of 60 clients admitted');
is($storm->{exited_early}, 50, 'storm: the other 50 clients were refused');
is( scalar(grep { $_ =~ refusal_re('storm') }
		  @{ $storm->{refused} }),
	50,
	'storm: every refused client got our message');
is( scalar(
		grep {
			/DETAIL:  Service "storm" holds 10 of its budget of 12 connections \(83%\); new sessions are refused from 10 connections \(threshold 80%\)\.\n/
		} @{ $storm->{refused} }),
	50,
	'storm: every refused client got the detail (holds, budget, utilization, threshold)'
);
is(scalar(grep { index($_, $hint) >= 0 } @{ $storm->{refused} }),
	50, 'storm: every refused client got the hint to back off');
is(status_of($node, 'storm', 'connections, admitted_total, rejected_total, state'),
	'10|10|50|rejecting', 'storm: status counts 10 admitted, 50 rejected');
is( scalar_q(
		$node, "SELECT round(utilization::numeric, 4) FROM dbpool_guard.status WHERE service = 'storm'"
	),
	'0.8333',
	'storm: utilization is connections / budget');
is( scalar_q(
		$node, "SELECT count(*), bool_and(enforced), min(connections), max(connections),
		               min(budget), max(user_name), max(database_name)
		          FROM dbpool_guard.rejections WHERE service = 'storm'"
	),
	'50|t|10|10|12|app|postgres',
	'storm: 50 rows in dbpool_guard.rejections');

is( scalar_q(
		$node, "SELECT bool_and(ordered) FROM (
		          SELECT rejected_at >= lead(rejected_at) OVER () OR lead(rejected_at) OVER () IS NULL AS ordered
		            FROM dbpool_guard.rejections) r"),
	't',
	'rejections: newest first');
is( scalar_q(
		$node, "SELECT s.last_rejected_at = (SELECT max(rejected_at) FROM dbpool_guard.rejections)
		          FROM dbpool_guard.status s WHERE s.service = 'storm'"),
	't',
	'storm: last_rejected_at is the time of the last refusal');

# The SQLSTATE: 53300 in the log line's %e, with user, database, address.
my $storm_refused = refusal_re('storm');
my $log = slurp_file($node->logfile, $log_offset);
my $logged = count_lines($log, qr/ 53300 $storm_refused/);
ok($logged >= 1, 'storm: the server log has our FATAL with SQLSTATE 53300');
like(
	$log,
	qr/ 53300 DETAIL:  Refused role "app" on database "postgres" from \S+/,
	'storm: the log line names the role, the database and the client address');
# at most one line per wall-clock second touched by the storm
my $spanned = seconds_spanned($storm->{t0}, $storm->{t1});
ok( $logged <= $spanned,
	"storm: refusal log lines are rate-limited ($logged lines for 50 refusals over "
	  . "$spanned distinct seconds, at most one a second)");

# After the second of the last logged refusal, one more refusal is logged
# with the number of refusals that were not: the totals must add up.
$node->poll_query_until('postgres',
	"SELECT date_trunc('second', clock_timestamp()) >
	        date_trunc('second', max(rejected_at)) FROM dbpool_guard.rejections"
) or die 'clock did not move';
my ($err, $raw_err);
(undef, $raw_err) = raw_login($node,
	user => 'app',
	database => 'postgres',
	application_name => 'storm');
is($raw_err, 'FATAL:  53300: too many connections for service "storm"',
	'a login after the storm is refused: the client receives SQLSTATE 53300');
$log = slurp_file($node->logfile, $log_offset);
$logged = count_lines($log, qr/ 53300 $storm_refused/);
my $suppressed = 0;
$suppressed += $1
  while $log =~ /(\d+) similar refusals were not logged in the last second/g;
is($logged + $suppressed, 51,
	'logged refusals plus reported suppressed ones add up to all 51');

$gate->query_safe('SELECT pg_advisory_unlock(4242)');
is($storm->{finish}->(), 10, 'storm: the 10 admitted clients ran their query');
ok(wait_count($node, 'storm', 0), 'storm: every slot released afterwards');
$gate->quit;

# --- sequentially: no login refused while a slot is free ------------------

my @held;
for my $i (1 .. 10)
{
	push @held, eval { hold($node, 'storm') };
}
is(scalar(grep { defined } @held), 10, 'ten sequential logins fill the cap of 10');
is(status_of($node, 'storm', 'connections'), '10', 'the bucket holds 10');
like(hold_fails($node, app => 'storm'),
	refusal_re('storm'), 'the eleventh is refused');
quit_all(pop @held);
ok(wait_count($node, 'storm', 9), 'one session leaves');
ok(defined(eval { push @held, hold($node, 'storm'); 1 }),
	'the freed slot is taken by the next login');
quit_all(@held);
@held = ();
ok(wait_count($node, 'storm', 0), 'all released');

# --- B=1, T=0.5 gives a cap of 1, not 0 -------------------------------------

my $h = hold($node, 'half');
is(status_of($node, 'half', 'connections, state'),
	'1|rejecting', 'half: the first session is admitted');
$err = hold_fails($node, app => 'half');
like($err, refusal_re('half'),
	'half: the second is refused');
like(
	$err,
	qr/DETAIL:  Service "half" holds 1 of its budget of 1 connections \(100%\); new sessions are refused from 1 connections \(threshold 50%\)\./,
	'half: the detail shows 100% used, threshold 50%');
quit_all($h);
ok(wait_count($node, 'half', 0), 'half: released');

# --- budget 0 refuses at once ----------------------------------------------

$log_offset = -s $node->logfile;
$err = hold_fails($node, app => 'zero');
like($err, refusal_re('zero'),
	'zero: the first login is refused');
like($err, qr/DETAIL:  .*"zero".*budget of 0/, 'zero: the detail says the budget is 0');
(undef, $raw_err) = raw_login($node,
	user => 'app',
	database => 'postgres',
	application_name => 'zero');
is($raw_err, 'FATAL:  53300: too many connections for service "zero"',
	'zero: the client receives SQLSTATE 53300');
my $zero_refused = refusal_re('zero');
ok( $node->log_contains(qr/ 53300 $zero_refused/, $log_offset),
	'zero: SQLSTATE 53300 in the log');
is( status_of(
		$node, 'zero',
		"connections, cap, coalesce(utilization::text, 'NULL'), state, rejected_total"),
	'0|0|NULL|rejecting|2',
	'zero: no connection, cap 0, NULL utilization, rejecting, 2 rejected');

# --- the rejections view keeps the last 1000 -----------------------------------

# in storms of 100 logins over the raw protocol (no client process each)
my $refused = 0;
for my $i (1 .. 10)
{
	my @c = wire_storm($node, 100, application_name => 'zero');
	$refused += grep { $_->is_refusal } @c;
	$_->close for @c;
}
is($refused, 1000, '1000 more refusals of "zero"');
is( scalar_q(
		$node, "SELECT count(*), count(*) FILTER (WHERE service = 'zero') FROM dbpool_guard.rejections"
	),
	'1000|1000',
	'rejections: only the last 1000 are kept');
is(status_of($node, 'zero', 'rejected_total'), '1002', 'rejected_total stays exact');

# --- unlisted names share one "*" bucket --------------------------------------

my @inv = (hold($node, 'inv-a'), hold($node, 'inv-b'));
is(status_of($node, '*', 'connections'), '2', 'two invented names count together in "*"');
is( scalar_q(
		$node, "SELECT count(*) FROM dbpool_guard.status WHERE service LIKE 'inv-%'"),
	'0',
	'invented names get no rows of their own');
push @inv, hold($node, 'STORM');
is(status_of($node, '*', 'connections'), '3',
	'names match case-sensitively: "STORM" is unlisted');
is(status_of($node, 'storm', 'connections'), '0', '... and not counted in "storm"');
$err = hold_fails($node, app => 'inv-d');
like($err, refusal_re('inv-d'),
	'the fourth unlisted login is refused, named by its own application_name');
like($err, qr/DETAIL:  .*"inv-d".*shared budget "\*"/,
	'the detail says it is counted in the shared budget "*"');
is(status_of($node, '*', 'connections, rejected_total'), '3|1', '"*" holds 3, refused 1');
quit_all(@inv);
ok(wait_count($node, '*', 0), '"*" released');

# --- application_name is clipped to 63 bytes, like pg_stat_activity ----------

$h = hold($node, $name63 . 'TAIL');
is( scalar_q(
		$node, "SELECT application_name FROM pg_stat_activity WHERE pid = $h->{dbpg_pid}"),
	$name63,
	'pg_stat_activity shows the clipped name');
is(status_of($node, $name63, 'connections'), '1',
	'a 67-byte application_name counts in the 63-byte entry');
like(hold_fails($node, app => $name63),
	refusal_re($name63), 'and fills it');
quit_all($h);
ok(wait_count($node, $name63, 0), 'released');

# --- non-ASCII bytes are cleaned the way the running major does ---------------

my $cafe = "caf\xc3\xa9";
my $cleaned;
{
	local $ENV{PGAPPNAME} = $cafe;
	$cleaned = $node->safe_psql('postgres',
		'SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()');
}
(my $quoted = $cleaned) =~ s/"/""/g;
set_conf($node, 'dbpool_guard.budgets' => "$budgets, \"$quoted\"=1\@1.0");
$h = hold($node, $cafe);
is(status_of($node, $cleaned, 'connections'), '1',
	"application_name '$cafe' counts under its cleaned name '$cleaned'");
like(hold_fails($node, app => $cafe),
	refusal_re($cleaned), 'and is limited there');
quit_all($h);
ok(wait_count($node, $cleaned, 0), 'released');

# --- without "*", unlisted names are counted and never refused ----------------

(my $no_star = $budgets) =~ s/, \*=3\@1\.0//;
set_conf($node, 'dbpool_guard.budgets' => $no_star);
@inv = map { hold($node, "inv-$_") } 1 .. 5;
is(scalar(@inv), 5, 'five unlisted logins are admitted without a "*" entry');
is( status_of(
		$node, '*',
		"connections, coalesce(budget::text, 'NULL'), coalesce(cap::text, 'NULL'), "
		  . "coalesce(utilization::text, 'NULL'), state, rejected_total"),
	'5|NULL|NULL|NULL|ok|1',
	'"*" counts them with NULL budget, cap and utilization');
quit_all(@inv);
ok(wait_count($node, '*', 0), 'unlisted sessions released');

is(scalar_q($node, 'SELECT count(*) FROM dbpool_guard.status WHERE connections <> 0'),
	'0', 'every bucket is back to 0');

$node->stop;
done_testing();
