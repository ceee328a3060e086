#!/usr/bin/perl
# test/soak/soak.pl: the dbpool_guard soak.  Run it through run-soak.sh,
# which picks an unprivileged user and the server binaries.
#
# A throwaway server (initdb in a temporary directory, Unix socket only),
# --clients client processes (default 8) and --services listed services
# (default 10, plus unlisted names counted in "*").  Each client keeps a
# small pool of sessions: it logs in (alone or in bursts of 2-4 at once)
# to a random service, sometimes runs a query or opens a transaction,
# and logs out, until together they made --cycles login/logout cycles
# (admitted sessions that logged out; refused attempts come on top).  The
# budgets are small against that concurrency, so refusals are frequent;
# every --reload-ms the budgets are rewritten (budgets and thresholds
# change, services leave and come back, "*" comes and goes, and one
# reload in --bad-every is an invalid value) and the postmaster gets a
# SIGHUP.  Every client counts what it saw: admitted, refused with our
# message, anything else.
#
# Checks at the end, each printed as "ok" or "FAILED", then the closing
# line "N passed, N failed" (exit status 1 when anything failed):
#   - no leaked slot: every bucket back to 0, the sessions view empty;
#   - sum of admitted_total = logins that passed the guard (client tally);
#   - sum of rejected_total = refusals with our message the clients saw;
#   - the clients saw no other outcome; no would_reject in enforce mode;
#   - the rejections view holds min(1000, refusals) rows;
#   - the same postmaster and worker pids at start and end, no crash in
#     the log, no "holdings disagree" warning from the worker;
#   - every invalid reload was logged as invalid and left the last good
#     value in force; the final value is in force;
#   - refusal log lines were rate-limited: at most one per bucket and
#     wall-clock second spanned by the run;
#   - postmaster and worker memory flat: RSS (and private RssAnon) at
#     start (after a warm-up) and at the end are printed; the private
#     memory must not grow by more than --max-growth-kb (default 2048).
#
#
# Bounded by count and time: the clients make --cycles cycles (the checks
# are on what was done, never on how fast), and stop opening sessions at
# --max-seconds (default 1800) after the start, whatever they made by
# then; the cycle check then fails and says so.  Every wait for the
# server is bounded by --wait-seconds (default PG_TEST_TIMEOUT_DEFAULT,
# else 180) and returns as soon as the state is reached.
#
#   soak.pl --bindir DIR [--cycles N] [--clients N] [--services N]
#           [--reload-ms MS] [--bad-every N] [--hold-ms MS] [--seed N]
#           [--max-seconds N] [--wait-seconds N] [--keep]

use strict;
use warnings FATAL => 'all';

use FindBin;
use lib "$FindBin::RealBin/../perl";

use DbpgWire;
use File::Temp ();
use Getopt::Long;
use POSIX ();
use Time::HiRes qw(time usleep);

my %o = (
	cycles => 20000,
	clients => 8,
	services => 10,
	'reload-ms' => 250,
	'bad-every' => 10,
	'hold-ms' => 20,
	'max-growth-kb' => 2048,
	warmup => 1000,
	seed => 4242,
	'max-seconds' => 1800,
	'wait-seconds' => $DbpgWire::TIMEOUT,
	bindir => '',
	keep => 0,);
GetOptions(\%o, 'cycles=i', 'clients=i', 'services=i', 'reload-ms=i', 'bad-every=i',
	'hold-ms=i', 'max-growth-kb=i', 'warmup=i', 'seed=i', 'max-seconds=i', 'wait-seconds=i',
	'bindir=s', 'keep!')
  or die "usage: $0 --bindir DIR [--cycles N] [--clients N] [--services N] ...\n";
$o{bindir} ||= do { my $b = `pg_config --bindir`; chomp $b; $b };
die "no server binaries in '$o{bindir}'\n" unless -x "$o{bindir}/postgres";
$| = 1;

my ($passed, $failed) = (0, 0);
my @failures;

sub check
{
	my ($ok, $what) = @_;
	if ($ok) { $passed++; print "ok      $what\n"; }
	else { $failed++; push @failures, $what; print "FAILED  $what\n"; }
	return $ok;
}

sub info { print "soak: @_\n"; return; }

# Call $cond until it returns true, at most --wait-seconds; returns its
# last value.
sub wait_until
{
	my ($cond) = @_;
	my $deadline = time() + $o{'wait-seconds'};
	while (1)
	{
		my $v = $cond->();
		return $v if $v || time() > $deadline;
		usleep(20_000);
	}
}

# No client opens a session after this time (--max-seconds).
my $hard_deadline = time() + $o{'max-seconds'};

# --- a throwaway server ------------------------------------------------------------------

my $dir = File::Temp::tempdir('dbpool_guard-soak.XXXXXX', TMPDIR => 1, CLEANUP => !$o{keep});
my $pgdata = "$dir/pgdata";
my $log = "$dir/server.log";
# a private socket directory: the port number cannot collide
my $port = 50000 + $$ % 10000;
srand($o{seed});
my $services = $o{services};
my @names = map { sprintf('svc-%02d', $_) } 1 .. $services;

info("server in $dir (PostgreSQL binaries in $o{bindir})");
system("'$o{bindir}/initdb' -D '$pgdata' -A trust -N -U soak_admin --no-locale -E UTF8 >'$dir/initdb.log' 2>&1") == 0
  or die "initdb failed, see $dir/initdb.log\n";

sub budgets_value
{
	my ($list, $star) = @_;
	my $v = join(', ', map { "$_->[0]=$_->[1]" . (defined $_->[2] ? "\@$_->[2]" : '') } @$list);
	$v .= ($v ne '' ? ', ' : '') . "*=$star" if defined $star;
	return $v;
}

# The full list, as in force at the start and at the end.
my $final_value = budgets_value([ map { [ $_, 4, '1.0' ] } @names ], '3@1.0');

open(my $conf, '>>', "$pgdata/postgresql.conf") or die;
print $conf <<"EOF";
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
max_connections = 100
shared_buffers = 16MB
fsync = off
shared_preload_libraries = 'dbpool_guard'
dbpool_guard.max_services = 16
dbpool_guard.sample_interval = 100
log_line_prefix = '%m [%p] %e '
log_min_messages = log
include_if_exists = 'soak_budgets.conf'
EOF
close $conf;

# The budgets go to an included file, with a generation number that
# tells when the postmaster has read it (an invalid value cannot).
my $budgets_file = "$pgdata/soak_budgets.conf";
my $generation = 0;
sub write_budgets
{
	my ($value) = @_;
	$generation++;
	open(my $fh, '>', "$budgets_file.tmp") or die "$budgets_file.tmp: $!";
	(my $q = $value) =~ s/'/''/g;
	print $fh "dbpool_guard.budgets = '$q'\nsoak.generation = $generation\n";
	close $fh;
	rename("$budgets_file.tmp", $budgets_file) or die "rename: $!";
	return $generation;
}
write_budgets($final_value);

system("'$o{bindir}/pg_ctl' -D '$pgdata' -l '$log' -w -t 60 start >'$dir/pg_ctl.log' 2>&1") == 0
  or die "server did not start, see $log\n";
my $stopped = 0;
END { system("'$o{bindir}/pg_ctl' -D '$pgdata' -m immediate stop >/dev/null 2>&1") if $pgdata && !$stopped; }

my %login = (host => $dir, port => $port, user => 'app', dbname => 'postgres');
my $admin;
wait_until(sub {
	$admin = DbpgWire::login(%login, user => 'soak_admin', application_name => 'soak-admin');
	return $admin->{ok};
});
die "cannot log in: $admin->{error}{M}\n" unless $admin->{ok};

sub q1
{
	my ($sql) = @_;
	my $rows = $admin->query($sql);
	return defined $rows->[0] ? $rows->[0][0] : undef;
}

$admin->query('CREATE EXTENSION dbpool_guard');
$admin->query('CREATE ROLE app LOGIN');
my $version = q1('SHOW server_version');
info("PostgreSQL $version, port $port, $o{clients} clients, $services services, $o{cycles} login/logout cycles");

my $postmaster_pid = do { open(my $fh, '<', "$pgdata/postmaster.pid") or die; my $l = <$fh>; chomp $l; $l };
my $worker_pid;
wait_until(sub {
	$worker_pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'dbpool_guard worker'");
	return $worker_pid;
});
die "the dbpool_guard worker does not run\n" unless $worker_pid;

# /proc/PID/status: VmRSS, RssAnon (private), RssShmem, in kB
sub memory
{
	my ($pid) = @_;
	my %m;
	open(my $fh, '<', "/proc/$pid/status") or return {};
	while (<$fh>)
	{
		$m{$1} = $2 if /^(VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+) kB/;
	}
	close $fh;
	return \%m;
}

sub memory_text
{
	my ($m) = @_;
	return sprintf('RSS %d kB (private %d kB, shared %d kB)',
		$m->{VmRSS} // -1, $m->{RssAnon} // -1, $m->{RssShmem} // -1);
}

# --- the clients ---------------------------------------------------------------------------

# One client: a pool of up to 6 sessions; each step opens 1-4 sessions at
# once or closes one, with an occasional query or transaction.
sub client
{
	my ($id, $cycles, $file) = @_;
	srand($o{seed} * 1000 + $id);
	my %t = (attempts => 0, ok => 0, refused => 0, queries => 0);
	my @pool;
	my $max_pool = 6;
	my $more = sub { return $t{ok} < $cycles && time() < $hard_deadline; };
	while ($more->() || @pool)
	{
		if ($more->() && @pool < $max_pool && (rand() < 0.55 || !@pool))
		{
			my $n = rand() < 0.25 ? 2 + int(rand(3)) : 1;
			$n = $cycles - $t{ok} if $n > $cycles - $t{ok};
			my @c = DbpgWire::storm(
				[ map { { %login, application_name => rand() < 0.1 ? "unlisted-$id-" . int(rand(50)) : $names[ int(rand(@names)) ] } } 1 .. $n ],
				timeout => $o{'wait-seconds'});
			my $tally = DbpgWire::tally(@c);
			$t{attempts} += @c;
			$t{ok} += @{ $tally->{ok} };
			push @pool, @{ $tally->{ok} };
			$t{refused} += $tally->{refused};
			$t{"other:$_"}++ for @{ $tally->{other} };
		}
		else
		{
			my $c = splice(@pool, int(rand(@pool)), 1);
			my $r = rand();
			if ($r < 0.2)
			{
				eval { $c->query('SELECT count(*) FROM pg_class'); $t{queries}++; 1 }
				  or $t{'other:query'}++;
			}
			elsif ($r < 0.3)
			{
				# left idle in transaction, then closed
				eval { $c->query('BEGIN'); $c->query('SELECT 1'); $t{queries}++; 1 }
				  or $t{'other:query'}++;
			}
			usleep(int(rand($o{'hold-ms'} * 1000))) if $o{'hold-ms'} > 0;
			$c->close;
		}
	}
	open(my $fh, '>', $file) or die;
	print $fh map { "$_\t$t{$_}\n" } sort keys %t;
	close $fh;
	return;
}

sub run_clients
{
	my ($total, $tag) = @_;
	my @kids;
	my $per = int($total / $o{clients});
	for my $id (1 .. $o{clients})
	{
		my $n = $id == $o{clients} ? $total - $per * ($o{clients} - 1) : $per;
		my $file = "$dir/tally-$tag-$id";
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			$admin->detach;    # the parent's connection: leave it alone
			eval { client($id, $n, $file); 1 } or print STDERR "client $id: $@";
			POSIX::_exit(0);
		}
		push @kids, [ $pid, $file ];
	}
	return \@kids;
}

sub collect
{
	my ($kids) = @_;
	my %sum;
	for my $k (@$kids)
	{
		open(my $fh, '<', $k->[1]) or do { $sum{'other:client died'}++; next; };
		while (<$fh>)
		{
			chomp;
			my ($key, $v) = split /\t/, $_, 2;
			$sum{$key} += $v;
		}
		close $fh;
	}
	return \%sum;
}

# Random budgets for a reload.  Returns (value, valid).
my $reloads = 0;
sub random_budgets
{
	$reloads++;
	if ($o{'bad-every'} > 0 && $reloads % $o{'bad-every'} == 0)
	{
		# the last one lists more services than max_services (16) allows
		my @bad = ('svc-01=3, svc-01=4', 'svc-01=oops', 'svc-01=3@1.5', '"svc-02=1',
			join(', ', map { "extra-$_=1" } 1 .. 17));
		return ($bad[ int(rand(@bad)) ], 0);
	}
	my @list;
	for my $n (@names)
	{
		next if rand() < 0.15;    # removed for a while: its name counts in "*"
		my $budget = 1 + int(rand(6));
		my @t = (undef, '1.0', '0.85', '0.5', '0.75');
		push @list, [ $n, $budget, $t[ int(rand(@t)) ] ];
	}
	my $star = rand() < 0.8 ? (1 + int(rand(4))) . '@1.0' : undef;
	@list = sort { rand() <=> 0.5 } @list;
	return (budgets_value(\@list, $star), 1);
}

# Run clients for $total cycles while reloading; returns (tally, stats).
sub phase
{
	my ($total, $tag, $reload) = @_;
	my $kids = run_clients($total, $tag);
	my %pending = map { ($_->[0] => 1) } @$kids;
	my ($good, $bad, $kept) = (0, 0, 0);
	my $last_good = reload_budgets($final_value);
	my $next = time() + $o{'reload-ms'} / 1000;
	while (%pending)
	{
		for my $pid (keys %pending)
		{
			delete $pending{$pid} if waitpid($pid, POSIX::WNOHANG()) == $pid;
		}
		last unless %pending;
		if ($reload && time() >= $next)
		{
			my ($value, $valid) = random_budgets();
			my $now = reload_budgets($value);
			if ($valid) { $good++; $last_good = $value; }
			else { $bad++; }
			# a valid value is taken, an invalid one leaves the last valid one
			$kept++ if $now eq $last_good;
			$next = time() + $o{'reload-ms'} / 1000;
		}
		usleep(20_000);
	}
	return (collect($kids), { good => $good, bad => $bad, kept => $kept });
}

# Write $value, SIGHUP the postmaster, and wait until a new session has
# the new generation.  Returns the budgets value that session sees.
sub reload_budgets
{
	my ($value) = @_;
	my $gen = write_budgets($value);
	kill 'HUP', $postmaster_pid;
	my $seen;
	wait_until(sub {
		my $c = DbpgWire::login(%login, user => 'soak_admin', application_name => 'soak-admin');
		my $row = $c->{ok}
		  ? eval { $c->query("SELECT current_setting('soak.generation', true), current_setting('dbpool_guard.budgets')")->[0] }
		  : undef;
		$c->close;
		$seen = $row->[1] if $row && defined $row->[0] && $row->[0] eq $gen;
		return defined $seen;
	});
	die "reload $gen was not seen\n" unless defined $seen;
	return $seen;
}

sub settle_budgets
{
	my ($value) = @_;
	return reload_budgets($value) eq $value;
}

# --- warm-up, then the soak ----------------------------------------------------------------

my $t0 = time();
my $warm = $o{warmup} > 0 ? (phase($o{warmup}, 'warmup', 1))[0] : {};
settle_budgets($final_value) or die "the final budgets were not applied\n";
# the warm-up's sessions are all gone before the counters start again
wait_until(sub {
	q1("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'") eq '0'
	  && q1('SELECT coalesce(sum(connections), 0) FROM dbpool_guard.status') eq '0';
}) or die "the warm-up's sessions did not leave\n";
$admin->query('SELECT dbpool_guard.reset_counters()');
my $pm_start = memory($postmaster_pid);
my $wk_start = memory($worker_pid);
my $log_offset = -s $log;
info(sprintf('warm-up of %d cycles in %.1f s', $o{warmup}, time() - $t0));
info('postmaster (pid ' . $postmaster_pid . ') at start: ' . memory_text($pm_start));
info('worker (pid ' . $worker_pid . ') at start: ' . memory_text($wk_start));

$t0 = time();
my ($tally, $st) = phase($o{cycles}, 'soak', 1);
my $t1 = time();
my $secs = $t1 - $t0;
my $ok = $tally->{ok} // 0;
my $refused = $tally->{refused} // 0;
my @other = grep { /^other:/ } sort keys %$tally;
info(sprintf('%d login attempts in %.1f s (%.0f/s): %d admitted and logged out, %d refused by dbpool_guard (%.1f%%), %d queries; %d reloads (%d invalid)',
		$tally->{attempts} // 0, $secs, ($tally->{attempts} // 0) / $secs, $ok, $refused,
		100 * $refused / (($tally->{attempts} // 0) || 1), $tally->{queries} // 0,
		$st->{good} + $st->{bad}, $st->{bad}));

# the final list again, so that every service has its row
settle_budgets($final_value) or info('the final budgets were not applied');

# --- checks ---------------------------------------------------------------------------------

print "\n";
check($ok == $o{cycles}, "the clients made all $o{cycles} login/logout cycles ($ok)"
	  . ($ok < $o{cycles} && time() >= $hard_deadline ? "; stopped at --max-seconds $o{'max-seconds'}" : ''));
check($refused >= 0.1 * ($tally->{attempts} // 0),
	"refusals were frequent ($refused of " . ($tally->{attempts} // 0) . ' login attempts)');
check(!@other, 'the clients saw no outcome but admission and our refusal'
	  . (@other ? ': ' . join(', ', map { "$_ x$tally->{$_}" } @other) : ''));

my $drained = wait_until(sub { q1('SELECT coalesce(sum(connections), 0) = 0 FROM dbpool_guard.status') eq 't' });
my $held = q1('SELECT coalesce(sum(connections), 0) FROM dbpool_guard.status');
check($drained, "no leaked slot: every bucket is back to 0 (sum of connections $held)");
check(q1('SELECT count(*) FROM dbpool_guard.sessions') eq '0', 'the sessions view is empty');
check(q1("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'") eq '0',
	'no client session is left in pg_stat_activity');
my ($adm, $rej, $would, $rows) = @{ $admin->query(
		'SELECT sum(admitted_total), sum(rejected_total), sum(would_reject_total), count(*) FROM dbpool_guard.status')->[0] };
check($adm == $ok, "admitted_total ($adm) = logins that passed the guard ($ok)");
check($rej == $refused, "rejected_total ($rej) = refusals with our message the clients saw ($refused)");
check($would == 0, 'would_reject_total is 0 in enforce mode');
check($rows == $services + 1, "the status view has $services + 1 rows ($rows)");
my $ring = q1('SELECT count(*) FROM dbpool_guard.rejections');
check($ring == ($refused < 1000 ? $refused : 1000), "the rejections view holds min(1000, refusals) rows ($ring)");

my $wk_now = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'dbpool_guard worker'") // '';
check($wk_now eq $worker_pid, "the worker ran throughout (pid $worker_pid)");
my $pm_end = memory($postmaster_pid);
my $wk_end = memory($worker_pid);
check(defined $pm_end->{VmRSS}, "the postmaster ran throughout (pid $postmaster_pid)");

my $text = do { open(my $fh, '<', $log) or die; seek($fh, $log_offset, 0); local $/; <$fh> };
my @crash = grep { /terminated by signal|PANIC|was terminated|reinitializing|stuck spinlock/ } split /\n/, $text;
check(!@crash, 'no crash in the server log' . (@crash ? ": $crash[0]" : ''));
my $mismatch = () = $text =~ /holdings disagree with live backends/g;
check($mismatch == 0, "the worker's cross-check found holdings and slots in agreement ($mismatch warnings)");
my $invalid = () = $text =~ /LOG:  invalid value for parameter "dbpool_guard\.budgets"/g;
check($invalid == $st->{bad}, "every invalid reload was logged as invalid ($invalid of $st->{bad})");
check($st->{kept} == $st->{good} + $st->{bad},
	"after each reload the new valid value, or after an invalid one the last valid one, was in force ($st->{kept} of "
	  . ($st->{good} + $st->{bad}) . ')');
# Refusal lines: at most one per bucket and wall-clock second from the
# start of the run to its end, both included; lines and the counts of
# refusals they report as not logged add up to no more than all the
# refusals since the start (the warm-up's included: a line may report
# refusals suppressed before the counters were reset).
my $refusal_line = qr/FATAL:  $DbpgWire::REFUSAL_RE/;
my $logged = () = $text =~ /$refusal_line/g;
my $spanned = POSIX::floor($t1) - POSIX::floor($t0) + 1;
my $all = do { open(my $fh, '<', $log) or die; local $/; <$fh> };
my $logged_all = () = $all =~ /$refusal_line/g;
my $suppressed_all = 0;
$suppressed_all += $1 while $all =~ /(\d+) similar refusals were not logged/g;
my $refused_all = $refused + ($warm->{refused} // 0);
check($logged <= $spanned * ($services + 1) && $logged_all + $suppressed_all <= $refused_all,
	sprintf('refusal log lines are rate-limited: %d lines for %d refusals over %d distinct seconds and %d buckets; since the start %d lines + %d reported as not logged <= %d refusals',
		$logged, $refused, $spanned, $services + 1, $logged_all, $suppressed_all, $refused_all));

my $pm_growth = ($pm_end->{RssAnon} // 0) - ($pm_start->{RssAnon} // 0);
my $wk_growth = ($wk_end->{RssAnon} // 0) - ($wk_start->{RssAnon} // 0);
info("postmaster at end: " . memory_text($pm_end) . ", private memory grew by $pm_growth kB");
info("worker at end: " . memory_text($wk_end) . ", private memory grew by $wk_growth kB");
check($pm_growth <= $o{'max-growth-kb'},
	"postmaster memory is flat: private memory +$pm_growth kB (limit $o{'max-growth-kb'} kB)");
check($wk_growth <= $o{'max-growth-kb'},
	"worker memory is flat: private memory +$wk_growth kB (limit $o{'max-growth-kb'} kB)");

$admin->close;
system("'$o{bindir}/pg_ctl' -D '$pgdata' -m fast stop >/dev/null 2>&1");
$stopped = 1;
if ($failed)
{
	info("failed: " . join('; ', @failures));
	info("server log: $log") if $o{keep};
}
print "$passed passed, $failed failed\n";
exit($failed ? 1 : 0);
