# Helpers for the PgBouncer TAP tests (test/t/5*_pgbouncer*.pl): find the
# real pgbouncer (or skip; under CI=true a missing binary is a failure),
# start one in the foreground with a generated pgbouncer.ini, run console
# commands (SHOW ..., RELOAD), and stop it on every exit path: the END
# block below, die on SIGTERM/SIGINT/SIGHUP so that END blocks run, and
# PR_SET_PDEATHSIG (Linux) so that a SIGKILLed test takes PgBouncer along.
#
# Clients of PgBouncer are DbpgWire connections (pgb_params gives where
# PgBouncer listens).  pgb_connect/pgb_send start a login or a query whose
# answer time is stamped while pgb_wait_for polls, so that a test can
# measure what a pooled client waited (pgb_await).
#
#   pgbouncer_or_skip();
#   pgb_start(psql => $node->installed_command('psql'),
#             databases => "db = host=127.0.0.1 port=$port dbname=postgres\n",
#             auth => ['app'], set => { pool_mode => 'session' });
#   my $c = DbpgWire::login(pgb_params(user => 'app', dbname => 'db'));

package DbpgBouncer;

use strict;
use warnings FATAL => 'all';

use Carp;
use Exporter 'import';
use Hash::Util::FieldHash ();
use IPC::Run ();
use POSIX ();
use Time::HiRes qw(time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use DbpgMonitoring qw(find_program wait_for);
use Test::More;

use DbpgTest;
use DbpgWire;

our @EXPORT = qw(
  pgbouncer_or_skip pgb_version pgb_start pgb_stop pgb_show pgb_reload
  pgb_pool pgb_params pgb_connect pgb_send pgb_wait_for pgb_await
  pgb_sent_at pgb_answered_at pgb_answered pgb_pending pgb_error
);

my $TIMEOUT = $DbpgTest::TIMEOUT;

my $pgbouncer;    # the program
my %pgb;          # dir, port, pid, ini, log, psql, databases, users, set
my $parent = $$;

# The PgBouncer of this test is stopped on every exit path (not by a
# forked child's exit).
END
{
	pgb_stop() if $$ == $parent;
}

# The pgbouncer program: $PGBOUNCER, /usr/sbin (Debian), /usr/local/sbin,
# then PATH; undef if none.
sub find_pgbouncer
{
	return $ENV{PGBOUNCER} if ($ENV{PGBOUNCER} // '') ne '';
	return find_program('pgbouncer', '/usr/sbin', '/usr/local/sbin');
}

# Poll $cond every 20 ms, at most $TIMEOUT seconds (DbpgMonitoring's
# wait_for): the answer times measured here are as fine as the polling.
sub poll
{
	my ($cond) = @_;
	return wait_for($cond, $TIMEOUT, 20);
}

# Find pgbouncer or end the test: skip, except under CI=true (a missing
# binary fails there: a skip would hide the test), and skip as root
# (pgbouncer refuses to run as root).  Then a signal (the test command's
# timeout) dies, so that the END blocks run: ours stops PgBouncer,
# PostgreSQL::Test::Cluster's the servers.
sub pgbouncer_or_skip
{
	$pgbouncer = find_pgbouncer();
	if (!defined $pgbouncer)
	{
		my $why = 'no pgbouncer binary (Debian: apt-get install pgbouncer; it is /usr/sbin/pgbouncer)';
		if (($ENV{CI} // '') =~ /^(?:true|1)$/)
		{
			local $Test::Builder::Level = $Test::Builder::Level + 1;
			fail("$why, and CI is set: a skip would hide this test");
			done_testing();
			exit 0;
		}
		plan skip_all => $why;
	}
	plan skip_all => 'pgbouncer refuses to run as root' if $> == 0;
	$SIG{$_} = sub { die "killed by SIG$_[0]\n" } for qw(TERM INT HUP);
	note("pgbouncer $pgbouncer, version " . (pgb_version() // 'unknown'));
	return $pgbouncer;
}

# pgbouncer's version ("1.18.0"), or undef if it does not say.
sub pgb_version
{
	croak 'pgbouncer_or_skip first' unless defined $pgbouncer;
	my ($v) = (`$pgbouncer --version 2>&1` // '') =~ /PgBouncer (\d+\.\d+(?:\.\d+)?)/;
	return $v;
}

sub _write_ini
{
	my $set = $pgb{set};
	my $ini = "[databases]\n$pgb{databases}\n";
	$ini .= "[users]\n$pgb{users}\n" if defined $pgb{users};
	$ini .= "[pgbouncer]\n";
	$ini .= "$_ = $set->{$_}\n" for sort grep { defined $set->{$_} } keys %$set;
	PostgreSQL::Test::Utils::append_to_file("$pgb{ini}.new", $ini);
	rename("$pgb{ini}.new", $pgb{ini}) or croak "rename: $!";
	return;
}

# Start PgBouncer in the foreground (its pid is ours to stop) on a free
# port and a private Unix socket directory, trust authentication, console
# user pgb_admin, its log in the test's log directory
# (<test>_pgbouncer.log).  %o: databases and users (the text of those ini
# sections; users optional), auth (the users PgBouncer lets in), set
# ([pgbouncer] settings beyond these, or overriding them; max_client_conn
# is 200 unless set), psql (the psql for the console, default "psql").
# Returns once the console answers; dies if PgBouncer exits or does not
# answer within $TIMEOUT seconds.
sub pgb_start
{
	my (%o) = @_;
	croak 'pgbouncer_or_skip first' unless defined $pgbouncer;
	croak 'pgbouncer runs already' if $pgb{pid};
	$pgb{dir} = PostgreSQL::Test::Utils::tempdir_short();
	$pgb{port} = PostgreSQL::Test::Cluster::get_free_port();
	$pgb{ini} = "$pgb{dir}/pgbouncer.ini";
	$pgb{psql} = $o{psql} // 'psql';
	(my $base = $0) =~ s{.*/}{};
	$base =~ s/\.pl$//;
	$pgb{log} = "$PostgreSQL::Test::Utils::log_path/${base}_pgbouncer.log";
	$pgb{databases} = $o{databases};
	$pgb{users} = $o{users};
	PostgreSQL::Test::Utils::append_to_file("$pgb{dir}/userlist.txt",
		join('', map { qq{"$_" ""\n} } 'pgb_admin', @{ $o{auth} // [] }));
	$pgb{set} = {
		listen_port => $pgb{port},
		unix_socket_dir => $pgb{dir},
		auth_type => 'trust',
		auth_file => "$pgb{dir}/userlist.txt",
		admin_users => 'pgb_admin',
		max_client_conn => 200,
		logfile => $pgb{log},
		%{ $o{set} // {} },
	};
	_write_ini();

	my $pid = fork();
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# Linux: SIGKILL for PgBouncer when this test process dies, however
		# it dies (prctl PR_SET_PDEATHSIG; best effort elsewhere).  If the
		# test died before the prctl, do not start at all.
		my %prctl = (x86_64 => 157, aarch64 => 167);
		my ($arch) = (POSIX::uname())[4];
		syscall($prctl{$arch}, 1, 9) if $^O eq 'linux' && $prctl{$arch};
		POSIX::_exit(1) if getppid() != $parent;
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', "$pgb{dir}/stdout");
		open(STDERR, '>&', \*STDOUT);
		exec($pgbouncer, $pgb{ini}) or POSIX::_exit(127);
	}
	$pgb{pid} = $pid;
	my $up = poll(
		sub {
			if (waitpid($pid, POSIX::WNOHANG()) == $pid)
			{
				delete $pgb{pid};
				croak "pgbouncer exited at start: "
				  . PostgreSQL::Test::Utils::slurp_file("$pgb{dir}/stdout");
			}
			return defined eval { pgb_show('SHOW VERSION') };
		});
	croak "pgbouncer does not answer on $pgb{dir}, port $pgb{port}" unless $up;
	note("pgbouncer on $pgb{dir}, port $pgb{port}");
	return;
}

# Stop PgBouncer: SIGTERM, then SIGKILL if it has not exited within
# $TIMEOUT seconds.  Nothing if it does not run.
sub pgb_stop
{
	return unless $pgb{pid};
	local $?;
	my $pid = delete $pgb{pid};
	kill 'TERM', $pid;
	if (!poll(sub { waitpid($pid, POSIX::WNOHANG()) != 0 }))
	{
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}
	return;
}

# A console command (SHOW ..., RELOAD) through psql; rows as hashes by
# column name.  Dies if the console does not accept it.
sub pgb_show
{
	my ($cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			$pgb{psql}, '-XAq', '-F', "\t", '-P', 'footer=off',
			'-h', $pgb{dir}, '-p', $pgb{port}, '-U', 'pgb_admin',
			'-d', 'pgbouncer', '-c', $cmd
		],
		'<', \undef, '>', \$out, '2>', \$err)
	  or croak "pgbouncer console, $cmd: $err";
	my ($head, @lines) = split /\n/, $out;
	return [] unless defined $head;
	my @cols = split /\t/, $head, -1;
	return [ map { my %h; @h{@cols} = split(/\t/, $_, -1); \%h } @lines ];
}

# Change [pgbouncer] settings (undef: back to PgBouncer's default) and
# RELOAD.
sub pgb_reload
{
	my (%kv) = @_;
	$pgb{set}{$_} = $kv{$_} for keys %kv;
	_write_ini();
	pgb_show('RELOAD');
	return;
}

# The SHOW POOLS row of one pool (the counters 0 before the pool exists);
# servers = all its server connections, whatever their state.
sub pgb_pool
{
	my ($db, $user) = @_;
	my ($row) = grep { $_->{database} eq $db && $_->{user} eq $user } @{ pgb_show('SHOW POOLS') };
	$row //= {};
	$row->{$_} //= 0 for qw(cl_active cl_waiting sv_active sv_idle sv_used sv_tested sv_login);
	$row->{servers} = $row->{sv_active} + $row->{sv_idle} + $row->{sv_used}
	  + $row->{sv_tested} + $row->{sv_login};
	return $row;
}

# Login parameters for DbpgWire that reach PgBouncer (its Unix socket),
# then %p (user, dbname, application_name, ...).
sub pgb_params
{
	my (%p) = @_;
	croak 'pgbouncer does not run' unless $pgb{pid};
	return (host => $pgb{dir}, port => $pgb{port}, %p);
}

# ------------------------------------------------------------------------
# Timed clients: when a login or query was sent, when its answer came
# (stamped by pgb_wait_for, which reads every pending connection while it
# polls).  The times are kept here, by connection, not in the DbpgWire
# objects.

Hash::Util::FieldHash::fieldhash(my %sent_at);
Hash::Util::FieldHash::fieldhash(my %answered_at);
my @watch;

sub _stamp
{
	for my $c (@watch)
	{
		$answered_at{$c} = time() unless $c->pump;
	}
	@watch = grep { !defined $answered_at{$_} } @watch;
	return;
}

sub _watch
{
	my ($c, $t) = @_;
	$sent_at{$c} = $t // time();
	delete $answered_at{$c};
	push @watch, $c;
	return $c;
}

# Start a login through PgBouncer (DbpgWire::start with pgb_params(%p)),
# its answer not read yet: the connection.  Sent "now" is taken before
# the socket connects, so a measured wait is never shorter than PgBouncer's.
sub pgb_connect
{
	my (%p) = @_;
	my $t = time();
	return _watch(DbpgWire::start(pgb_params(%p)), $t);
}

# Send a query on a connection of pgb_connect, without waiting.
sub pgb_send
{
	my ($c, $sql) = @_;
	_watch($c);
	$c->send_query($sql);
	return $c;
}

# Poll until $cond returns true (at most $TIMEOUT seconds), stamping the
# answers of the pending connections meanwhile.  True if $cond did.
sub pgb_wait_for
{
	my ($cond) = @_;
	return poll(sub { _stamp(); return $cond->(); });
}

# Wait for the answer of a connection's login or last query: the seconds
# it took (up to now, with a diag, if none came in $TIMEOUT seconds).
sub pgb_await
{
	my ($c) = @_;
	pgb_wait_for(sub { defined $answered_at{$c} })
	  or diag("no answer in $TIMEOUT s");
	return ($answered_at{$c} // time()) - $sent_at{$c};
}

# When the connection's login or last query was sent; when its answer was
# seen (undef while there is none).
sub pgb_sent_at     { return $sent_at{ $_[0] } }
sub pgb_answered_at { return $answered_at{ $_[0] } }

# The state of a DbpgWire connection, through its accessors:
#  - pgb_answered: ready for a query, the last query without an error;
#  - pgb_pending: a query sent, its answer not read yet;
#  - pgb_error: the error its login or query ended with, { S, C, M, ... }
#    as PgBouncer sent it ({} if none).
sub pgb_answered { return $_[0]->state eq 'ready' && !$_[0]->query_error }
sub pgb_pending  { return $_[0]->state eq 'busy' }
sub pgb_error    { return $_[0]->query_error // $_[0]->{error} // {} }

1;
