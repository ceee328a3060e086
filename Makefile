# dbpool_guard: per-service connection budgets enforced at login.
#
#   make && make install          build and install into $(PG_CONFIG)'s server
#   make installcheck             pg_regress on a temporary instance, then TAP
#   make PG_CONFIG=/path/to/pg_config ...   any supported major (15-18)
#   make WERROR=1                 treat warnings as errors (CI)
#   make bench                    benchmarks (test/bench; not tests, prints figures)
#
# The one test command is test/run-tests.sh (README); it runs installcheck
# and the suites in test/suites (fuzzing, soak) as an unprivileged user.

MODULE_big = dbpool_guard
OBJS = \
	src/dbpool_guard.o \
	src/budgets.o \
	src/shmem.o \
	src/slots.o \
	src/admission.o \
	src/waiting.o \
	src/worker.o \
	src/views.o \
	src/terminate.o

EXTENSION = dbpool_guard
# Relative to $(srcdir), so that builds outside the tree (make -f
# /src/Makefile VPATH=/src, as Debian's pg_buildext does in build-NN/) find them.
DATA = $(patsubst $(srcdir)/%,%,$(wildcard $(srcdir)/sql/dbpool_guard--*.sql))
PGFILEDESC = "dbpool_guard - per-service connection budgets"

REGRESS = setup budgets views privileges health terminate identity enforcement upgrade
REGRESS_OPTS = --temp-instance=./tmp_regress --temp-config=test/regress.conf
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
EXTRA_CLEAN = tmp_regress tmp_check test/bench/pgstorm

# The library's version (PostgreSQL 18's module magic block shows it) is
# the control file's default_version, read next to this Makefile.
DBPG_VERSION := $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" \
	$(dir $(firstword $(MAKEFILE_LIST)))dbpool_guard.control)
PG_CPPFLAGS = -I$(srcdir)/src -DDBPG_VERSION='"$(DBPG_VERSION)"'
ifdef WERROR
PG_CFLAGS += -Werror
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every object depends on the shared headers (PGXS tracks no header
# dependencies unless configured with --enable-depend).
$(OBJS): src/dbpool_guard.h src/budgets.h src/compat.h

# Outside the tree the objects' directory src/ must be made in the build
# directory (an absolute name, which make does not look up in VPATH).
$(OBJS): | $(CURDIR)/src
$(CURDIR)/src:
	mkdir -p $@

# Benchmarks: they start their own clusters and never fail on a figure.
bench:
	PG_CONFIG=$(PG_CONFIG) bash test/bench/run-bench.sh

.PHONY: bench

# The tests' Perl modules (DbpgTest, DbpgWire, DbpgMonitoring, DbpgBouncer,
# DbpgElastic) live in test/perl, on prove's include path.
PG_PROVE_FLAGS += -I $(srcdir)/test/perl
