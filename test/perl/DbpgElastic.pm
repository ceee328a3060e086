# Helpers for the elastic-budget TAP tests (extension 1.5:
# test/t/700_burst.pl, 701_wait.pl, 702_elastic_reload.pl): a query
# session as the bootstrap superuser over the raw protocol, a model of the
# borrowing rules that holds the sessions it describes, and the helpers
# that start a login that waits and watch for its answer.
#
#   my $su = su_session($node);
#   is($su->q1('SELECT borrowed FROM dbpool_guard.pool'), '0', ...);
#   my $model = DbpgElastic::Model->new($su, pool => 3,
#       limits => { a => { budget => 3, burst => 2 }, ... });
#   my ($want, $got, $c) = $model->connect('a');    # the rules' answer, the server's
#   my $w = start_waiter($su, 'a');    # {wpid} once it shows in waiting_logins
#   ok(admitted($w));
#
# The tests configure every service with threshold 1.0, so the model takes
# a service's cap to be its budget.

package DbpgElastic;

use strict;
use warnings FATAL => 'all';

use Exporter 'import';

use DbpgTest qw(scalar_q wire_login wire_params);
use DbpgWire;
use DbpgMonitoring qw(wait_for);

our @EXPORT = qw(su_session answered start_waiter admitted);

# The bootstrap superuser over the raw protocol: one session for every
# query of a test, never counted, and no client process per poll (psql
# would take a process slot each time).
sub su_session
{
	my ($node) = @_;
	my $user = scalar_q($node, 'SELECT current_user');
	my $conn = wire_login($node, user => $user);
	die 'superuser login failed' unless $conn->{ok};
	return bless { node => $node, user => $user, conn => $conn }, 'DbpgElastic::Session';
}

# Has the login been answered (admitted, refused, or dropped)?
sub answered
{
	my ($c) = @_;
	$c->pump if $c->{sock} && $c->state eq 'startup';
	return $c->state ne 'startup';
}

# Start a login of $app (wire_params with %p) and wait until it shows in
# dbpool_guard.waiting_logins (its pid is then in {wpid}) or is answered.
# Start such logins one by one: the new pid is then this one's.
sub start_waiter
{
	my ($su, $app, %p) = @_;
	my %known = map { $_ => 1 } split /\n/, $su->q1('SELECT pid FROM dbpool_guard.waiting_logins');
	my $c = DbpgWire::start(wire_params($su->node, application_name => $app, %p));
	my $pid;
	wait_for(
		sub {
			return 1 if answered($c);
			($pid) = grep { !$known{$_} } split /\n/,
			  $su->q1('SELECT pid FROM dbpool_guard.waiting_logins');
			return defined $pid;
		},
		$DbpgTest::TIMEOUT, 10);
	$c->{wpid} = $pid;
	return $c;
}

# Wait for a waiting login's answer: was it admitted, in the backend that
# waited?
sub admitted
{
	my ($c) = @_;
	wait_for(sub { answered($c) }, $DbpgTest::TIMEOUT, 10);
	return $c->{ok} && $c->{pid} == $c->{wpid};
}

# --- the query session (su_session) -------------------------------------------------

package DbpgElastic::Session;

use DbpgMonitoring qw(wait_for);

sub node { return $_[0]->{node} }
sub user { return $_[0]->{user} }

# One query's rows, "|" between columns and "\n" between rows, NULL as
# "NULL".
sub q1
{
	my ($self, $sql) = @_;
	my $rows = $self->{conn}->query($sql);
	return join("\n", map { join('|', map { $_ // 'NULL' } @$_) } @$rows);
}

# Poll until the query gives $want (at most $DbpgTest::TIMEOUT s); returns
# the last value, for is().
sub wait_q
{
	my ($self, $sql, $want) = @_;
	my $got;
	wait_for(sub { ($got = $self->q1($sql)) eq $want }, $DbpgTest::TIMEOUT, 20);
	return $got;
}

sub close
{
	my ($self) = @_;
	$self->{conn}->close;
	return;
}

# --- the model of the rules ---------------------------------------------------------
#
# Per service: connections and borrowed slots; the pool's borrowed slots.
# A login takes an own slot while own (connections - borrowed) < cap, else
# a borrowed slot while borrowed < burst and the pool has a free slot,
# else it is refused.  A logout repays first.  Besides the counts, the
# model holds the sessions a test opened, oldest first per service.

package DbpgElastic::Model;

use DbpgTest qw(wire_login);

# new($su, pool => N, limits => { service => { budget => B, burst => N }, ... })
sub new
{
	my ($class, $su, %p) = @_;
	my $self = bless { su => $su, pool_size => $p{pool}, limits => {}, held => {} }, $class;
	$self->set_limits(%{ $p{limits} });
	$self->reset;
	return $self;
}

sub services { return sort keys %{ $_[0]->{limits} } }

# The services as an SQL list: 'a', 'b', ...
sub in_list
{
	my ($self) = @_;
	return join(', ', map { "'$_'" } $self->services);
}

sub limits      { return $_[0]->{limits}{ $_[1] } }
sub pool_size   { return $_[0]->{pool_size} }
sub pool_used   { return $_[0]->{pool_used} }
sub connections { return $_[0]->{model}{ $_[1] }{conn} }
sub borrowed    { return $_[0]->{model}{ $_[1] }{borrowed} }

# A reload: new limits (budget, burst) of some services; set_pool: the
# pool's size.
sub set_limits
{
	my ($self, %new) = @_;
	for my $s (keys %new)
	{
		$self->{limits}{$s} = { budget => $new{$s}{budget}, burst => $new{$s}{burst} };
		$self->{model}{$s} //= { conn => 0, borrowed => 0 };
		$self->{held}{$s} //= [];
	}
	return;
}

sub set_pool
{
	my ($self, $size) = @_;
	$self->{pool_size} = $size;
	return;
}

# Nothing in use (the sessions held are left alone).
sub reset
{
	my ($self) = @_;
	$self->{model}{$_} = { conn => 0, borrowed => 0 } for $self->services;
	$self->{pool_used} = 0;
	return;
}

# The rules' answer to a login of $s, 'ok' or 'refused'; the counts follow.
sub login
{
	my ($self, $s) = @_;
	my $m = $self->{model}{$s};
	my $l = $self->{limits}{$s};
	if ($m->{conn} - $m->{borrowed} < $l->{budget})
	{
		$m->{conn}++;
		return 'ok';
	}
	if ($m->{borrowed} < $l->{burst} && $self->{pool_used} < $self->{pool_size})
	{
		$m->{conn}++;
		$m->{borrowed}++;
		$self->{pool_used}++;
		return 'ok';
	}
	return 'refused';
}

# repay first: a service that holds borrowed slots gives one back to the
# pool, whichever of its sessions ends
sub logout
{
	my ($self, $s) = @_;
	my $m = $self->{model}{$s};
	$m->{conn}--;
	if ($m->{borrowed} > 0)
	{
		$m->{borrowed}--;
		$self->{pool_used}--;
	}
	return;
}

# The state the status view must show (1.5): rejecting when a new login
# would not be admitted at once, warning when own/budget >= 0.75 or it
# borrows, else ok.
sub state
{
	my ($self, $s) = @_;
	my $m = $self->{model}{$s};
	my $l = $self->{limits}{$s};
	my $own = $m->{conn} - $m->{borrowed};
	return 'rejecting' if $l->{budget} == 0 && $l->{burst} == 0;
	return 'rejecting'
	  if $own >= $l->{budget}
	  && ($m->{borrowed} >= $l->{burst} || $self->{pool_used} >= $self->{pool_size});
	return 'warning'
	  if ($l->{budget} > 0 && $own / $l->{budget} >= 0.75) || $m->{borrowed} > 0;
	return 'ok';
}

# "service:connections:borrowed ... pool:borrowed"
sub counts
{
	my ($self) = @_;
	my $model = $self->{model};
	return join(' ', map { "$_:$model->{$_}{conn}:$model->{$_}{borrowed}" } $self->services)
	  . " pool:$self->{pool_used}";
}

# "service:state ..."
sub states
{
	my ($self) = @_;
	return join(' ', map { "$_:" . $self->state($_) } $self->services);
}

# Take the counts from the server after a step that went another way
# than the model said, so that one failure does not cascade.
sub sync
{
	my ($self) = @_;
	my $su = $self->{su};
	my $in_list = $self->in_list;
	for my $row (split /\n/,
		$su->q1("SELECT service, connections, borrowed FROM dbpool_guard.status WHERE service IN ($in_list)"))
	{
		my ($s, $c, $b) = split /\|/, $row;
		$self->{model}{$s} = { conn => $c, borrowed => $b };
	}
	$self->{pool_used} = $su->q1('SELECT borrowed FROM dbpool_guard.pool');
	return;
}

# A login of $s, by the rules and on the server: the rules' answer, the
# server's ('ok', 'refused', 'other ...' with the message) and the
# connection, held when admitted.
sub connect
{
	my ($self, $s) = @_;
	my $want = $self->login($s);
	my $c = wire_login($self->{su}->node, application_name => $s);
	my $got = $c->outcome;
	$got .= " ($c->{error}{M})" if $got =~ /^other/;
	$self->hold($s, $c) if $c->{ok};
	return ($want, $got, $c);
}

# The oldest session of $s ends, on the server and in the model.
sub disconnect
{
	my ($self, $s) = @_;
	my $c = shift @{ $self->{held}{$s} };
	$c->close;
	$self->logout($s);
	return;
}

# Hold a session of $s that the model does not count (a storm's).
sub hold
{
	my ($self, $s, $c) = @_;
	push @{ $self->{held}{$s} }, $c;
	return;
}

# The sessions held for $s, or for every service; their number in
# scalar context.
sub sessions
{
	my ($self, $s) = @_;
	return @{ $self->{held}{$s} } if defined $s;
	return map { @{ $self->{held}{$_} } } $self->services;
}

# Every held session ends; nothing is in use any more.
sub close_all
{
	my ($self) = @_;
	for my $s ($self->services)
	{
		$_->close for @{ $self->{held}{$s} };
		$self->{held}{$s} = [];
	}
	$self->reset;
	return;
}

1;
