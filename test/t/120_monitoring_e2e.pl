# End to end, with the real programs from Debian's packages: a server with
# dbpool_guard; prometheus-postgres-exporter (docs/monitoring/
# postgres_exporter.yaml) and prometheus-sql-exporter (docs/monitoring/
# sql_exporter.yml) on loopback ports, connecting as a member of pg_monitor
# listed in dbpool_guard.exempt_roles; a service driven into refusals
# after borrowing its burst from the burst pool (extension 1.5), so that
# the per-service burst and borrowed series and the pool series are not
# all 0; /metrics checked for names (exactly the table of docs/
# monitoring.md), labels and values against SQL (dbpool_guard.status,
# dbpool_guard.pool, budget_check(), enforcement()); a Prometheus
# server (docs/monitoring/prometheus.yml, its relabeling and the alert
# rules) scraping both, where every metric selector of every rule and of
# every dashboard panel must return series from each exporter; monitor
# mode makes both exporters report budgets not enforced, and the alert
# DbpoolGuardNotEnforced becomes pending with the reason, until enforce
# mode is back.  Every program started here is stopped here, by PID.

use strict;
use warnings FATAL => 'all';

use FindBin;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgMonitoring;
use DbpgTest;

my %prog = map { $_ => find_program($_) } qw(prometheus-postgres-exporter
  prometheus-sql-exporter prometheus promtool);
my @missing = grep { !$prog{$_} } sort keys %prog;
plan skip_all => "not installed: @missing (Debian packages prometheus, "
  . 'prometheus-postgres-exporter, prometheus-sql-exporter)'
  if @missing;

END { stop_all_processes(); }

my $root = "$FindBin::RealBin/../..";
my $mon = "$root/docs/monitoring";
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $logs = $PostgreSQL::Test::Utils::log_path;
my $wait = 90;    # seconds, for anything that polls

# --- the server ------------------------------------------------------------------

my $node = guard_node('e2e', conf => <<'EOC');
listen_addresses = '127.0.0.1'
dbpool_guard.budgets = 'auth-service=12, feed-service=8+4, cdn-service=2+1, blocked-service=0, *=2'
dbpool_guard.burst_pool = 3
dbpool_guard.max_waiters_total = 4
dbpool_guard.exempt_roles = 'dbpool_exporter'
dbpool_guard.sample_interval = 200
EOC
my $pgport = $node->port;

# the wiring docs/monitoring.md describes
$node->safe_psql('postgres', <<'EOS');
CREATE ROLE dbpool_exporter LOGIN;
GRANT pg_monitor TO dbpool_exporter;
EOS

# cdn-service at its cap (2 of 2) plus its burst (1 slot borrowed from the
# pool of 3), one session idle in transaction; feed-service (burst 4,
# nothing borrowed) with one idle session; one unlisted name in "*".  No
# login waits (dbpool_guard.max_wait is 0): max_waiters_total is set only
# so that every column of dbpool_guard.pool has a different value.
my @held = (hold($node, 'cdn-service'), hold($node, 'cdn-service'),
	hold($node, 'cdn-service'), hold($node, 'feed-service'),
	hold($node, 'misc-app'));
$held[1]->query_safe('BEGIN; SELECT 1;');
ok(wait_count($node, 'cdn-service', 3), 'cdn-service holds its 2 slots and 1 borrowed');
is(status_of($node, 'cdn-service', 'cap, burst, borrowed'), '2|1|1',
	'SQL: cdn-service has borrowed its burst of 1 beyond its cap of 2');
is( scalar_q($node,
		'SELECT size, borrowed, free, waiting_logins, max_waiters_total FROM dbpool_guard.pool'),
	'3|1|2|0|4',
	'SQL: the pool of 3 has 1 slot lent, 2 free, no waiting login, at most 4');

sub refuse
{
	my ($n) = @_;
	my $refused = 0;
	for (1 .. $n)
	{
		$refused++
		  if hold_fails($node, app => 'cdn-service') =~
		  refusal_re('cdn-service');
	}
	return $refused;
}
is(refuse(3), 3, 'three more cdn-service logins refused');

# --- the exporters -------------------------------------------------------------

my $pe_port = PostgreSQL::Test::Cluster::get_free_port();
my $se_port = PostgreSQL::Test::Cluster::get_free_port();
my $prom_port = PostgreSQL::Test::Cluster::get_free_port();
my $pe_url = "http://127.0.0.1:$pe_port/metrics";
my $se_url = "http://127.0.0.1:$se_port/metrics";
my $prom = "http://127.0.0.1:$prom_port";

my $pe_pid = start_process(
	'postgres_exporter',
	"$logs/120_monitoring_e2e_postgres_exporter.log",
	{   DATA_SOURCE_NAME =>
		  "host=127.0.0.1 port=$pgport user=dbpool_exporter dbname=postgres "
		  . 'sslmode=disable application_name=postgres_exporter'
	},
	$prog{'prometheus-postgres-exporter'},
	"--extend.query-path=$mon/postgres_exporter.yaml",
	"--web.listen-address=127.0.0.1:$pe_port");

# sql_exporter.yml as shipped, with this server's port and a 1 s interval
my $se_conf = slurp_file("$mon/sql_exporter.yml");
is($se_conf =~ s/127\.0\.0\.1:5432/127.0.0.1:$pgport/g, 1,
	'sql_exporter.yml: one connection URL to point at the test server');
is($se_conf =~ s/^(\s*interval:\s*)15s\s*$/${1}1s/mg, 1,
	'sql_exporter.yml: one job interval to shorten');
write_file("$tmp/sql_exporter.yml", $se_conf);
my $se_pid = start_process(
	'sql_exporter',
	"$logs/120_monitoring_e2e_sql_exporter.log",
	{ LOGLEVEL => 'info' },
	$prog{'prometheus-sql-exporter'},
	"-config.file=$tmp/sql_exporter.yml",
	"-web.listen-address=127.0.0.1:$se_port");

# Parsed samples of an exporter's dbpool_guard series (undef until the
# exporter answers with some).
sub scrape
{
	my ($url, $prefix) = @_;
	my ($code, $body) = http_get($url);
	return undef unless $code == 200 && $body =~ /^${prefix}dbpool_guard_/m;
	return [ grep { $_->{name} =~ /^${prefix}dbpool_guard_/ }
		  @{ parse_exposition($body) } ];
}

ok(wait_for(sub { scrape($pe_url, '') }, $wait),
	'postgres_exporter serves dbpool_guard metrics on loopback')
  or die 'postgres_exporter did not start; see its log';
ok(wait_for(sub { scrape($se_url, 'sql_') }, $wait),
	'sql_exporter serves dbpool_guard metrics on loopback')
  or die 'sql_exporter did not start; see its log';

# --- /metrics against SQL ----------------------------------------------------------

my @service_metrics = qw(budget cap connections peak_connections
  admitted_total rejected_total would_reject_total
  burst borrowed waiting_logins waited_total wait_timeouts_total);
# dbpool_guard.pool's column for each dbpool_guard_pool_* metric
my %pool_metrics = (
	size => 'size',
	borrowed => 'borrowed',
	free => 'free',
	waiting_logins => 'waiting_logins',
	max_waiting_logins => 'max_waiters_total',);
my @all_names = map { "dbpool_guard_$_" } @service_metrics,
  qw(utilization_ratio longest_idle_in_transaction_seconds sessions
  sample_age_seconds budget_oversubscribed budgets_enforced),
  map { "pool_$_" } sort keys %pool_metrics;
# metrics without a service label: one series per server
my %no_service = map { $_ => 1 } qw(dbpool_guard_sample_age_seconds
  dbpool_guard_budget_oversubscribed dbpool_guard_budgets_enforced),
  map { "dbpool_guard_pool_$_" } keys %pool_metrics;

# The metric table of docs/monitoring.md ("| `name` | type | labels | ...")
# lists exactly these names, with these labels.
my %doc_metrics;
for my $line (split /\n/, slurp_file("$root/docs/monitoring.md"))
{
	next unless $line =~ /^\| `(dbpool_guard_[a-z_]+)` \| (gauge|counter) \| ([^|]*?) \|/;
	my ($name, $type, $labels) = ($1, $2, $3);
	$labels = '' unless $labels =~ /\w/;    # an em dash: no label
	$doc_metrics{$name} = { type => $type, labels => join(',', sort split /,\s*/, $labels) };
}
is_deeply([ sort keys %doc_metrics ], [ sort @all_names ],
	'docs/monitoring.md: the metric table lists exactly the names this test checks');
for my $name (@all_names)
{
	my $want =
		$no_service{$name} ? ($name =~ /budgets_enforced/ ? 'reason' : '')
	  : $name =~ /_sessions$/ ? 'service,state'
	  :                         'service';
	is($doc_metrics{$name}{labels} // 'no row', $want,
		"docs/monitoring.md: $name has the labels " . ($want eq '' ? '(none)' : $want));
}

# The status view, budget_check(), enforcement() and the pool view as the
# test sees them now.
sub sql_state
{
	my $rows = decode_json(
		$node->safe_psql(
			'postgres', q{
		SELECT json_agg(json_build_object(
		         'service', service, 'budget', budget, 'cap', cap,
		         'connections', connections, 'peak_connections', peak_connections,
		         'admitted_total', admitted_total, 'rejected_total', rejected_total,
		         'would_reject_total', would_reject_total,
		         'burst', burst, 'borrowed', borrowed,
		         'waiting_logins', waiting_logins, 'waited_total', waited_total,
		         'wait_timeouts_total', wait_timeouts_total,
		         'utilization', utilization,
		         'longest', extract(epoch FROM longest_idle_in_transaction),
		         'active', active, 'idle', idle,
		         'idle_in_transaction', idle_in_transaction, 'waiting', waiting))
		  FROM dbpool_guard.status}));
	my $over = $node->safe_psql('postgres',
		'SELECT oversubscribed::int FROM dbpool_guard.budget_check()');
	my ($enforced, $reason) = split /\|/,
	  $node->safe_psql('postgres',
		'SELECT enforced::int, reason FROM dbpool_guard.enforcement()');
	my $pool = decode_json($node->safe_psql('postgres',
		'SELECT json_agg(p) FROM dbpool_guard.pool AS p'));
	die 'dbpool_guard.pool has ' . scalar(@$pool) . ' rows, expected 1'
	  unless @$pool == 1;
	return ({ map { $_->{service} => $_ } @$rows },
		$over, { enforced => $enforced, reason => $reason }, $pool->[0]);
}

# Differences between an exporter's samples and SQL, as readable lines.
# Scrape until every series equals SQL, or $wait seconds (sql_exporter
# serves what its last run, every 1 s, read).  Returns the last samples and
# the mismatches left.
sub scrape_until_equal
{
	my ($url, $prefix) = @_;
	my ($samples, @bad);
	wait_for(
		sub {
			$samples = scrape($url, $prefix);
			@bad = $samples ? mismatches($samples, $prefix) : ('no samples');
			return !@bad;
		},
		$wait);
	return ($samples, @bad);
}

sub mismatches
{
	my ($samples, $prefix) = @_;
	my ($rows, $over, $enf, $pool) = sql_state();
	my @bad;
	my %seen;
	my $inf = 9**9**9;
	my $check = sub {
		my ($name, $labels, $want, $tolerance) = @_;
		my @s = series_matching($samples, "$prefix$name", %$labels);
		my $what = "$name" . encode_json($labels);
		if (!defined $want)
		{
			push @bad, "$what: present, expected absent" if @s;
			return;
		}
		if (@s != 1)
		{
			push @bad, "$what: " . scalar(@s) . " series, expected 1";
			return;
		}
		$seen{ $s[0] } = 1;
		my $v = $s[0]{value};
		push @bad, "$what: $s[0]{raw}, SQL $want"
		  if $v eq 'NaN'
		  || ($want == $inf ? $v != $inf : abs($v - $want) > ($tolerance // 1e-9));
	};
	for my $r (values %$rows)
	{
		my %l = (service => $r->{service});
		# never NULL (docs/reference.md); the exporter files read them as
		# they are: postgres_exporter would report NaN, sql_exporter would
		# log an error on every run and drop the series
		push @bad, "dbpool_guard.status.$_ is NULL for service $r->{service}"
		  for grep { !defined $r->{$_} } qw(connections peak_connections
		  admitted_total rejected_total would_reject_total burst borrowed
		  waiting_logins waited_total wait_timeouts_total);
		$check->('dbpool_guard_budget', \%l, $r->{budget} // $inf);
		$check->('dbpool_guard_cap', \%l, $r->{cap} // $inf);
		$check->("dbpool_guard_$_", \%l, $r->{$_})
		  for qw(connections peak_connections admitted_total rejected_total
		  would_reject_total burst borrowed waiting_logins waited_total
		  wait_timeouts_total);
		$check->('dbpool_guard_utilization_ratio', \%l, $r->{utilization});
		$check->('dbpool_guard_longest_idle_in_transaction_seconds',
			\%l, $r->{longest}, 5);
		$check->('dbpool_guard_sessions', { %l, state => $_ }, $r->{$_})
		  for qw(active idle idle_in_transaction waiting);
	}
	$check->('dbpool_guard_budget_oversubscribed', {}, $over);
	push @bad, "dbpool_guard.pool.$_ is NULL"
	  for grep { !defined $pool->{$_} } values %pool_metrics;
	$check->("dbpool_guard_pool_$_", {}, $pool->{ $pool_metrics{$_} })
	  for sort keys %pool_metrics;
	# one series, labelled with the current reason (any other is unexpected)
	$check->('dbpool_guard_budgets_enforced', { reason => $enf->{reason} },
		$enf->{enforced});
	my ($age) = series_matching($samples, "${prefix}dbpool_guard_sample_age_seconds");
	push @bad, 'dbpool_guard_sample_age_seconds: missing or not in [0, 30)'
	  unless $age && $age->{value} ne 'NaN' && $age->{value} >= 0 && $age->{value} < 30;
	$seen{$age} = 1 if $age;
	push @bad, "unexpected series $_->{name}" . encode_json($_->{labels})
	  for grep { !$seen{$_} } @$samples;
	return @bad;
}

my ($rows) = sql_state();
my $sql_rejected = $rows->{'cdn-service'}{rejected_total};
is($sql_rejected, 3, 'SQL: cdn-service has 3 refusals');
ok($rows->{'cdn-service'}{idle_in_transaction} == 1
	  && $rows->{'feed-service'}{idle} == 1
	  && $rows->{'*'}{connections} == 1,
	'SQL: the held sessions are sampled (1 idle in transaction, 1 idle, 1 in "*")');
my $conns;
ok( wait_for(
		sub {
			$conns = $node->safe_psql('postgres', q{
				SELECT string_agg(DISTINCT application_name || '@' || host(client_addr), ' '
				                  ORDER BY application_name || '@' || host(client_addr))
				  FROM pg_stat_activity WHERE usename = 'dbpool_exporter'});
			return $conns eq 'postgres_exporter@127.0.0.1 prometheus-sql-exporter@127.0.0.1';
		},
		$wait),
	'both exporters are connected as dbpool_exporter over loopback TCP')
  or diag("sessions of dbpool_exporter: $conns");
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM dbpool_guard.sessions WHERE user_name = 'dbpool_exporter'"),
	0,
	'the exporters, an exempt role, hold no slot');

for my $e ([ 'postgres_exporter', $pe_url, '', [qw(server)] ],
	[ 'sql_exporter', $se_url, 'sql_', [qw(col database driver host sql_job user)] ])
{
	my ($who, $url, $prefix, $extra) = @$e;
	my ($samples, @bad) = scrape_until_equal($url, $prefix);
	is_deeply(\@bad, [], "$who: every dbpool_guard series equals SQL")
	  or diag(join("\n", @bad));

	my ($rej) = series_matching($samples, "${prefix}dbpool_guard_rejected_total",
		service => 'cdn-service');
	is($rej ? $rej->{value} : undef, $sql_rejected,
		"$who: ${prefix}dbpool_guard_rejected_total{service=\"cdn-service\"} equals SQL");

	my %names = map { $_->{name} => 1 } @$samples;
	is_deeply([ sort keys %names ], [ sort map { "$prefix$_" } @all_names ],
		"$who: exactly the documented metric names");

	for my $name (@all_names)
	{
		my @base =
			$name =~ /budgets_enforced/ ? qw(reason)
		  : $no_service{$name} ? ()
		  : $name =~ /_sessions$/ ? qw(service state)
		  :                         qw(service);
		my @want = sort @base, @$extra;
		my %sets = map { join(',', sort keys %{ $_->{labels} }) => 1 }
		  series_matching($samples, "$prefix$name");
		is_deeply([ keys %sets ], [ join(',', @want) ],
			"$who: $prefix$name has labels @want");
	}
	is(scalar(grep { $_->{raw} eq 'NaN' } @$samples), 0, "$who: no NaN");
	my %states = map { $_->{labels}{state} => 1 }
	  series_matching($samples, "${prefix}dbpool_guard_sessions");
	is_deeply([ sort keys %states ], [qw(active idle idle_in_transaction waiting)],
		"$who: sessions by state active, idle, idle_in_transaction, waiting");
	is( (series_matching($samples, "${prefix}dbpool_guard_budget", service => '*'))[0]
		  {value},
		2,
		"$who: the \"*\" entry's budget");
	my @enf = series_matching($samples, "${prefix}dbpool_guard_budgets_enforced");
	is_deeply([ map { "$_->{labels}{reason}=$_->{raw}" } @enf ], ['enforced=1'],
		"$who: ${prefix}dbpool_guard_budgets_enforced{reason=\"enforced\"} is 1, the only one");
}

# The excerpt shown in the closing note of the monitoring issue.
{
	my (undef, $body) = http_get($pe_url);
	note "postgres_exporter /metrics excerpt:\n"
	  . join("\n", grep { /^(# (HELP|TYPE) )?dbpool_guard_/ } split /\n/, $body);
	my (undef, $sbody) = http_get($se_url);
	note "sql_exporter /metrics excerpt:\n"
	  . join("\n", grep { /sql_dbpool_guard_rejected_total/ } split /\n/, $sbody);

	# postgres_exporter types each metric as the table of docs/monitoring.md
	# says (sql_exporter types every series gauge, as sql_exporter.yml says)
	my %type = $body =~ /^# TYPE (dbpool_guard_\w+) (\w+)$/mg;
	is_deeply({ map { $_ => $type{$_} } @all_names },
		{ map { $_ => $doc_metrics{$_}{type} } @all_names },
		'postgres_exporter: every metric has the type (gauge or counter) docs/monitoring.md gives');

	# the exporter's own lint of the exposition format
	my $lint = '';
	my $dbpg = join('', map { "$_\n" } grep { /^(# (HELP|TYPE) )?dbpool_guard_/ }
		  split /\n/, $body);
	IPC::Run::run([ $prog{promtool}, 'check', 'metrics' ], '<', \$dbpg,
		'>&', \$lint);
	is($? >> 8, 0, 'promtool check metrics: postgres_exporter series are lint-clean')
	  or diag($lint);
}

# --- Prometheus ----------------------------------------------------------------

# docs/monitoring/prometheus.yml as shipped, with the test's addresses,
# 1 s intervals and the rule file's full path
my $prom_conf = slurp_file("$mon/prometheus.yml");
my %subst = (
	qr/127\.0\.0\.1:9187/ => "127.0.0.1:$pe_port",
	qr/127\.0\.0\.1:9237/ => "127.0.0.1:$se_port",
	qr/(scrape_interval:\s*)15s/ => '${1}1s',
	qr/(evaluation_interval:\s*)15s/ => '${1}1s',
	qr/^(\s*-\s*)dbpool_guard\.rules\.yml\s*$/m => "\${1}$mon/dbpool_guard.rules.yml",);
for my $re (sort keys %subst)
{
	my $to = $subst{$re};
	is($prom_conf =~ s/$re/qq{"$to"}/ee, 1, "prometheus.yml: substitute $re");
}
write_file("$tmp/prometheus.yml", $prom_conf);
my $out = '';
IPC::Run::run([ $prog{promtool}, 'check', 'config', "$tmp/prometheus.yml" ],
	'<', \undef, '>&', \$out);
is($? >> 8, 0, 'promtool check config: the test configuration') or diag($out);

my $prom_pid = start_process(
	'prometheus',
	"$logs/120_monitoring_e2e_prometheus.log",
	{},
	$prog{prometheus},
	"--config.file=$tmp/prometheus.yml",
	"--storage.tsdb.path=$tmp/prometheus-data",
	"--web.listen-address=127.0.0.1:$prom_port");
ok(wait_for(sub { (http_get("$prom/-/ready"))[0] == 200 }, $wait),
	'Prometheus is ready on loopback')
  or die 'Prometheus did not start; see its log';

my @jobs = qw(postgres_exporter sql_exporter);
ok( wait_for(
		sub {
			my @up = eval { prom_query($prom, 'up == 1') };
			my %j = map { $_->{metric}{job} => 1 } @up;
			return !grep { !$j{$_} } @jobs;
		},
		$wait),
	'Prometheus scrapes both exporters (up == 1)');

# refusals while Prometheus watches, so that rates are above 0
my $more = refuse(2);
sleep 2;
$more += refuse(2);
is($more, 4, 'four more cdn-service logins refused while Prometheus scrapes');
($rows) = sql_state();
$sql_rejected = $rows->{'cdn-service'}{rejected_total};
is($sql_rejected, 7, 'SQL: cdn-service has 7 refusals');

# Prometheus's value of an instant query, per job.
sub by_job
{
	my ($expr) = @_;
	my %v;
	for my $r (prom_query($prom, $expr))
	{
		$v{ $r->{metric}{job} } = $r->{value}[1];
	}
	return \%v;
}
ok( wait_for(
		sub {
			my $v = by_job('dbpool_guard_rejected_total{service="cdn-service"}');
			return !grep { ($v->{$_} // -1) != $sql_rejected } @jobs;
		},
		$wait),
	'Prometheus: dbpool_guard_rejected_total{service="cdn-service"} equals SQL for both jobs'
);

# sql_exporter's series, relabeled, look exactly like postgres_exporter's
for my $name (@all_names)
{
	my %sets;
	for my $r (prom_query($prom, $name))
	{
		my %l = %{ $r->{metric} };
		my $job = delete $l{job};
		delete $l{instance};
		$sets{$job}{ encode_json([ map { ($_, $l{$_}) } sort keys %l ]) } = 1;
	}
	ok(keys %{ $sets{postgres_exporter} || {} }, "Prometheus has $name from postgres_exporter");
	is_deeply(
		[ sort keys %{ $sets{sql_exporter} || {} } ],
		[ sort keys %{ $sets{postgres_exporter} || {} } ],
		"relabeled sql_exporter series of $name have postgres_exporter's names and labels"
	);
}

# the selectors of every alert rule (as Prometheus loaded them) and of
# every dashboard query
my @exprs;
ok( wait_for(
		sub {
			my $data = eval { prom_api($prom, 'rules') } or return 0;
			my @r = map { @{ $_->{rules} } } @{ $data->{groups} };
			return 0 if !@r || grep { !$_->{lastEvaluation} || $_->{lastEvaluation} =~ /^0001/ } @r;
			@exprs = ();
			for my $r (@r)
			{
				push @exprs, { where => "rule $r->{name}", expr => $r->{query},
					health => $r->{health}, error => $r->{lastError} };
			}
			return 1;
		},
		$wait),
	'Prometheus has loaded and evaluated the alert rules');
is(scalar(@exprs), scalar(rules_file_alerts("$mon/dbpool_guard.rules.yml")),
	'every rule of the file is loaded');
for my $e (@exprs)
{
	is($e->{health}, 'ok', "$e->{where} evaluates without error")
	  or diag($e->{error});
}
my @dashboard = dashboard_queries(slurp_file("$mon/dashboard.json"));
cmp_ok(scalar(@dashboard), '>=', 12, 'the dashboard has its queries');
push @exprs, map { { where => "dashboard $_->{where}", expr => grafana_expand($_->{expr}) } }
  @dashboard;

my (%pe_names, %se_names);
$pe_names{ $_->{name} } = 1 for @{ scrape($pe_url, '') };
$se_names{ $_->{name} } = 1 for @{ scrape($se_url, 'sql_') };
for my $e (@exprs)
{
	my @sel = promql_selectors($e->{expr});
	ok(@sel, "$e->{where}: has metric selectors");
	for my $s (@sel)
	{
		my $name = $s->{name} // '';
		ok($pe_names{$name}, "$e->{where}: postgres_exporter emits $name");
		ok($se_names{"sql_$name"}, "$e->{where}: sql_exporter emits sql_$name");
		for my $job (@jobs)
		{
			my $m = $s->{matchers};
			my $q = "$name\{" . ($m ne '' ? "$m, " : '') . "job=\"$job\"}";
			my @r = eval { prom_query($prom, $q) };
			cmp_ok(scalar(@r), '>=', 1, "$e->{where}: $q returns series")
			  or diag($@);
		}
	}
}

# the check above can fail: a name no exporter emits returns nothing
ok(!$pe_names{dbpool_guard_no_such_metric} && !$se_names{sql_dbpool_guard_no_such_metric},
	'control: dbpool_guard_no_such_metric is not emitted');
is(scalar(prom_query($prom, 'dbpool_guard_no_such_metric')), 0,
	'control: a selector of a metric nobody emits returns no series');

# whole dashboard queries run and return data
for my $q (@dashboard)
{
	my $expr = grafana_expand($q->{expr});
	my @r = eval { prom_query($prom, $expr) };
	cmp_ok(scalar(@r), '>=', 1, "dashboard $q->{where} returns data")
	  or diag("$expr: $@");
}

# the refusing service's alerts are on their way (their firing is proven by
# promtool test rules; "for" keeps them pending here): at its cap with its
# burst used up, it is critical although the pool has a free slot, and it
# borrows
my %want_pending = map { $_ => 1 }
  qw(DbpoolGuardServiceRefusingLogins DbpoolGuardUtilizationCritical
  DbpoolGuardServiceBorrowingLong);
my (%pending, %other_alerts);
wait_for(
	sub {
		my $data = eval { prom_api($prom, 'alerts') } or return 0;
		%pending = ();
		%other_alerts = ();
		for my $alert (@{ $data->{alerts} })
		{
			$other_alerts{ $alert->{labels}{alertname} } = 1
			  if ($alert->{labels}{service} // '') ne 'cdn-service';
			next unless ($alert->{labels}{service} // '') eq 'cdn-service';
			$pending{"$alert->{labels}{alertname}/$alert->{labels}{job}"} = $alert->{state};
		}
		return !grep {
			my $al = $_;
			grep { !$pending{"$al/$_"} } @jobs
		} keys %want_pending;
	},
	$wait);
for my $al (sort keys %want_pending)
{
	for my $job (@jobs)
	{
		like($pending{"$al/$job"} // 'inactive', qr/^(pending|firing)$/,
			"$al is active for cdn-service ($job)");
	}
}
# the pool has a free slot all along: not exhausted (the alert is evaluated
# on the same samples that made the ones above active)
ok(!$other_alerts{DbpoolGuardBurstPoolExhausted},
	'DbpoolGuardBurstPoolExhausted is not active: the pool has a free slot');

# --- budgets not enforced: monitor mode ----------------------------------------

set_conf($node, 'dbpool_guard.mode' => 'monitor');
my (undef, undef, $enf) = sql_state();
is_deeply($enf, { enforced => 0, reason => 'mode_monitor' },
	'SQL: in monitor mode, enforcement() says not enforced, mode_monitor');
for my $e ([ 'postgres_exporter', $pe_url, '' ], [ 'sql_exporter', $se_url, 'sql_' ])
{
	my ($who, $url, $prefix) = @$e;
	my ($samples, @bad) = scrape_until_equal($url, $prefix);
	is_deeply(\@bad, [], "$who: every series equals SQL in monitor mode")
	  or diag(join("\n", @bad));
	my @enf = series_matching($samples, "${prefix}dbpool_guard_budgets_enforced");
	is_deeply([ map { "$_->{labels}{reason}=$_->{raw}" } @enf ], ['mode_monitor=0'],
		"$who: ${prefix}dbpool_guard_budgets_enforced{reason=\"mode_monitor\"} is 0, the only one");
}
ok( wait_for(
		sub {
			my $v = by_job('max without (reason) (dbpool_guard_budgets_enforced) == 0');
			return !grep { !defined $v->{$_} } @jobs;
		},
		$wait),
	'Prometheus: max without (reason) (dbpool_guard_budgets_enforced) == 0 for both jobs');

# DbpoolGuardNotEnforced: its "for" (15m) keeps it pending here; its
# description names the reason, read by the template's query
my %not_enforced;
my $not_enforced_alerts = sub {
	my $data = eval { prom_api($prom, 'alerts') } or return undef;
	return { map { $_->{labels}{job} => $_ }
		  grep { $_->{labels}{alertname} eq 'DbpoolGuardNotEnforced' }
		  @{ $data->{alerts} } };
};
wait_for(
	sub {
		my $a = $not_enforced_alerts->() or return 0;
		%not_enforced = %$a;
		return !grep {
			!$not_enforced{$_}
			  || ($not_enforced{$_}{annotations}{description} // '') !~ /reason: mode_monitor\)/
		} @jobs;
	},
	$wait);
for my $job (@jobs)
{
	my $a = $not_enforced{$job} || {};
	like($a->{state} // 'inactive', qr/^(pending|firing)$/,
		"DbpoolGuardNotEnforced is active in monitor mode ($job)");
	ok(!exists $a->{labels}{reason},
		"DbpoolGuardNotEnforced has no reason label: a change of reason keeps the alert ($job)");
	like($a->{annotations}{description} // '',
		qr/^dbpool_guard on \Q$a->{labels}{instance}\E has not enforced connection budgets for 15 minutes \(reason: mode_monitor\)/,
		"DbpoolGuardNotEnforced: the description names the reason ($job)")
	  or diag(explain($a));
}

# back to enforce: the series say enforced, and the alert is gone
set_conf($node, 'dbpool_guard.mode' => 'enforce');
for my $e ([ 'postgres_exporter', $pe_url, '' ], [ 'sql_exporter', $se_url, 'sql_' ])
{
	my ($who, $url, $prefix) = @$e;
	my ($samples, @bad) = scrape_until_equal($url, $prefix);
	is_deeply(\@bad, [], "$who: every series equals SQL back in enforce mode")
	  or diag(join("\n", @bad));
	my @enf = series_matching($samples, "${prefix}dbpool_guard_budgets_enforced");
	is_deeply([ map { "$_->{labels}{reason}=$_->{raw}" } @enf ], ['enforced=1'],
		"$who: back to ${prefix}dbpool_guard_budgets_enforced{reason=\"enforced\"} 1 only");
}
ok( wait_for(
		sub {
			my $a = $not_enforced_alerts->();
			return $a && !%$a;
		},
		$wait),
	'DbpoolGuardNotEnforced is no longer active once budgets are enforced again');

# --- no "*" entry: "*" has no budget, +Inf, and no utilization --------------

set_conf($node, 'dbpool_guard.budgets' =>
	  'auth-service=12, feed-service=8+4, cdn-service=2+1, blocked-service=0');
($rows) = sql_state();
ok(!defined $rows->{'*'}{budget} && !defined $rows->{'*'}{utilization},
	'SQL: without a "*" entry, "*" has no budget and no utilization');
is(status_of($node, '*', 'burst, borrowed, waiting_logins'), '0|0|0',
	'SQL: without a "*" entry, "*" has burst 0 (docs/reference.md: 0 when no budget applies), borrowed 0, waiting_logins 0');
for my $e ([ 'postgres_exporter', $pe_url, '' ], [ 'sql_exporter', $se_url, 'sql_' ])
{
	my ($who, $url, $prefix) = @$e;
	my ($samples, @bad) = scrape_until_equal($url, $prefix);
	is_deeply(\@bad, [], "$who: every series equals SQL without a \"*\" entry")
	  or diag(join("\n", @bad));
	for my $m (qw(budget cap))
	{
		my ($s) = series_matching($samples, "${prefix}dbpool_guard_$m", service => '*');
		is($s ? $s->{raw} : 'absent', '+Inf', "$who: ${prefix}dbpool_guard_$m\{service=\"*\"} is +Inf");
	}
	is(scalar(series_matching($samples, "${prefix}dbpool_guard_utilization_ratio",
		service => '*')), 0, "$who: no utilization for \"*\"");
	is(scalar(grep { $_->{raw} eq 'NaN' } @$samples), 0, "$who: still no NaN");
}
ok( wait_for(
		sub {
			my $v = by_job('dbpool_guard_cap{service="*"}');
			return !grep { ($v->{$_} // '') ne '+Inf' } @jobs;
		},
		$wait),
	'Prometheus: dbpool_guard_cap{service="*"} is +Inf for both jobs');
is(scalar(prom_query($prom, 'dbpool_guard_connections{service="*"} >= dbpool_guard_cap')), 0,
	'Prometheus: "*" without a budget is never at its cap');

# --- stop everything, by PID ---------------------------------------------------

for my $p ([ 'prometheus', $prom_pid ], [ 'postgres_exporter', $pe_pid ],
	[ 'sql_exporter', $se_pid ])
{
	ok(defined stop_process($p->[1]), "$p->[0] (pid $p->[1]) stopped by SIGTERM");
	ok(!kill(0, $p->[1]), "$p->[0] (pid $p->[1]) is gone");
}
# No NULL reached sql_exporter (sql_exporter.yml: it would log an error on
# every run, and drop the series)
{
	my @nil = grep { /"level":"error"/ && /nil/ }
	  split /\n/, slurp_file("$logs/120_monitoring_e2e_sql_exporter.log");
	is(scalar(@nil), 0, 'sql_exporter logged no error about a NULL value')
	  or diag(join("\n", @nil[ 0 .. ($#nil < 4 ? $#nil : 4) ]));
}
quit_all(@held);
$node->stop;
done_testing();
