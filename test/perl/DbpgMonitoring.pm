# Helpers for the monitoring TAP tests (test/t/1*_monitoring*.pl): start
# and stop the Prometheus programs by PID, read their HTTP answers, parse
# the exposition format, and find the metric selectors in PromQL.
#
# Only Perl core modules here (HTTP::Tiny, JSON::PP, POSIX), so the tests
# need no package beyond the programs they drive.

package DbpgMonitoring;

use strict;
use warnings FATAL => 'all';

use Carp;
use Exporter 'import';
use File::Spec;
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  find_program start_process stop_process stop_all_processes
  http_get wait_for parse_exposition series_matching
  promql_selectors grafana_expand dashboard_queries
  prom_query prom_api rules_file_alerts write_file
);

my %running;    # pid => name, for stop_all_processes

# Write $text to $path, replacing the file.
sub write_file
{
	my ($path, $text) = @_;
	open(my $fh, '>', $path) or croak "$path: $!";
	print $fh $text;
	close($fh) or croak "$path: $!";
	return;
}

# The path of a program in PATH, or undef.
sub find_program
{
	my ($name, @first) = @_;
	for my $dir (@first, File::Spec->path)
	{
		my $p = File::Spec->catfile($dir, $name);
		return $p if -f $p && -x _;
	}
	return undef;
}

# Start a program in the background, stdout and stderr to $log, with %env
# added to the environment.  Returns its PID.
sub start_process
{
	my ($name, $log, $env, @cmd) = @_;
	my $pid = fork();
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null') or POSIX::_exit(126);
		open(STDOUT, '>>', $log) or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
		$ENV{$_} = $env->{$_} for keys %{ $env || {} };
		exec { $cmd[0] } @cmd or POSIX::_exit(127);
	}
	$running{$pid} = $name;
	return $pid;
}

# Stop a process started by start_process: SIGTERM, wait up to $timeout
# seconds, then SIGKILL.  Returns the wait status, or undef if it had to be
# killed.
sub stop_process
{
	my ($pid, $timeout) = @_;
	$timeout //= 20;
	return 0 unless delete $running{$pid};
	kill 'TERM', $pid;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		my $r = waitpid($pid, POSIX::WNOHANG());
		return $? if $r == $pid || $r == -1;
		usleep(50_000);
	}
	kill 'KILL', $pid;
	waitpid($pid, 0);
	return undef;
}

# Stop every process still running (for END blocks and failures).
sub stop_all_processes
{
	stop_process($_, 5) for keys %running;
	return;
}

# GET a URL: (status, body).  Status 599 means no answer.
sub http_get
{
	my ($url) = @_;
	my $r = HTTP::Tiny->new(timeout => 10)->get($url);
	return ($r->{status}, $r->{content} // '');
}

# Call $check until it returns true or $timeout seconds pass (default 60),
# every $interval_ms (default 200); returns its last value.
sub wait_for
{
	my ($check, $timeout, $interval_ms) = @_;
	my $deadline = time + ($timeout // 60);
	while (1)
	{
		my $v = $check->();
		return $v if $v || time >= $deadline;
		usleep(1000 * ($interval_ms // 200));
	}
}

# The samples of a text exposition: a list of
# { name => ..., labels => { ... }, value => number }.
sub parse_exposition
{
	my ($text) = @_;
	my @samples;
	for my $line (split /\n/, $text)
	{
		next if $line =~ /^\s*(#|$)/;
		$line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$/
		  or croak "cannot parse exposition line: $line";
		my ($name, $ltext, $v) = ($1, $2 // '', $3);
		my %labels;
		while ($ltext =~ /\G\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gc)
		{
			my ($k, $val) = ($1, $2);
			$val =~ s/\\n/\n/g;
			$val =~ s/\\(["\\])/$1/g;
			$labels{$k} = $val;
		}
		croak "cannot parse labels in: $line"
		  if (pos($ltext) // 0) != length($ltext);
		my $num =
			$v eq '+Inf' ? 9**9**9
		  : $v eq '-Inf' ? -9**9**9
		  : $v eq 'NaN'  ? 'NaN'
		  :                $v + 0;
		push @samples, { name => $name, labels => \%labels, value => $num,
			raw => $v };
	}
	return \@samples;
}

# Samples named $name whose labels include every pair in %want.
sub series_matching
{
	my ($samples, $name, %want) = @_;
	return grep {
		my $s = $_;
		$s->{name} eq $name
		  && !grep { !defined $s->{labels}{$_} || $s->{labels}{$_} ne $want{$_} }
		  keys %want
	} @$samples;
}

# ------------------------------------------------------------------ PromQL

# Keywords, and aggregation operators (which may be followed by "by (...)"
# before their parenthesis, so the next character does not tell them).
my %promql_keyword = map { $_ => 1 } qw(
  and or unless bool offset by without on ignoring group_left group_right
  inf nan atan2 start end
  sum min max avg group stddev stdvar count count_values bottomk topk quantile
);
my %promql_label_list = map { $_ => 1 }
  qw(by without on ignoring group_left group_right);

# Skip a quoted string starting at pos $i of $s; returns the position after.
sub _skip_string
{
	my ($s, $i) = @_;
	my $q = substr($s, $i, 1);
	$i++;
	while ($i < length $s)
	{
		my $c = substr($s, $i, 1);
		if ($c eq '\\' && $q ne '`') { $i += 2; next; }
		return $i + 1 if $c eq $q;
		$i++;
	}
	croak "unterminated string in PromQL: $s";
}

# Position after the bracket matching the one at $i ("{", "[" or "(").
sub _skip_group
{
	my ($s, $i) = @_;
	my %close = ('{' => '}', '[' => ']', '(' => ')');
	my @stack = ($close{ substr($s, $i, 1) });
	$i++;
	while ($i < length $s)
	{
		my $c = substr($s, $i, 1);
		if ($c eq '"' || $c eq "'" || $c eq '`') { $i = _skip_string($s, $i); next; }
		if (exists $close{$c}) { push @stack, $close{$c}; }
		elsif ($c eq $stack[-1]) { pop @stack; return $i + 1 unless @stack; }
		$i++;
	}
	croak "unbalanced brackets in PromQL: $s";
}

# The vector selectors of a PromQL expression: a list of
# { name => metric name or undef, matchers => 'text inside {}' or '' }.
# Function and aggregation names, keywords, label lists (by, on, ...),
# numbers, durations, ranges and strings are not selectors.
sub promql_selectors
{
	my ($expr) = @_;
	my @sel;
	my $i = 0;
	my $n = length $expr;
	while ($i < $n)
	{
		my $c = substr($expr, $i, 1);
		if ($c eq '"' || $c eq "'" || $c eq '`')
		{
			$i = _skip_string($expr, $i);
		}
		elsif ($c eq '[')
		{
			$i = _skip_group($expr, $i);    # range or subquery
		}
		elsif ($c eq '{')
		{
			# a selector without a name: {__name__="x", ...}
			my $end = _skip_group($expr, $i);
			my $m = substr($expr, $i + 1, $end - $i - 2);
			my ($name) = $m =~ /__name__\s*=\s*"([^"]*)"/;
			push @sel, { name => $name, matchers => $m };
			$i = $end;
		}
		elsif ($c =~ /[0-9.]/)
		{
			# numbers, durations (5m, 1h30m), hex, exponents (1e+3)
			my $start = $i++;
			while ($i < $n)
			{
				my $d = substr($expr, $i, 1);
				last
				  unless $d =~ /[0-9a-zA-Z_.]/
				  || ($d =~ /[+-]/
					&& substr($expr, $i - 1, 1) =~ /[eE]/
					&& substr($expr, $start, 2) !~ /^0[xX]/);
				$i++;
			}
		}
		elsif ($c =~ /[a-zA-Z_:]/)
		{
			my $start = $i;
			$i++ while $i < $n && substr($expr, $i, 1) =~ /[a-zA-Z0-9_:]/;
			my $word = substr($expr, $start, $i - $start);
			my $j = $i;
			$j++ while $j < $n && substr($expr, $j, 1) =~ /\s/;
			my $next = $j < $n ? substr($expr, $j, 1) : '';
			if ($promql_label_list{ lc $word })
			{
				$i = _skip_group($expr, $j) if $next eq '(';
			}
			elsif ($promql_keyword{ lc $word } || $next eq '(')
			{
				# keyword, or a function / aggregation name
			}
			elsif ($next eq '{')
			{
				my $end = _skip_group($expr, $j);
				push @sel, { name => $word,
					matchers => substr($expr, $j + 1, $end - $j - 2) };
				$i = $end;
			}
			else
			{
				push @sel, { name => $word, matchers => '' };
			}
		}
		else
		{
			$i++;
		}
	}
	return @sel;
}

# A Grafana query made runnable by Prometheus: interval macros become 1m,
# every other $variable becomes the regex ".*" (the dashboard's variables
# are all used as label_name=~"$variable").
sub grafana_expand
{
	my ($expr) = @_;
	$expr =~ s/\$\{?__(?:rate_interval|interval|range)\}?/1m/g;
	$expr =~ s/\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?/.*/g;
	return $expr;
}

# Every PromQL query of a Grafana dashboard (JSON text): panel targets,
# including panels nested in rows, and the metric expressions of query
# variables (label_values(metric{...}, label) gives metric{...}).
# Returns a list of { where => description, expr => text }.
sub dashboard_queries
{
	my ($json) = @_;
	my $d = decode_json($json);
	my @q;
	my @panels = @{ $d->{panels} || [] };
	while (my $p = shift @panels)
	{
		push @panels, @{ $p->{panels} || [] };
		for my $t (@{ $p->{targets} || [] })
		{
			next unless defined $t->{expr} && $t->{expr} ne '';
			push @q, { where => "panel \"$p->{title}\" query $t->{refId}",
				expr => $t->{expr} };
		}
	}
	for my $v (@{ $d->{templating}{list} || [] })
	{
		next unless ($v->{type} // '') eq 'query';
		my $q = ref $v->{query} ? $v->{query}{query} : $v->{query};
		next unless defined $q;
		if ($q =~ /^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$/s)
		{
			push @q, { where => "variable \$$v->{name}", expr => $1 };
		}
		elsif ($q =~ /^\s*query_result\((.*)\)\s*$/s)
		{
			push @q, { where => "variable \$$v->{name}", expr => $1 };
		}
	}
	return @q;
}

# GET /api/v1/<path> of a Prometheus server; returns the decoded "data",
# or dies with Prometheus's error.
sub prom_api
{
	my ($base, $path, %param) = @_;
	my $http = HTTP::Tiny->new(timeout => 20);
	my $url = "$base/api/v1/$path";
	$url .= '?' . $http->www_form_urlencode(\%param) if %param;
	my $r = $http->get($url);
	my $body = eval { decode_json($r->{content} // '') };
	croak "GET $url: $r->{status} $r->{reason} " . ($r->{content} // '')
	  unless $body && ($body->{status} // '') eq 'success';
	return $body->{data};
}

# An instant query: the result vector (list of { metric => {...}, value => [t, "v"] }).
sub prom_query
{
	my ($base, $expr) = @_;
	my $data = prom_api($base, 'query', query => $expr);
	croak "query $expr returned a $data->{resultType}, not a vector"
	  unless $data->{resultType} eq 'vector';
	return @{ $data->{result} };
}

# Alert names in a rules file (its "- alert: Name" lines).
sub rules_file_alerts
{
	my ($path) = @_;
	open(my $fh, '<', $path) or croak "$path: $!";
	my @names;
	while (<$fh>)
	{
		push @names, $1 if /^\s*-\s*alert:\s*['"]?([A-Za-z0-9_:]+)/;
	}
	close $fh;
	return @names;
}

1;
