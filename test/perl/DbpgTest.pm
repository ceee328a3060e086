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

use DbpgWire;

our @EXPORT = qw(
  guard_node conn hold hold_fails quit_all set_conf scalar_q
  status_of wait_count wait_released wait_samples worker_pid wait_new_worker
  storm count_lines log_wait raw_login raw_login_on process_stopped seconds_spanned
  stop_worker refusal_re wire_params wire_login wire_start wire_storm storm_exact
);

# The upper bound of every wait (seconds); waits end as soon as they can.
our $TIMEOUT = $PostgreSQL::Test::Utils::timeout_default;

# dbpool_guard's refusal as psql prints it ("FATAL:  too many connections
# for service ..."), told apart from PostgreSQL's own "too many clients";
# $1 is the service.  The message itself is spelled once, in DbpgWire.
our $REFUSAL = refusal_re();

# The same for one service: qr/FATAL:  too many connections for service
# "$service"$/m, the name matched literally.
sub refusal_re
{
	my ($service) = @_;
	my $re = DbpgWire::refusal_re($service);
	return qr/FATAL:  $re/;
}

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

# Login parameters for DbpgWire (a login over the raw protocol, on the
# node's Unix socket): user "app", database "postgres", then %p (e.g.
# application_name, user, dbname, options, params => {...}).
sub wire_params
{
	my ($node, %p) = @_;
	return (
		host => $node->host,
		port => $node->port,
		user => 'app',
		dbname => 'postgres',
		%p);
}

# DbpgWire::login with wire_params($node, %p): the connection object.
sub wire_login
{
	my ($node, %p) = @_;
	return DbpgWire::login(wire_params($node, %p));
}

# $n logins with wire_params($node, %p), started back to back
# (DbpgWire::start), their answers not read yet: the connection objects,
# for DbpgWire::wait_all.
sub wire_start
{
	my ($node, $n, %p) = @_;
	return map { DbpgWire::start(wire_params($node, %p)) } 1 .. $n;
}

# A storm (DbpgWire::storm) of $n logins with wire_params($node, %p):
# the connection objects, every login answered.
sub wire_storm
{
	my ($node, $n, %p) = @_;
	return DbpgWire::wait_all([ wire_start($node, $n, %p) ]);
}

# Whether a storm's tally (DbpgWire::tally) admitted exactly $cap and
# dbpool_guard refused all the others; if not, says what happened (diag,
# after $what).
sub storm_exact
{
	my ($t, $cap, $what) = @_;
	my $ok = @{ $t->{ok} };
	my $n = $ok + $t->{refused} + @{ $t->{other} };
	return 1 if $ok == $cap && $t->{refused} == $n - $cap;
	diag("$what: $ok admitted, $t->{refused} refused, other: "
		  . join('; ', @{ $t->{other} }));
	return 0;
}

# A login over the raw protocol (DbpgWire), so that the startup packet
# carries exactly the given parameters (psql always sends an
# application_name): user (default "app"), database (default "postgres"),
# application_name, options, and any other startup parameter.  Returns
# (socket, backend pid) once ready for queries, or (undef, the error
# message as "SEVERITY:  SQLSTATE: message", the error's fields by their
# one-letter codes).  Close with: print $sock "X\0\0\0\4"; close $sock.
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
	my %p = (timeout => $TIMEOUT);
	for my $k (qw(user application_name options))
	{
		$p{$k} = delete $params{$k} if exists $params{$k};
	}
	$p{dbname} = delete $params{database} if exists $params{database};
	$p{params} = \%params;
	my $c = DbpgWire::login_on($sock, %p);
	if ($c->{ok})
	{
		$sock = $c->detach;
		$sock->blocking(1);
		return ($sock, $c->{pid});
	}
	my $f = $c->{error};
	return (undef, defined $f->{S} ? "$f->{S}:  $f->{C}: $f->{M}" : $f->{M}, $f);
}

# Close background sessions, whatever state their psql is in, with
# BackgroundPsql's own methods.  The session's timer ($TIMEOUT, running
# since the session started) is restarted first (query_until restarts it
# once set_query_timer_restart is on), so that a session held for longer
# than that still gets its \q.  A psql that has exited already (its
# backend ended and psql noticed) makes these calls die on its closed
# pipes: its connection is gone, which is all this is for.
sub quit_all
{
	for my $s (@_)
	{
		next unless defined $s;
		$s->set_query_timer_restart();
		eval { $s->query_until(qr//, ''); };
		eval { $s->quit; };
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

# Wait until no bucket counts a connection: every slot is back.
sub wait_released
{
	my ($node) = @_;
	return $node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM dbpool_guard.status WHERE connections <> 0');
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

# A login storm: $p{clients} logins over the raw protocol (DbpgWire::storm:
# every startup packet sent back to back, so that the server
# authenticates them together), all with the startup application_name
# $p{app} as role $p{user} (default "app").  Each admitted client then
# runs $p{sql}, which must block until the caller lets it finish (e.g.
# wait for a lock held by the caller), so that every admitted client
# still holds its slot when the storm is over.
#
# Returns once the storm has fully resolved: every client refused (or
# failed), or shown by $p{held_sql} (a query counting the admitted
# clients that reached their blocking point).  The returned object has
# refused => [the error of each client that did not get in, as psql
# prints it: "FATAL:  ...\nDETAIL:  ...\nHINT:  ...\n"], exited_early =>
# their number, holding => the count of $p{held_sql}, seconds =>
# duration, t0 and t1 => the times of the start and of the resolution
# (every refusal lies in between); call ->{finish}->() after releasing
# the blocked clients: it returns the number of admitted clients whose
# statement succeeded, and closes them.
sub storm
{
	my ($node, %p) = @_;
	my $n = $p{clients};

	my $t0 = time();
	my @c = wire_storm(
		$node, $n,
		application_name => $p{app},
		user => $p{user} // 'app',
		# the statement_timeout only guards against a hung test
		options => '-c statement_timeout=' . (2 * $TIMEOUT) . 's');
	my @ok = grep { $_->{ok} } @c;
	my @refused = map { $_->error_text } grep { !$_->{ok} } @c;
	$_->send_query($p{sql}) for @ok;

	my $holding = 0;
	my $deadline = time() + $TIMEOUT;
	while (1)
	{
		$holding = $node->safe_psql('postgres', $p{held_sql});
		last if @refused + $holding >= $n;
		if (time() > $deadline)
		{
			diag("storm did not resolve: "
				  . scalar(@refused)
				  . " refused, $holding holding");
			last;
		}
		usleep(50_000);
	}
	my $t1 = time();

	my $finish = sub {
		my $done = 0;
		for my $c (@ok)
		{
			$done++ if eval { $c->query_result; 1 };
			$c->close;
		}
		return $done;
	};

	return {
		refused => \@refused,
		exited_early => scalar(@refused),
		holding => $holding,
		seconds => $t1 - $t0,
		t0 => $t0,
		t1 => $t1,
		finish => $finish,
	};
}

1;
