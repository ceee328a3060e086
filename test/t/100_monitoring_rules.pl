# The monitoring files checked by the real programs, without a server:
# promtool checks the alert rules and the example Prometheus configuration
# and runs the rules' unit tests; every alert is covered both ways, and a
# rule that never fires makes the unit tests fail (so they do test it); the
# Grafana dashboard is well-formed and its queries use the variables.
# DbpoolGuardNotEnforced and the enforcement panel (extension 1.4) have
# their shape checked here.  The rules file has exactly the expected alerts
# (with their severity and "for"), each with a runbook, a row in the alert
# table of docs/monitoring.md and a section there.
# The end-to-end checks against a server are in 120_monitoring_e2e.pl.

use strict;
use warnings FATAL => 'all';

use FindBin;

use File::Copy;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgMonitoring;

my $promtool = find_program('promtool');
plan skip_all => 'promtool is not installed (Debian package prometheus)'
  unless $promtool;

my $root = "$FindBin::RealBin/../..";
my $mon = "$root/docs/monitoring";
my $rules = "$mon/dbpool_guard.rules.yml";
my $rules_test = "$root/test/monitoring/dbpool_guard.rules.test.yml";
my $tmp = PostgreSQL::Test::Utils::tempdir();

# Run a command; returns (exit status, stdout + stderr).
sub run_cmd
{
	my @cmd = @_;
	my $out = '';
	IPC::Run::run(\@cmd, '<', \undef, '>&', \$out);
	note join(' ', @cmd) . "\n$out";
	return ($? >> 8, $out);
}

# --- PromQL selector extraction (used here and by 120_monitoring_e2e.pl) ---

my @cases = (
	[   'sum by (service) (rate(dbpool_guard_rejected_total{instance=~"$instance"}[$__rate_interval]))',
		'dbpool_guard_rejected_total{instance=~"$instance"}'
	],
	[   'a >= 0.9 or (b and c >= d{x="1"})',
		'a{} b{} c{} d{x="1"}'
	],
	[   'x{state="idle"} == 0 and ignoring (state) y > 0 unless on(a) group_left(b) z',
		'x{state="idle"} y{} z{}'
	],
	[ 'absent(m) * 1e+3 + topk(10, n offset 1h30m) / count without(l)(o)', 'm{} n{} o{}' ],
	[ '{__name__="up", job="x"}', 'up{__name__="up", job="x"}' ],
	[ 'sum(increase(p{a="}b)"}[5m:1m])) or vector(0)', 'p{a="}b)"}' ],);
for my $c (@cases)
{
	my $got = join ' ',
	  map { ($_->{name} // '-') . "{$_->{matchers}}" } promql_selectors($c->[0]);
	is($got, $c->[1], "selectors of: $c->[0]");
}
is( grafana_expand('rate(a{s=~"$service",i=~"${instance}"}[$__rate_interval])'),
	'rate(a{s=~".*",i=~".*"}[1m])',
	'Grafana variables expand to runnable PromQL');

# --- promtool check rules --------------------------------------------------------

my @alerts = rules_file_alerts($rules);
cmp_ok(scalar @alerts, '>=', 7, 'the rules file has its alerts: ' . join(', ', @alerts));
# Exactly these alerts, with these severities and windows: one dropped or
# renamed, or a new one not listed here, fails.  Extension 1.5 added
# DbpoolGuardLoginWaitTimeouts, DbpoolGuardBurstPoolExhausted and
# DbpoolGuardServiceBorrowingLong.
my %want_alerts = (
	DbpoolGuardServiceRefusingLogins => 'critical 2m',
	DbpoolGuardRefusalRateHigh => 'critical 1m',
	DbpoolGuardUtilizationCritical => 'critical 2m',
	DbpoolGuardUtilizationHigh => 'warning 5m',
	DbpoolGuardLoginWaitTimeouts => 'warning 2m',
	DbpoolGuardBurstPoolExhausted => 'warning 5m',
	DbpoolGuardServiceBorrowingLong => 'info 30m',
	DbpoolGuardWouldRefuseLogins => 'warning 2m',
	DbpoolGuardNotEnforced => 'warning 15m',
	DbpoolGuardBudgetsOversubscribed => 'warning 5m',
	DbpoolGuardIdleInTransactionLeak => 'warning 1m',
	DbpoolGuardSampleStale => 'warning 1m',
	DbpoolGuardNoIdleSessions => 'info 10m',
	DbpoolGuardMetricsAbsent => 'warning 10m',);
is_deeply([ sort @alerts ], [ sort keys %want_alerts ],
	'the rules file has exactly the expected alerts, each once');
my ($rc, $out) = run_cmd($promtool, 'check', 'rules', $rules);
is($rc, 0, 'promtool check rules succeeds');
like($out, qr/SUCCESS: ${\ scalar @alerts} rules found/,
	'promtool finds every alert of the file');

my (%severity, %for, %runbook);
{
	open(my $fh, '<', $rules) or die "$rules: $!";
	my $cur;
	while (<$fh>)
	{
		$cur = $1 if /^\s*-\s*alert:\s*(\S+)/;
		next unless defined $cur;
		$severity{$cur} = $1 if /^\s*severity:\s*(\S+)/;
		$for{$cur} = $1 if /^\s*for:\s*(\S+)/;
		$runbook{$cur} = $1 if /^\s*runbook:\s*(\S.*)$/;
	}
}
for my $alert (@alerts)
{
	like($severity{$alert} // '', qr/^(critical|warning|info)$/,
		"$alert has a severity label");
	is(($severity{$alert} // '-') . ' ' . ($for{$alert} // '-'),
		$want_alerts{$alert} // 'not expected',
		"$alert: severity and for as expected");
	like($runbook{$alert} // '', qr/\S{10}/, "$alert has a runbook annotation");
}

# docs/monitoring.md lists every alert in its table (with the same "for"
# and severity) and explains each under a heading of its name, and lists
# no other.
{
	my $md = slurp_file("$root/docs/monitoring.md");
	my (%row, %section);
	while ($md =~ /^\| `(DbpoolGuard\w+)` \|.*\| (\S+) \| (\S+) \|\s*$/mg)
	{
		$row{$1} = "$3 $2";
	}
	$section{$1}++ while $md =~ /^#### (DbpoolGuard\w+)\s*$/mg;
	is_deeply([ sort keys %row ], [ sort @alerts ],
		'docs/monitoring.md: the alert table lists exactly the alerts of the rules file');
	is_deeply([ sort keys %section ], [ sort @alerts ],
		'docs/monitoring.md: a section per alert, and no other');
	for my $alert (@alerts)
	{
		is($row{$alert} // 'no row',
			($severity{$alert} // '-') . ' ' . ($for{$alert} // '-'),
			"docs/monitoring.md: $alert has the rule's severity and for");
	}
}

# The guard is never silently off: an alert on budgets not enforced, keyed
# without the reason label (a change of reason must not restart its "for"),
# and firing too when the exporter reports no enforcement at all.
ok((grep { $_ eq 'DbpoolGuardNotEnforced' } @alerts), 'the rules file has DbpoolGuardNotEnforced');
{
	my ($block) = slurp_file($rules) =~
	  /(-\s*alert:\s*DbpoolGuardNotEnforced\s*\n.*?)(?:\n\s*-\s*alert:|\z)/s;
	like($block // '', qr/max without \(reason\) \(dbpool_guard_budgets_enforced\) == 0/,
		'DbpoolGuardNotEnforced: max without (reason) of dbpool_guard_budgets_enforced');
	like($block // '', qr/unless on \(instance, job, server\) dbpool_guard_budgets_enforced/,
		'DbpoolGuardNotEnforced: also when no enforcement series is reported');
	like($block // '', qr/^\s*for:\s*15m\s*$/m, 'DbpoolGuardNotEnforced: for 15m');
	is($severity{DbpoolGuardNotEnforced}, 'warning', 'DbpoolGuardNotEnforced: severity warning');
}

# Bursting (extension 1.5): the pool series have no service label, so the
# critical utilization alert matches a service to its server's pool on the
# server's labels (a plain "and" would never match).
{
	my ($block) = slurp_file($rules) =~
	  /(-\s*alert:\s*DbpoolGuardUtilizationCritical\s*\n.*?)(?:\n\s*-\s*alert:|\z)/s;
	like($block // '',
		qr/unless\s*\(\s*dbpool_guard_borrowed < dbpool_guard_burst\s+and on \(instance, job, server\)\s+dbpool_guard_pool_free > 0\s*\)/,
		'DbpoolGuardUtilizationCritical: unless it may still borrow, the pool matched on (instance, job, server)');
}

# --- promtool test rules ---------------------------------------------------------

($rc, $out) = run_cmd($promtool, 'test', 'rules', $rules_test);
is($rc, 0, 'promtool test rules: the unit tests pass');
like($out, qr/SUCCESS/, 'promtool test rules reports SUCCESS');

# Every alert is expected to fire somewhere and expected not to fire
# somewhere (exp_alerts: []).
my (%fires, %quiet);
{
	open(my $fh, '<', $rules_test) or die "$rules_test: $!";
	my ($alert, $in_exp);
	while (<$fh>)
	{
		if (/^\s*alertname:\s*(\S+)/) { $alert = $1; $in_exp = 0; next; }
		next unless defined $alert;
		if (/^\s*exp_alerts:\s*\[\]/) { $quiet{$alert}++; next; }
		if (/^\s*exp_alerts:\s*$/) { $in_exp = 1; next; }
		if ($in_exp && /^\s*-\s*exp_labels:/) { $fires{$alert}++; $in_exp = 0; }
	}
}
for my $alert (@alerts)
{
	ok($fires{$alert}, "unit tests expect $alert to fire");
	ok($quiet{$alert}, "unit tests expect $alert not to fire somewhere");
}

# A rule that never fires must make the unit tests fail: proves that
# promtool really evaluates each alert's expression against the cases.
my $rules_text = slurp_file($rules);
my $test_text = slurp_file($rules_test);
$test_text =~ s{^(\s*-\s*)\S*dbpool_guard\.rules\.yml\s*$}{$1$tmp/mutant.rules.yml}m
  or die "no rule_files entry in $rules_test";
write_file("$tmp/mutant.test.yml", $test_text);
for my $alert (@alerts)
{
	my $mutant = $rules_text;
	# the expr: line of this alert, and its indented continuation lines
	$mutant =~
	  s{(-\s*alert:\s*\Q$alert\E\s*\n\s*)expr:[^\n]*\n(?:\s{10,}[^\n]*\n)*}{${1}expr: vector(0) > 1\n}
	  or die "cannot find the expr of $alert";
	write_file("$tmp/mutant.rules.yml", $mutant);
	my ($mrc) = run_cmd($promtool, 'check', 'rules', "$tmp/mutant.rules.yml");
	is($mrc, 0, "$alert made never-firing is still a valid rule file");
	($mrc) = run_cmd($promtool, 'test', 'rules', "$tmp/mutant.test.yml");
	isnt($mrc, 0, "unit tests fail when $alert never fires");
}

# --- the example Prometheus configuration -------------------------------------

($rc, $out) = run_cmd($promtool, 'check', 'config', "$mon/prometheus.yml");
is($rc, 0, 'promtool check config docs/monitoring/prometheus.yml');

# --- the Grafana dashboard ---------------------------------------------------

my $json = slurp_file("$mon/dashboard.json");
my $d = eval { decode_json($json) };
ok($d, 'dashboard.json is JSON') or die "dashboard.json: $@";

my %var = map { $_->{name} => $_ } @{ $d->{templating}{list} };
is($var{datasource}{type} // '', 'datasource', 'a datasource variable');
is($var{datasource}{query} // '', 'prometheus', '... choosing among Prometheus data sources');
is($var{service}{type} // '', 'query', 'a service template variable');
ok($var{service}{multi} && $var{service}{includeAll}, '... multi-valued, with All');

my @panels = @{ $d->{panels} };
my %by_title = map { $_->{title} => $_ } @panels;
for my $t ('Budget enforcement by server', 'Utilization by service', 'Sessions by state',
	'Refusals per second', 'Admitted per second', 'Budget vs connections',
	'Top services by utilization', 'Borrowed vs burst by service', 'Burst pool',
	'Waiting logins', 'Waits per second')
{
	ok($by_title{$t}, "panel \"$t\"");
}
my $util = $by_title{'Utilization by service'};
my @steps = map { $_->{value} // () }
  @{ $util->{fieldConfig}{defaults}{thresholds}{steps} || [] };
is_deeply(\@steps, [ 0.75, 0.9 ], 'utilization thresholds at 0.75 and 0.9');
isnt($util->{fieldConfig}{defaults}{custom}{thresholdsStyle}{mode} // 'off',
	'off', '... drawn on the graph');

# enforcement: one value per server, mapped to Enforced / NOT ENFORCED, red
# below 1, the reason in the name
my $enf = $by_title{'Budget enforcement by server'};
is($enf->{type}, 'stat', 'the enforcement panel is a stat panel');
like($enf->{targets}[0]{expr} // '', qr/^min by \(instance, server, reason\) \(dbpool_guard_budgets_enforced\{/,
	'... of dbpool_guard_budgets_enforced per instance, server and reason');
like($enf->{targets}[0]{legendFormat} // '', qr/\{\{reason\}\}/, '... named with its reason');
my $map = $enf->{fieldConfig}{defaults}{mappings}[0]{options} || {};
is_deeply([ $map->{0}{text}, $map->{1}{text} ], [ 'NOT ENFORCED', 'Enforced' ],
	'... 0 shows NOT ENFORCED, 1 shows Enforced');
is_deeply(
	[ map { [ $_->{color}, $_->{value} ] } @{ $enf->{fieldConfig}{defaults}{thresholds}{steps} } ],
	[ [ 'red', undef ], [ 'green', 1 ] ],
	'... red unless 1');
is($enf->{gridPos}{y}, 0, '... at the top of the dashboard');

my %ids;
for my $p (@panels)
{
	ok(!$ids{ $p->{id} }++, "panel \"$p->{title}\" has a unique id");
	is($p->{datasource}{uid} // '', '${datasource}',
		"panel \"$p->{title}\" uses the datasource variable");
	for my $t (@{ $p->{targets} })
	{
		is($t->{datasource}{uid} // '', '${datasource}',
			"panel \"$p->{title}\" query $t->{refId} uses the datasource variable");
	}
}

# no two panels overlap on the 24-column grid
my %cell;
my $overlap = 0;
for my $p (@panels)
{
	my $g = $p->{gridPos};
	for my $x ($g->{x} .. $g->{x} + $g->{w} - 1)
	{
		for my $y ($g->{y} .. $g->{y} + $g->{h} - 1)
		{
			$overlap++ if $cell{"$x,$y"}++;
		}
	}
	cmp_ok($g->{x} + $g->{w}, '<=', 24, "panel \"$p->{title}\" fits the grid");
}
is($overlap, 0, 'no two panels overlap');

# every query names dbpool_guard metrics only, and filters them by the
# variables (service only where the metric has a service label)
my %no_service = map { $_ => 1 }
  qw(dbpool_guard_sample_age_seconds dbpool_guard_budget_oversubscribed
  dbpool_guard_budgets_enforced dbpool_guard_pool_size dbpool_guard_pool_borrowed
  dbpool_guard_pool_free dbpool_guard_pool_waiting_logins
  dbpool_guard_pool_max_waiting_logins);
for my $q (dashboard_queries($json))
{
	my @sel = promql_selectors($q->{expr});
	ok(@sel, "$q->{where}: has a metric selector");
	for my $s (@sel)
	{
		like($s->{name} // '', qr/^dbpool_guard_[a-z_]+$/,
			"$q->{where}: selects a dbpool_guard metric");
		next if $q->{where} =~ /^variable/;
		like($s->{matchers}, qr/instance=~"\$instance"/,
			"$q->{where}: $s->{name} filtered by \$instance");
		next if $no_service{ $s->{name} // '' };
		like($s->{matchers}, qr/service=~"\$service"/,
			"$q->{where}: $s->{name} filtered by \$service");
	}
}

done_testing();
