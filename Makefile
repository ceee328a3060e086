# dbpool_guard: per-service connection budgets enforced at login.
#
#   make && make install          build and install into $(PG_CONFIG)'s server
#   make installcheck             pg_regress on a temporary instance, then TAP
#   make PG_CONFIG=/path/to/pg_config ...   any supported major (15-18)
#   make WERROR=1                 treat warnings as errors (CI)

MODULE_big = dbpool_guard
OBJS = \
	src/dbpool_guard.o \
	src/budgets.o \
	src/shmem.o \
	src/admission.o \
	src/worker.o \
	src/views.o

EXTENSION = dbpool_guard
DATA = $(wildcard sql/dbpool_guard--*.sql)
PGFILEDESC = "dbpool_guard - per-service connection budgets"

REGRESS = setup budgets views privileges
REGRESS_OPTS = --temp-instance=./tmp_regress --temp-config=test/regress.conf
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))
EXTRA_CLEAN = tmp_regress

PG_CPPFLAGS = -I$(srcdir)/src
ifdef WERROR
PG_CFLAGS += -Werror
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
