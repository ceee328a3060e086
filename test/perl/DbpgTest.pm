# Helpers shared by the dbpool_guard TAP tests (test/t/*.pl).
#
# Every test connects its counted sessions as the ordinary role "app":
# the test harness itself connects as the bootstrap superuser, which
# dbpool_guard never counts, so polling never disturbs a bucket.
#
# Timing rule for every test: no assertion depends on the machine's
# speed or on when the worker happens to sample.  Wait for the state you
# assert (poll the view, wait for a log line), with the generous upper
# bound $DbpgTest::TIMEOUT (PostgreSQL::Test::Utils::timeout_default,
# 180 s unless PG_TEST_TIMEOUT_DEFAULT says otherwise): the waits return
# as soon as the state is reached.  A bound on rate-limited log lines is
# derived from the seconds a run actually spanned (seconds_spanned).

package DbpgTest;

use strict;
use warnings FATAL => 'all';

use Carp;
use Exporter 'import';
use POSIX ();
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  guard_node conn hold hold_fails quit_all set_conf scalar_q
  status_of wait_count wait_samples worker_pid wait_new_worker
  storm count_lines log_wait raw_login raw_login_on process_stopped seconds_spanned
  stop_worker
);

# The upper bound of every wait (seconds); waits end as soon as they can.
our $TIMEOUT = $PostgreSQL::Test::Utils::timeout_default;

# Where a refusal is told apart from PostgreSQL's own "too many clients".
our $REFUSAL = qr/FATAL:  too many connections for service "([^"]*)"/;

# A node with the library preloaded, the extension created and the
# counted role "app".  %p: conf => extra postgresql.conf text,
# allows_streaming, preload (default 1), max_connections (default 40),
# start (default 1).
sub guard_node
{
	my ($name, %p) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $preload = $p{preload} // 1;

	$node->init(allows_streaming => $p{allows_streaming} // 0);
	my $conf = '';
	$conf .= "shared_preload_libraries = 'dbpool_guard'\n" if $preload;
	# %e: the SQLSTATE of every log line, to tell 53300 from other errors
	$conf .= "log_line_prefix = '%m [%p] %e '\n";
	$conf .= "log_statement = none\n";
	$conf .= "max_connections = " . ($p{max_connections} // 40) . "\n";
	$conf .= "shared_buffers = 16MB\n";
	$conf .= $p{conf} if defined $p{conf};
	$node->append_conf('postgresql.conf', $conf);
	$node->{dbpg_generation} = 0;
	return $node if defined $p{start} && !$p{start};

	$node->start;
	$node->safe_psql('postgres',
		"CREATE EXTENSION dbpool_guard; CREATE ROLE app LOGIN;");
	return $node;
}

# A libpq connection string for a counted login.  %p: app (the startup
# application_name), user (default "app"), dbname (default "postgres"),
# options, and any further keyword => value.
sub conn
{
	my ($node, %p) = @_;
	my $dbname = delete $p{dbname} // 'postgres';
	my $app = delete $p{app};
	my $s = $node->connstr($dbname);

	$p{user} //= 'app';
	$p{application_name} = $app if defined $app;
	for my $k (sort keys %p)
	{
		my $v = $p{$k};
		$v =~ s/\\/\\\\/g;
		$v =~ s/'/\\'/g;
		$s .= " $k='$v'";
	}
	return $s;
}

# Open a session that holds a slot: a background psql logged in with the
# startup application_name $app.  Dies if the login is refused.
# Returns the session; its backend pid is in $session->{dbpg_pid}.
sub hold
{
	my ($node, $app, %p) = @_;
	my $user = $p{user} // 'app';
	local $ENV{PGAPPNAME} = $app;
	local $ENV{PGUSER} = $user;
	local $ENV{PGOPTIONS} = $p{options} if defined $p{options};
	local $ENV{PGCONNECT_TIMEOUT} = $TIMEOUT;
	my $dbname = $p{dbname} // 'postgres';
	my %extra;
	$extra{replication} = $p{replication} if defined $p{replication};

	my $s = $node->background_psql($dbname, %extra);
	$s->{dbpg_pid} = $s->query_safe('SELECT pg_backend_pid()');
	$s->{dbpg_pid} =~ s/\s+//g;
	return $s;
}

# A login that must be refused: returns psql's stderr (empty if it got in).
sub hold_fails
{
	my ($node, %p) = @_;
	# no SQL on stdin: psql may exit before IPC::Run writes it (EPIPE)
	my ($ret, $stdout, $stderr) = $node->psql(
		'postgres', undef,
		connstr => conn($node, connect_timeout => $TIMEOUT, %p),
		extra_params => ['-w']);
	return $ret == 0 ? '' : $stderr;
}

# A login over the raw protocol, so that the startup packet carries
# exactly the given parameters (psql always sends an application_name).
# Returns (socket, backend pid) once ready for queries, or (undef, the
# error message as "SEVERITY:  SQLSTATE: message", the error's fields by
# their one-letter codes).  Close with: print $sock "X\0\0\0\4"; close $sock.
sub raw_login
{
	my ($node, %params) = @_;
	return raw_login_on($node->raw_connect(), %params);
}

# The same on a socket already connected to the server ($sock), e.g. one
# over an address the node's own connection methods do not use.
sub raw_login_on
{
	my ($sock, %params) = @_;
	my $body = pack('N', 196608);
	$body .= "$_\0$params{$_}\0" for sort keys %params;
	$body .= "\0";
	print $sock pack('N', length($body) + 4) . $body;
	$sock->flush;

	my $pid;
	while (1)
	{
		my ($type, $len, $msg);
		return (undef, 'connection closed', { C => 'EOF', M => 'connection closed' })
		  unless read($sock, $type, 1) == 1 && read($sock, $len, 4) == 4;
		$len = unpack('N', $len) - 4;
		$msg = '';
		read($sock, $msg, $len) if $len > 0;
		if ($type eq 'E')
		{
			my %f = map { substr($_, 0, 1) => substr($_, 1) }
			  grep { length } split /\0/, $msg;
			return (undef, "$f{S}:  $f{C}: $f{M}", \%f);
		}
		# the tests use trust: a password request would wait forever
		return (undef, 'authentication requested', { C => 'AUTH', M => 'authentication requested' })
		  if $type eq 'R' && unpack('N', $msg) != 0;
		$pid = unpack('N', $msg) if $type eq 'K';
		return ($sock, $pid) if $type eq 'Z';
	}
}

# Close background sessions, whatever state their psql is in.
sub quit_all
{
	for my $s (@_)
	{
		next unless defined $s;
		eval {
			$s->{run}->pump_nb();
			$s->{stdin} .= "\\q\n" if $s->{run}->pumpable();
			$s->{run}->finish;
			1;
		} or eval { $s->{run}->kill_kill; };
	}
	return;
}

# Append settings to postgresql.conf, reload, and wait until a new login
# sees this reload (a marker setting in another namespace changes with
# every call, so the wait also works when a value is rejected).
sub set_conf
{
	my ($node, @kv) = @_;
	my $gen = ++$node->{dbpg_generation};
	my $text = '';
	while (my ($k, $v) = splice(@kv, 0, 2))
	{
		$v =~ s/\\/\\\\/g;
		$v =~ s/'/''/g;
		$text .= "$k = '$v'\n";
	}
	$text .= "dbpgtest.generation = $gen\n";
	$node->append_conf('postgresql.conf', $text);
	$node->reload;
	$node->poll_query_until('postgres',
		"SELECT current_setting('dbpgtest.generation', true) = '$gen'")
	  or croak "reload $gen was not seen";
	return;
}

# One value from a query, as psql prints it (NULL as "NULL").
sub scalar_q
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', "\\pset null NULL\n$sql");
}

# Columns of one service's status row, "|"-separated, NULL as "NULL";
# "" when the service has no row.
sub status_of
{
	my ($node, $service, $cols) = @_;
	$service =~ s/'/''/g;
	return scalar_q($node,
		"SELECT $cols FROM dbpool_guard.status WHERE service = '$service'");
}

# Wait until a service's row shows $n connections (no row counts as 0).
sub wait_count
{
	my ($node, $service, $n) = @_;
	$service =~ s/'/''/g;
	return $node->poll_query_until('postgres',
		"SELECT coalesce((SELECT connections FROM dbpool_guard.status WHERE service = '$service'), 0) = $n"
	);
}

# Wait for $n more worker samples (sampled_at moves on $n times).
sub wait_samples
{
	my ($node, $n) = @_;
	for (1 .. $n)
	{
		my $last = scalar_q($node,
			"SELECT coalesce(max(sampled_at)::text, '-infinity') FROM dbpool_guard.status"
		);
		$node->poll_query_until('postgres',
			"SELECT max(sampled_at) > '$last'::timestamptz FROM dbpool_guard.status"
		) or return 0;
	}
	return 1;
}

# The worker's pid, or "" when it is not running.
sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'dbpool_guard worker'"
	);
}

# Wait until a worker runs whose pid is not $old (undef: any worker).
sub wait_new_worker
{
	my ($node, $old) = @_;
	my $cond = defined $old && $old ne '' ? "AND pid <> $old" : '';
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'dbpool_guard worker' $cond"
	);
}

# Wait for a log line after $offset; false (not a die) on timeout.
sub log_wait
{
	my ($node, $re, $offset) = @_;
	return eval { $node->wait_for_log($re, $offset); 1 } ? 1 : 0;
}

# Wait until /proc shows the process stopped: state T (stopped by a
# signal) or t (tracing stop; some kernels show a SIGSTOPped process so).
# False when it is gone or not stopped within $TIMEOUT seconds.
sub process_stopped
{
	my ($pid) = @_;
	my $deadline = time() + $TIMEOUT;
	while (1)
	{
		open(my $fh, '<', "/proc/$pid/stat") or return 0;
		my $stat = <$fh> // '';
		close $fh;
		# the command name may hold spaces and parentheses: the state
		# follows the last ")"
		return 1 if $stat =~ /\) ([tT]) [^)]*\z/;
		return 0 if time() > $deadline;
		usleep(20_000);
	}
}

# SIGSTOP the worker while it sleeps between two samples, and return its
# pid.  A worker stopped in the middle of a sample would hold the bucket
# table's lock (in shared mode) until SIGCONT, and a login that inserts a
# bucket would wait for it: the tests that stop the worker prove that
# logins do not wait for the worker's schedule, not that a lock holder
# may be frozen.  So: stop it, and if pg_stat_activity does not show it
# in its sleep (wait_event_type "Extension"), let it go on and try again.
# The caller sends SIGCONT.
sub stop_worker
{
	my ($node) = @_;
	my $deadline = time() + $TIMEOUT;
	while (time() < $deadline)
	{
		my $pid = worker_pid($node);
		croak 'the worker does not run' unless $pid =~ /^\d+$/;
		kill 'STOP', $pid;
		if (!process_stopped($pid))
		{
			kill 'CONT', $pid;
			croak "worker $pid did not stop";
		}
		my $where = scalar_q($node,
			"SELECT coalesce(wait_event_type, 'none') FROM pg_stat_activity WHERE pid = $pid");
		return $pid if $where eq 'Extension';
		kill 'CONT', $pid;
		usleep(10_000);
	}
	croak 'the worker was never stopped in its sleep';
}

# The number of distinct wall-clock seconds from $t0 to $t1 (Unix times,
# Time::HiRes::time), both included: how many lines a limiter that logs
# at most once per wall-clock second can write in between.  Take $t0
# before the first attempt and $t1 after the last answer, so that every
# event lies in between: a run of 1.2 s may touch 3 distinct seconds.
sub seconds_spanned
{
	my ($t0, $t1) = @_;
	return POSIX::floor($t1) - POSIX::floor($t0) + 1;
}

# How many lines of $text match $re.
sub count_lines
{
	my ($text, $re) = @_;
	return scalar grep { /$re/ } split /\n/, $text;
}

# A login storm: $p{clients} psql processes, started together (they wait
# on one pipe and are released at once), all logging in with the startup
# application_name $p{app} as role $p{user} (default "app").  An admitted
# client runs $p{sql}, which must block until the caller lets it finish
# (e.g. wait for a lock held by the caller), so that every admitted
# client still holds its slot when the storm is over.
#
# Returns when every client is either gone (refused, or failed) or shown
# by $p{held_sql} (a query counting the admitted clients that reached
# their blocking point), i.e. once the storm has fully resolved.  The
# returned object has refused => [stderr of each client that exited],
# holding => count, seconds => duration, t0 and t1 => the times of the
# start signal and of the resolution (every refusal lies in between);
# call ->{finish}->() after releasing the blocked clients to reap them:
# it returns the number of clients that exited with status 0.
sub storm
{
	my ($node, %p) = @_;
	my $n = $p{clients};
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $psql = $node->installed_command('psql');
	my $connstr = conn($node,
		app => $p{app},
		user => $p{user} // 'app',
		connect_timeout => $TIMEOUT);
	my (%kids, %status);

	pipe(my $gate_r, my $gate_w) or croak "pipe: $!";
	for my $i (1 .. $n)
	{
		my $pid = fork();
		croak "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			close $gate_w;
			my $buf;
			sysread($gate_r, $buf, 1);    # returns at EOF: the start signal
			open(STDOUT, '>', "$dir/out.$i");
			open(STDERR, '>', "$dir/err.$i");
			# the statement_timeout only guards against a hung test
			$ENV{PGOPTIONS} = '-c statement_timeout=' . (2 * $TIMEOUT) . 's';
			exec($psql, '-XAtqw', '-v', 'ON_ERROR_STOP=1',
				'-d', $connstr, '-c', $p{sql})
			  or POSIX::_exit(127);    # never run the parent's END blocks
		}
		$kids{$pid} = $i;
	}
	close $gate_r;
	my $t0 = time();
	close $gate_w;    # go

	# reap only our own children: the harness has others (IPC::Run)
	my $reap = sub {
		for my $pid (keys %kids)
		{
			next if exists $status{ $kids{$pid} };
			$status{ $kids{$pid} } = $? >> 8
			  if waitpid($pid, POSIX::WNOHANG()) == $pid;
		}
	};

	my $holding = 0;
	my $deadline = time() + $TIMEOUT;
	while (1)
	{
		$reap->();
		$holding = $node->safe_psql('postgres', $p{held_sql});
		last if keys(%status) + $holding >= $n;
		if (time() > $deadline)
		{
			diag("storm did not resolve: "
				  . scalar(keys %status)
				  . " exited, $holding holding");
			last;
		}
		usleep(50_000);
	}
	my $t1 = time();
	my $seconds = $t1 - $t0;

	my @refused;
	for my $i (sort { $a <=> $b } keys %status)
	{
		push @refused, PostgreSQL::Test::Utils::slurp_file("$dir/err.$i");
	}
	my %early = %status;

	my $finish = sub {
		my $ok = 0;
		my $deadline = time() + $TIMEOUT;
		while (1)
		{
			$reap->();
			last if keys(%status) >= $n || time() > $deadline;
			usleep(20_000);
		}
		for my $pid (keys %kids)
		{
			next if exists $status{ $kids{$pid} };
			kill 'KILL', $pid;
			waitpid($pid, 0);
		}
		for my $i (keys %status)
		{
			$ok++ if !exists $early{$i} && $status{$i} == 0;
		}
		return $ok;
	};

	return {
		refused => \@refused,
		exited_early => scalar(keys %early),
		holding => $holding,
		seconds => $seconds,
		t0 => $t0,
		t1 => $t1,
		finish => $finish,
	};
}

1;
