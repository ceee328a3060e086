# Without shared_preload_libraries: CREATE EXTENSION works and every
# function and view says clearly what is missing (SQLSTATE 55000).

use strict;
use warnings FATAL => 'all';


use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use DbpgTest;

my $node = guard_node('nopreload', preload => 0, start => 0);
$node->start;

my ($ret, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION dbpool_guard');
is($ret, 0, 'CREATE EXTENSION works without preloading');
is($err, '', 'CREATE EXTENSION: no error or warning');

my $message = qr/ERROR:  55000: dbpool_guard must be loaded via "shared_preload_libraries"/;

# Every function and view the extension owns.
my @functions = split /\n/, $node->safe_psql(
	'postgres', q{
	SELECT p.proname FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
	 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dbpool_guard')
	 ORDER BY 1});
my @views = split /\n/, $node->safe_psql(
	'postgres', q{
	SELECT c.relname FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
	 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind = 'v'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dbpool_guard')
	 ORDER BY 1});

for my $f (qw(budget_check cancel_waiting_login health pool_row reset_counters status_rows rejections_rows sessions_rows terminate_sessions waiting_logins_rows))
{
	ok((grep { $_ eq $f } @functions), "function $f exists");
}
for my $v (qw(pool rejections sessions status waiting_logins))
{
	ok((grep { $_ eq $v } @views), "view $v exists");
}

sub fails_clearly
{
	my ($sql, $what) = @_;
	my ($ret, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	isnt($ret, 0, "$what: fails");
	like($err, $message, "$what: says it must be preloaded, SQLSTATE 55000");
}

# the functions that need arguments get the smallest valid call
my %args = (terminate_sessions => q{'some-service'}, cancel_waiting_login => '1');
for my $f (@functions)
{
	my $a = $args{$f} // '';
	fails_clearly("SELECT * FROM dbpool_guard.$f($a)", "function $f()");
}
for my $v (@views)
{
	fails_clearly("SELECT * FROM dbpool_guard.$v", "view $v");
}
fails_clearly("LOAD 'dbpool_guard'; SELECT * FROM dbpool_guard.status",
	'view status after LOAD in the session');

# A login with an application_name is not affected (no hook without preload).
{
	local $ENV{PGAPPNAME} = 'feed-service';
	is($node->safe_psql('postgres', 'SELECT 1'), '1', 'logins are not affected');
}

$node->stop;
done_testing();
