# DbpgWire: a minimal PostgreSQL frontend (protocol 3.0, Unix socket,
# trust authentication) for the dbpool_guard fault tests (test/t/2*.pl)
# and the soak (test/soak/soak.pl).
#
# Why not psql: a login through psql costs a fork and an exec on the
# client side, which on a small machine limits a storm to a few dozen
# logins a second and smears them out in time.  Here a storm is N sockets
# that send their startup packets back to back and are then read
# together: the server runs the N authentications concurrently, and the
# caller gets, per login, either the backend pid or the error fields
# (SQLSTATE, message, detail, hint) exactly as the server sent them.  The
# application_name startup parameter is sent byte for byte (any bytes but
# NUL), which libpq and psql would not do for every value.
#
#   my $c = DbpgWire::login(host => $dir, port => $port, user => 'app',
#                           dbname => 'postgres', application_name => 'feed');
#   if ($c->{ok}) { my $rows = $c->query('SELECT 1'); $c->close; }
#   else { print $c->{error}{C}, ' ', $c->{error}{M}; }
#
#   my @c = DbpgWire::storm([ \%params1, \%params2, ... ], timeout => 60);
#   my $t = DbpgWire::tally(@c);    # { ok => [...], refused => N, other => [...] }
#
# Over another socket (e.g. TCP to an address of one's choice):
#   my $c = DbpgWire::login_on($sock, user => 'app', application_name => 'feed');
#
# A refused login ends with {ok} false and {error}; a closed connection
# before an answer with {error}{C} = 'EOF'.  A login that got its answer
# stays {ok} when the server ends the session later (idle_session_timeout,
# pg_terminate_backend), even before the caller read that answer.  Only
# trust (or no) authentication is supported: the tests run on a private
# Unix socket.
#
# Every wait is bounded by $DbpgWire::TIMEOUT seconds unless the caller
# passes another timeout: PG_TEST_TIMEOUT_DEFAULT, else 180 (as
# PostgreSQL::Test::Utils::timeout_default).  The waits return as soon as
# the answer is there, so a generous bound costs nothing on a fast machine
# and spares a slow one.

package DbpgWire;

use strict;
use warnings FATAL => 'all';

use Carp;
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(time);

# The refusal of dbpool_guard, as opposed to PostgreSQL's own 53300
# ("sorry, too many clients already", "too many connections for role"):
# its message, $1 the service.  This is the one place the tests spell it:
# is_refusal() matches it against the message field the server sent,
# DbpgTest::$REFUSAL and DbpgTest::refusal_re() put psql's "FATAL:  "
# before it.  A service name never holds a newline (PostgreSQL replaces
# control bytes of application_name), so it ends at the end of a line.
our $REFUSAL_RE = refusal_re();

# The refusal message for $service (a name, matched literally; or a
# pattern, qr/.../, for the name; when undef any service, captured as $1),
# up to the end of its line.
sub refusal_re
{
	my ($service) = @_;
	my $name =
	    !defined $service ? '(.*)'
	  : ref($service) eq 'Regexp' ? $service
	  : quotemeta($service);
	return qr/too many connections for service "$name"$/m;
}

our $TIMEOUT = ($ENV{PG_TEST_TIMEOUT_DEFAULT} // '') ne '' ? $ENV{PG_TEST_TIMEOUT_DEFAULT} : 180;

sub _startup_packet
{
	my (%p) = @_;
	my @kv = (user => $p{user} // 'app', database => $p{dbname} // 'postgres');
	push @kv, application_name => $p{application_name}
	  if defined $p{application_name};
	push @kv, options => $p{options} if defined $p{options};
	push @kv, map { ($_ => $p{params}{$_}) } sort keys %{ $p{params} // {} };
	my $body = pack('N', 196608);    # protocol 3.0
	while (my ($k, $v) = splice(@kv, 0, 2))
	{
		croak "NUL in startup parameter $k" if $v =~ /\0/;
		$body .= "$k\0$v\0";
	}
	$body .= "\0";
	return pack('N', 4 + length($body)) . $body;
}

# Open the Unix socket in $p{host} for $p{port} and send the startup
# packet; the answer is read by pump()/wait_ready().  Returns the
# connection object (never dies on a refused connection: {error} is set
# instead).
sub start
{
	my (%p) = @_;
	my $path = "$p{host}/.s.PGSQL.$p{port}";
	my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path);
	return start_on($sock, %p) if $sock;
	my $self = _new(%p);
	$self->{state} = 'done';
	$self->{error} = { C => 'SOCKET', M => "connect $path: $!" };
	return $self;
}

sub _new
{
	my (%p) = @_;
	return bless {
		params => \%p,
		inbuf => '',
		state => 'startup',
		ok => 0,
		pid => undef,
		error => undef,
		started => time(),
	}, __PACKAGE__;
}

# The same as start() on a socket already connected to the server (host
# and port are then not used).
sub start_on
{
	my ($sock, %p) = @_;
	my $self = _new(%p);
	$sock->autoflush(1);
	$self->{sock} = $sock;
	my $pkt = _startup_packet(%p);
	if (!defined syswrite($sock, $pkt))
	{
		$self->_eof("write: $!");
		return $self;
	}
	$sock->blocking(0);
	return $self;
}

sub _eof
{
	my ($self, $why) = @_;
	# a login answered with ReadyForQuery was admitted, whatever came after
	$self->{ok} = 0 unless defined $self->{login_seconds};
	$self->{state} = 'done';
	$self->{error} //= { C => 'EOF', M => $why // 'connection closed by the server' };
	CORE::close($self->{sock}) if $self->{sock};
	$self->{sock} = undef;
	return;
}

sub _error_fields
{
	my ($payload) = @_;
	my %f;
	for my $field (split /\0/, $payload)
	{
		next if $field eq '';
		$f{ substr($field, 0, 1) } = substr($field, 1);
	}
	return \%f;
}

# Read what is available and process whole messages.  Returns true while
# the connection still waits for something.
sub pump
{
	my ($self) = @_;
	return 0 unless $self->{sock};
	while (1)
	{
		my $n = sysread($self->{sock}, my $buf, 65536);
		if (!defined $n)
		{
			last if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
			$self->_eof("read: $!");
			return 0;
		}
		if ($n == 0)
		{
			$self->_process;
			$self->_eof if $self->{sock};
			return 0;
		}
		$self->{inbuf} .= $buf;
	}
	$self->_process;
	return $self->{state} ne 'ready' && $self->{state} ne 'done';
}

sub _process
{
	my ($self) = @_;
	while (length($self->{inbuf}) >= 5)
	{
		my ($type, $len) = unpack('a N', $self->{inbuf});
		last if length($self->{inbuf}) < 1 + $len;
		my $payload = substr($self->{inbuf}, 5, $len - 4);
		substr($self->{inbuf}, 0, 1 + $len) = '';

		if ($type eq 'R')
		{
			my $code = unpack('N', $payload);
			if ($code != 0)
			{
				$self->{error} = { C => 'AUTH', M => "authentication request $code is not supported" };
				$self->_eof;
				return;
			}
		}
		elsif ($type eq 'K')
		{
			($self->{pid}, $self->{key}) = unpack('N N', $payload);
		}
		elsif ($type eq 'S')
		{
			my ($k, $v) = split /\0/, $payload;
			$self->{parameters}{$k} = $v;
		}
		elsif ($type eq 'E')
		{
			my $err = _error_fields($payload);
			if ($self->{state} eq 'startup')
			{
				$self->{error} = $err;
				$self->{state} = 'done';
			}
			else
			{
				$self->{query_error} = $err;
			}
		}
		elsif ($type eq 'Z')
		{
			if ($self->{state} eq 'startup')
			{
				$self->{ok} = 1;
				$self->{login_seconds} = time() - $self->{started};
			}
			$self->{state} = 'ready';
		}
		elsif ($type eq 'D')
		{
			my $ncols = unpack('n', $payload);
			my $pos = 2;
			my @row;
			for (1 .. $ncols)
			{
				my $l = unpack('l>', substr($payload, $pos, 4));
				$pos += 4;
				if ($l < 0)
				{
					push @row, undef;
				}
				else
				{
					push @row, substr($payload, $pos, $l);
					$pos += $l;
				}
			}
			push @{ $self->{rows} }, \@row;
		}
		# 'N' notices, 'T' row descriptions, 'C' completions, 'v': ignored
	}
	if ($self->{state} eq 'done' && $self->{sock})
	{
		CORE::close($self->{sock});
		$self->{sock} = undef;
	}
	return;
}

# Wait until the login (or a query) has its answer, or $timeout seconds
# (default $TIMEOUT).
sub wait_ready
{
	my ($self, $timeout) = @_;
	my $deadline = time() + ($timeout // $TIMEOUT);
	while ($self->pump)
	{
		my $left = $deadline - time();
		if ($left <= 0)
		{
			$self->{error} //= { C => 'TIMEOUT', M => 'no answer in time' };
			$self->_eof;
			last;
		}
		IO::Select->new($self->{sock})->can_read($left);
	}
	return $self;
}

# Log in and wait for the answer.
sub login
{
	my (%p) = @_;
	my $timeout = delete $p{timeout};
	return start(%p)->wait_ready($timeout);
}

# The same on a socket already connected to the server.
sub login_on
{
	my ($sock, %p) = @_;
	my $timeout = delete $p{timeout};
	return start_on($sock, %p)->wait_ready($timeout);
}

# Start every login of @$list (hashes of login parameters) back to back,
# then wait for all answers.  Returns the connection objects in order.
sub storm
{
	my ($list, %o) = @_;
	my @c = map { start(%$_) } @$list;
	return wait_all(\@c, %o);
}

# Wait until every login of @$c (started with start()) has its answer, or
# $o{timeout} seconds (default $TIMEOUT); the ones still without an answer
# then end with {error}{C} 'TIMEOUT'.  Returns the connections in order.
sub wait_all
{
	my ($c, %o) = @_;
	my @c = @$c;
	my $deadline = time() + ($o{timeout} // $TIMEOUT);
	while (1)
	{
		my @pending = grep { $_->{sock} && $_->{state} eq 'startup' } @c;
		last unless @pending;
		my $left = $deadline - time();
		if ($left <= 0)
		{
			for (@pending)
			{
				$_->{error} = { C => 'TIMEOUT', M => 'no answer in time' };
				$_->_eof;
			}
			last;
		}
		my $sel = IO::Select->new(map { $_->{sock} } @pending);
		my %by = map { (fileno($_->{sock}) => $_) } @pending;
		for my $fh ($sel->can_read($left > 1 ? 1 : $left))
		{
			$by{ fileno($fh) }->pump;
		}
	}
	return @c;
}

# Run a simple query (one statement) and return its rows (arrayrefs);
# dies with the server's message on an error.
sub query
{
	my ($self, $sql, $timeout) = @_;
	croak 'not connected' unless $self->{sock} && $self->{state} eq 'ready';
	$self->send_query($sql);
	return $self->query_result($timeout);
}

# Where the connection stands: 'startup' (waiting for the login's
# answer), 'ready' (idle, a query may be sent), 'busy' (a query sent, no
# answer yet) or 'done' (refused, closed, or ended by the server).
sub state { return $_[0]->{state} }

# The error fields of the last query that failed ({C}, {M}, ...), or undef.
sub query_error { return $_[0]->{query_error} }

# Wait for the answer to the query sent with send_query() and return its
# rows; dies with the server's message on an error.
sub query_result
{
	my ($self, $timeout) = @_;
	$self->wait_ready($timeout // $TIMEOUT);
	croak "connection lost: $self->{error}{M}" if $self->{state} ne 'ready';
	if (my $e = delete $self->{query_error})
	{
		croak "query failed: $e->{C} $e->{M}";
	}
	return $self->{rows};
}

# Send a query without waiting (a session that blocks in the server).
sub send_query
{
	my ($self, $sql) = @_;
	croak 'not connected' unless $self->{sock};
	$self->{rows} = [];
	$self->{state} = 'busy';
	$self->{sock}->blocking(1);
	my $ok = defined syswrite($self->{sock}, 'Q' . pack('N', 4 + length($sql) + 1) . "$sql\0");
	$self->{sock}->blocking(0);
	$self->_eof("write: $!") unless $ok;
	return $ok;
}

# Has the server closed this connection (e.g. pg_terminate_backend)?
# Waits up to $timeout seconds (default $TIMEOUT) for the end of the
# stream: a backend gives its slot back before its socket is closed.
# Returns as soon as the stream ends; pass 0 to only look (a session
# expected to stay open).
sub closed_by_server
{
	my ($self, $timeout) = @_;
	my $deadline = time() + ($timeout // $TIMEOUT);
	while ($self->{sock})
	{
		my $left = $deadline - time();
		last unless IO::Select->new($self->{sock})->can_read($left > 0 ? $left : 0);
		$self->pump;
		# a query's answer (not the end) may have arrived: look again
		last if $left <= 0 && $self->{sock};
	}
	return $self->{sock} ? 0 : 1;
}

# Terminate and close.
sub close
{
	my ($self) = @_;
	if ($self->{sock})
	{
		$self->{sock}->blocking(1);
		syswrite($self->{sock}, 'X' . pack('N', 4));
		CORE::close($self->{sock});
		$self->{sock} = undef;
	}
	$self->{state} = 'done';
	return;
}

# Hand the socket over to the caller (still non-blocking) and forget it:
# the object no longer reads, writes or closes it.  Also in a forked
# child, so that its copy of a parent's connection leaves that connection
# alone (the blocking flag is shared with the parent: not touched here).
sub detach
{
	my ($self) = @_;
	my $sock = delete $self->{sock};
	$self->{state} = 'done';
	return $sock;
}

# Refused by dbpool_guard (SQLSTATE 53300 and its message)?
sub is_refusal
{
	my ($self) = @_;
	return $self->{error}
	  && ($self->{error}{C} // '') eq '53300'
	  && ($self->{error}{M} // '') =~ /\A$REFUSAL_RE\z/;
}

# The service a refusal names, or undef.
sub refused_service
{
	my ($self) = @_;
	return undef unless $self->is_refusal;
	$self->{error}{M} =~ $REFUSAL_RE;
	return $1;
}

# How a login ended: "ok", "refused" (by dbpool_guard), or "other:" and
# the SQLSTATE (or EOF, SOCKET, TIMEOUT, AUTH).
sub outcome
{
	my ($self) = @_;
	return 'ok' if $self->{ok};
	return 'refused' if $self->is_refusal;
	return 'other:' . ($self->{error}{C} // '?');
}

# The error as psql prints it: "FATAL:  message", then the DETAIL and
# HINT lines; "" for a login that got in.
sub error_text
{
	my ($self) = @_;
	my $e = $self->{error} or return '';
	my $text = ($e->{S} // 'ERROR') . ":  " . ($e->{M} // '') . "\n";
	$text .= "DETAIL:  $e->{D}\n" if defined $e->{D};
	$text .= "HINT:  $e->{H}\n" if defined $e->{H};
	return $text;
}

# The outcomes of a storm: { ok => [the admitted connections], refused =>
# how many dbpool_guard refused, other => ["SQLSTATE message", ...] }.
sub tally
{
	my (@c) = @_;
	my %t = (ok => [], refused => 0, other => []);
	for my $c (@c)
	{
		if ($c->{ok}) { push @{ $t{ok} }, $c; }
		elsif ($c->is_refusal) { $t{refused}++; }
		else { push @{ $t{other} }, ($c->{error}{C} // '?') . ' ' . ($c->{error}{M} // ''); }
	}
	return \%t;
}

# A load generator in a child process: until stopped, it runs storms of
# $o{batch} logins (default 4) with application_names drawn from
# @{$o{apps}}, keeps each admitted session for up to $o{hold_ms}
# milliseconds (default 20), and closes it.  Counts, per login: "ok",
# "refused" (our 53300 message), and any other outcome by SQLSTATE (or
# EOF/SOCKET/TIMEOUT), so that a caller can compare with the counters.
# $o{login} has the login parameters (host, port, user, dbname).
#
#   my $l = DbpgWire::loader(login => {...}, apps => ['a', 'b']);
#   ...
#   my $tally = $l->stop;    # { ok => N, refused => N, 'other:57P01' => N, ... }
sub loader
{
	my (%o) = @_;
	my $file = $o{tally_file} // do {
		require File::Temp;
		my (undef, $f) = File::Temp::tempfile('dbpg-loader-XXXXXX', TMPDIR => 1, UNLINK => 1);
		$f;
	};
	my $pid = fork();
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# never run the parent's END blocks (they would stop its servers)
		my $stop = 0;
		local $SIG{TERM} = sub { $stop = 1; };
		my %tally = (ok => 0, refused => 0);
		my @apps = @{ $o{apps} };
		my $batch = $o{batch} // 4;
		my $hold = ($o{hold_ms} // 20) / 1000;
		my $seed = $o{seed} // $$;
		srand($seed);
		while (!$stop)
		{
			my @c = storm(
				[ map { { %{ $o{login} }, application_name => $apps[ int(rand(@apps)) ] } }
					  1 .. $batch ]);
			$tally{ $_->outcome }++ for @c;
			select(undef, undef, undef, rand($hold)) if $hold > 0;
			$_->close for grep { $_->{ok} } @c;
			# after a failure (server restarting), do not spin
			select(undef, undef, undef, 0.05)
			  if grep { !$_->{ok} && !$_->is_refusal } @c;
		}
		if (open(my $fh, '>', "$file.tmp"))
		{
			print $fh join(' ', map { "$_=$tally{$_}" } sort keys %tally), "\n";
			CORE::close($fh);
			rename("$file.tmp", $file);
		}
		require POSIX;
		POSIX::_exit(0);
	}
	return bless { pid => $pid, file => $file }, 'DbpgWire::Loader';
}

package DbpgWire::Loader;

# Stop the child, wait for it, and return its tally (a hash).
sub stop
{
	my ($self) = @_;
	return $self->{tally} if $self->{tally};
	kill 'TERM', $self->{pid};
	waitpid($self->{pid}, 0);
	my %t;
	if (open(my $fh, '<', $self->{file}))
	{
		my $line = <$fh> // '';
		CORE::close($fh);
		chomp $line;
		%t = map { split /=/, $_, 2 } split / /, $line;
	}
	$self->{tally} = \%t;
	return \%t;
}

sub DESTROY
{
	my ($self) = @_;
	if (!$self->{tally} && $self->{pid})
	{
		kill 'KILL', $self->{pid};
		waitpid($self->{pid}, 0);
	}
	return;
}

package DbpgWire;

sub DESTROY
{
	my ($self) = @_;
	CORE::close($self->{sock}) if $self->{sock};
	return;
}

1;
