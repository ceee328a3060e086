#!/usr/bin/perl
# test/package/check-meta.pl [TREE]: checks the PGXN META.json of TREE
# (default: this repository) with JSON::PP, as no PGXN validator is
# packaged for Debian 12.  Prints one TAP line per check and exits non-zero
# when any fails.  No root, no server, no network.
#
# Checked (PGXN Meta Spec 1.0.0, https://pgxn.org/meta/spec.txt):
#   - META.json parses as UTF-8 JSON, and its top level is an object;
#   - the required keys are there: name, abstract, version, maintainer,
#     license, provides, meta-spec (the spec's), prereqs and resources
#     (this project's);
#   - name is the extension's (dbpool_guard.control), license is
#     "postgresql" and LICENSE is the PostgreSQL License;
#   - version is x.y.z and equals default_version of dbpool_guard.control
#     plus ".0" (default_version = '1.4' -> 1.4.0);
#   - provides.dbpool_guard has a file that exists and the same version;
#   - prereqs.runtime.requires.PostgreSQL is 15.0.0;
#   - resources is a non-empty object; meta-spec.version is 1.0.0;
#   - debian/changelog's upstream version is the same x.y.z.

use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use JSON::PP;

my $tree = shift // File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $n = 0;
my $failed = 0;

sub check($$;$)
{
	my ($ok, $name, $why) = @_;
	$n++;
	if ($ok)
	{
		print "ok $n - $name\n";
	}
	else
	{
		$failed++;
		print "not ok $n - $name\n";
		print "#   $why\n" if defined $why;
	}
	return $ok;
}

sub slurp
{
	my ($path) = @_;
	open my $fh, '<:raw', $path or return undef;
	local $/;
	my $text = <$fh>;
	close $fh;
	return $text;
}

my $xyz = qr/^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$/;

# ------------------------------------------------------------ the control file

my $control = slurp("$tree/dbpool_guard.control");
my ($default_version) = ($control // '') =~ /^\s*default_version\s*=\s*'([^']*)'/m;
check(!!(defined $default_version && $default_version =~ /^[0-9]+\.[0-9]+$/),
	"dbpool_guard.control has default_version = 'x.y'",
	"default_version: " . ($default_version // 'not found'));
my $want = defined $default_version ? "$default_version.0" : undef;

# ------------------------------------------------------------ META.json

my $raw = slurp("$tree/META.json");
my $meta;
if (check(defined $raw, 'META.json exists', "$tree/META.json: $!"))
{
	$meta = eval { JSON::PP->new->utf8->relaxed(0)->decode($raw) };
	check(ref $meta eq 'HASH', 'META.json is a JSON object',
		$@ ? "JSON::PP: $@" : 'top level is not an object');
}
$meta = {} unless ref $meta eq 'HASH';

for my $key (qw(name abstract version maintainer license provides prereqs resources meta-spec))
{
	check(exists $meta->{$key}, "META.json has \"$key\"");
}

check(defined $meta->{name} && $meta->{name} eq 'dbpool_guard',
	'name is dbpool_guard (the extension)', 'name: ' . ($meta->{name} // 'missing'));
check(defined $meta->{abstract} && !ref $meta->{abstract} && length $meta->{abstract},
	'abstract is a non-empty string');

my $m = $meta->{maintainer};
check((defined $m && !ref $m && length $m)
	  || (ref $m eq 'ARRAY' && @$m && !grep { !defined $_ || ref $_ || !length $_ } @$m),
	'maintainer is a string or a list of strings');

check(defined $meta->{license} && $meta->{license} eq 'postgresql',
	'license is "postgresql"', 'license: ' . ($meta->{license} // 'missing'));
my $licence = slurp("$tree/LICENSE") // '';
check(!!($licence =~ /\APostgreSQL License\s*\n/ && $licence =~ /the dbpool_guard authors/),
	'LICENSE is the PostgreSQL License, copyright the dbpool_guard authors');

my $v = $meta->{version};
check(!!(defined $v && !ref $v && $v =~ $xyz), 'version is x.y.z', 'version: ' . ($v // 'missing'));
check(defined $v && defined $want && $v eq $want,
	"version equals default_version + \".0\" ($want)", 'version: ' . ($v // 'missing'));

my $p = ref $meta->{provides} eq 'HASH' ? $meta->{provides}{dbpool_guard} : undef;
if (check(ref $p eq 'HASH', 'provides has dbpool_guard'))
{
	check(defined $p->{file} && -f "$tree/$p->{file}",
		"provides.dbpool_guard.file exists in the tree",
		'file: ' . ($p->{file} // 'missing'));
	check(!!(defined $p->{version} && $p->{version} =~ $xyz && defined $want && $p->{version} eq $want),
		"provides.dbpool_guard.version is $want",
		'version: ' . ($p->{version} // 'missing'));
	check(!defined $p->{docfile} || -f "$tree/$p->{docfile}",
		'provides.dbpool_guard.docfile, if any, exists', "docfile: $p->{docfile}")
		if exists $p->{docfile};
}

my $pg = eval { $meta->{prereqs}{runtime}{requires}{PostgreSQL} };
check(defined $pg && $pg eq '15.0.0', 'prereqs.runtime.requires.PostgreSQL is 15.0.0',
	'PostgreSQL: ' . ($pg // 'missing'));

check(!!(ref $meta->{resources} eq "HASH" && %{ $meta->{resources} }),
	'resources is a non-empty object');

my $spec = ref $meta->{'meta-spec'} eq 'HASH' ? $meta->{'meta-spec'}{version} : undef;
check(defined $spec && $spec eq '1.0.0', 'meta-spec.version is 1.0.0',
	'meta-spec.version: ' . ($spec // 'missing'));

# ------------------------------------------------------------ debian/changelog

my $changelog = slurp("$tree/debian/changelog") // '';
my ($deb) = $changelog =~ /\A\S+ \(([^)]+)\)/;
my $upstream = defined $deb ? $deb =~ s/^[0-9]+://r =~ s/-[^-]*$//r : undef;
check(defined $upstream && defined $want && $upstream eq $want,
	"debian/changelog's upstream version is $want",
	'debian/changelog: ' . ($deb // 'no version'));

print "1..$n\n";
printf "META: %d passed, %d failed\n", $n - $failed, $failed;
exit($failed ? 1 : 0);
