/*-------------------------------------------------------------------------
 * pgstorm.c
 *		Login storm client: opens N connections at once with libpq's
 *		non-blocking connect, holds the admitted ones, closes them, and
 *		reports admitted/refused counts by SQLSTATE and login latency.
 *
 * It is the load client of the dbpool_guard benchmarks (test/bench/) and
 * an operator's stress tool: before raising a service's budget in
 * production, open as many connections as the service would and see how
 * many the server admits.
 *
 * Two more shapes of load, for the benchmarks of dbpool_guard 1.5:
 * --hold-each closes every admitted connection on its own, a fixed time
 * after its admission (--stagger spreads those times), so that logins
 * waiting for a slot get the slots as the holders leave; --loop makes the
 * N slots N clients that reconnect as soon as their connection is closed
 * or refused, for a given time: a pool recycling its connections.
 *
 * How the SQLSTATE of a failed connection is found.  libpq has no
 * accessor for the fields of an error received during connection
 * startup: PQresultErrorField() needs a PGresult, and the one PQgetResult()
 * hands back after a failed PQconnectPoll() is libpq's own, without the
 * server's fields (checked with libpq 15).  But the text of the error is
 * built by libpq from the server's fields using the connection's error
 * verbosity, and PQsetErrorVerbosity() may be called on the PGconn that
 * PQconnectStartParams() returns, before it is polled.  With
 * PQERRORS_VERBOSE the message reads
 *		... failed: FATAL:  53300: too many connections for service "x"
 * so we parse the five characters after the severity.  The severity word
 * may be translated, the "SEVERITY:  SQLSTATE: " layout is not.  Errors
 * raised by libpq itself (no server, bad option) carry no SQLSTATE and
 * are counted as "client".
 *
 * IDENTIFICATION
 *		test/bench/pgstorm.c
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "libpq-fe.h"

#define PGSTORM_VERSION "1.0"
#define MAX_STATES 32
#define OUR_MESSAGE "too many connections for service \""

typedef enum
{
	SLOT_IDLE,					/* not started yet */
	SLOT_CONNECTING,
	SLOT_ADMITTED,
	SLOT_DONE					/* refused, failed, timed out or closed */
} SlotState;

typedef struct
{
	PGconn	   *conn;
	SlotState	state;
	PostgresPollingStatusType last;	/* last PQconnectPoll() result */
	double		started;		/* monotonic seconds */
	double		close_at;		/* --hold-each: when to close it */
	char		appname[64];
} Slot;

/* a growable array of latencies */
typedef struct
{
	double	   *v;
	long		n;
	long		cap;
} DArr;

typedef struct
{
	char		code[8];		/* SQLSTATE, "client" or "timeout" */
	long		count;
} StateCount;

typedef struct
{
	int			round;
	long		attempted;
	long		admitted;
	long		refused;		/* failed with a server SQLSTATE */
	long		ours;			/* ... and our refusal message */
	long		client;			/* failed inside libpq, no SQLSTATE */
	long		timeouts;
	long		lost;			/* admitted, then closed by the server */
	int			nstates;
	StateCount	states[MAX_STATES];
	long		max_open;		/* most admitted connections open at once */
	/* latencies in ms: all attempts, admitted, refused */
	DArr		lat_all;
	DArr		lat_ok;
	DArr		lat_ref;
	double		connect_secs;	/* from first start to last resolution */
} Stats;

/* options */
static const char *opt_conninfo = NULL;
static const char *opt_host = NULL;
static const char *opt_port = NULL;
static const char *opt_user = NULL;
static const char *opt_appname = NULL;
static int	opt_app_count = 0;
static long opt_n = 10;
static long opt_concurrency = 0;
static double opt_hold = 1.0;
static int	opt_rounds = 1;
static double opt_pause = 1.0;
static double opt_timeout = 30.0;
static double opt_hold_each = -1;	/* < 0: hold a round's sessions together */
static double opt_stagger = 0;
static double opt_loop = 0;		/* > 0: reconnect for this many seconds */
static const char *opt_service = NULL;
static enum
{
	OUT_TEXT, OUT_CSV, OUT_JSON
}			opt_format = OUT_TEXT;
static bool opt_quiet = false;
static bool opt_verbose = false;
static FILE *dump_file = NULL;

/* SQLSTATEs already shown by --verbose */
static char seen_states[MAX_STATES][8];
static int	nseen = 0;

static volatile sig_atomic_t interrupted = 0;

static void
on_signal(int signo)
{
	(void) signo;
	interrupted = 1;
}

static double
now_secs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
xmalloc(size_t size)
{
	void	   *p = calloc(1, size ? size : 1);

	if (p == NULL)
	{
		fprintf(stderr, "pgstorm: out of memory\n");
		exit(1);
	}
	return p;
}

static void
usage(void)
{
	printf("pgstorm opens many PostgreSQL connections at once and reports which were admitted.\n"
		   "\n"
		   "Usage:\n"
		   "  pgstorm [OPTION]...\n"
		   "\n"
		   "Connection (libpq environment variables PGHOST, PGPORT, PGUSER, ... apply too):\n"
		   "  -d, --dbname=CONNINFO    database name, or a conninfo string or URI\n"
		   "  -h, --host=HOST          server host or socket directory\n"
		   "  -p, --port=PORT          server port\n"
		   "  -U, --username=USER      role to connect as\n"
		   "  -a, --appname=NAME       application_name, i.e. the dbpool_guard service;\n"
		   "                           \"%%d\" in NAME is replaced by 1..COUNT (see -A)\n"
		   "  -A, --app-count=COUNT    number of distinct names made from a \"%%d\" NAME\n"
		   "                           (default: one per connection)\n"
		   "\n"
		   "Load:\n"
		   "  -n, --connections=N      connections opened per round (default 10)\n"
		   "  -c, --concurrency=K      at most K connection attempts in flight\n"
		   "                           (default: all N at once; 1 = one after another)\n"
		   "  -H, --hold=SECONDS       keep admitted connections open this long after the\n"
		   "                           last attempt of the round resolved (default 1;\n"
		   "                           -1 = until SIGINT/SIGTERM, e.g. Ctrl-C)\n"
		   "  -e, --hold-each=SECONDS  close each admitted connection this long after its\n"
		   "                           own admission, instead of holding the round's\n"
		   "                           sessions together (-H is then ignored)\n"
		   "      --stagger=SECONDS    with -e: the k-th admitted connection (0, 1, ...)\n"
		   "                           is held -e + k x SECONDS, so closes are spread\n"
		   "  -L, --loop=SECONDS       with -e: N clients that reconnect as soon as their\n"
		   "                           connection is closed, refused or failed, for\n"
		   "                           SECONDS (a pool recycling its connections);\n"
		   "                           one round\n"
		   "  -r, --rounds=R           rounds (default 1)\n"
		   "  -P, --pause=SECONDS      pause between rounds, so the server can release the\n"
		   "                           closed sessions' slots (default 1)\n"
		   "  -t, --timeout=SECONDS    give up on an attempt after this long (default 30)\n"
		   "  -s, --service=NAME       count refusals \"too many connections for service\n"
		   "                           \"NAME\"\" (default: each connection's own application_name)\n"
		   "\n"
		   "Output:\n"
		   "      --csv                one CSV line per round and one for the total\n"
		   "      --json               one JSON document\n"
		   "  -q, --quiet              total only\n"
		   "  -v, --verbose            print the first error message of each SQLSTATE\n"
		   "      --dump=FILE          append one CSV line per attempt to FILE:\n"
		   "                           round,outcome,sqlstate,ours,latency_ms\n"
		   "      --help               show this help, then exit\n"
		   "      --version            show the version, then exit\n"
		   "\n"
		   "For each round it reports: attempted, admitted, refused (by SQLSTATE), how many\n"
		   "refusals carried dbpool_guard's message, failures inside the client (no server\n"
		   "reached: no SQLSTATE), timeouts, admitted sessions the server closed while they\n"
		   "were held, the most admitted connections open at once (as the client saw\n"
		   "them), and latency percentiles (p50/p90/p99/max, in ms) from the start of an\n"
		   "attempt to its admission or refusal.  Exit status is 0 when the run completed,\n"
		   "whatever the server answered; 1 on a usage error.\n"
		   "\n"
		   "Check a budget before changing it (as the service's role, from a client host):\n"
		   "  pgstorm -d \"host=db1 dbname=app user=feed\" -a feed-service -n 12 -H 5\n"
		   "With dbpool_guard.budgets 'feed-service=12' (cap 11 at threshold 0.85) and no\n"
		   "other feed-service sessions, expect 11 admitted and 1 refused with 53300 and\n"
		   "dbpool_guard's message.  The held connections count against the live service:\n"
		   "run it when the service has headroom, with a short --hold.\n");
}

/* Parse "SEVERITY:  XXXXX: " out of a verbose libpq error message. */
static bool
parse_sqlstate(const char *msg, char *code)
{
	const char *p;

	for (p = msg; (p = strstr(p, ":  ")) != NULL; p++)
	{
		const char *c = p + 3;
		int			i;

		for (i = 0; i < 5; i++)
			if (!isdigit((unsigned char) c[i]) && !isupper((unsigned char) c[i]))
				break;
		if (i == 5 && c[5] == ':' && c[6] == ' ')
		{
			memcpy(code, c, 5);
			code[5] = '\0';
			return true;
		}
	}
	return false;
}

static void
count_state(Stats *st, const char *code, const char *msg)
{
	int			i;

	for (i = 0; i < st->nstates; i++)
		if (strcmp(st->states[i].code, code) == 0)
		{
			st->states[i].count++;
			return;
		}
	if (st->nstates < MAX_STATES)
	{
		snprintf(st->states[i].code, sizeof(st->states[i].code), "%s", code);
		st->states[i].count = 1;
		st->nstates++;
	}
	if (opt_verbose && nseen < MAX_STATES)
	{
		for (i = 0; i < nseen; i++)
			if (strcmp(seen_states[i], code) == 0)
				return;
		snprintf(seen_states[nseen++], sizeof(seen_states[0]), "%s", code);
		fprintf(stderr, "pgstorm: first %s: %s", code, msg);
	}
}

/* --dump: one line per attempt */
static void
dump_attempt(const Stats *st, const char *outcome, const char *code, bool ours,
			 double ms)
{
	if (dump_file != NULL)
		fprintf(dump_file, "%d,%s,%s,%d,%.3f\n", st->round, outcome, code,
				ours ? 1 : 0, ms);
}

static void
make_appname(long i, char *buf, size_t len)
{
	const char *pct;

	buf[0] = '\0';
	if (opt_appname == NULL)
		return;
	pct = strstr(opt_appname, "%d");
	if (pct == NULL)
		snprintf(buf, len, "%s", opt_appname);
	else
	{
		long		k = opt_app_count > 0 ? (i % opt_app_count) + 1 : i + 1;

		snprintf(buf, len, "%.*s%ld%s", (int) (pct - opt_appname), opt_appname,
				 k, pct + 2);
	}
}

/* The application_name libpq actually sends (option, PGAPPNAME or none). */
static void
effective_appname(PGconn *conn, char *buf, size_t len)
{
	PQconninfoOption *opts = PQconninfo(conn);
	PQconninfoOption *o;

	if (opts == NULL)
		return;
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "application_name") == 0 && o->val != NULL &&
			o->val[0] != '\0')
			snprintf(buf, len, "%s", o->val);
	PQconninfoFree(opts);
}

static void
start_slot(Slot *s, long i)
{
	const char *keys[7];
	const char *vals[7];

	make_appname(i, s->appname, sizeof(s->appname));
	/*
	 * libpq skips a keyword whose value is NULL or empty, and later entries
	 * override what the conninfo string in dbname says.
	 */
	keys[0] = "dbname";
	vals[0] = opt_conninfo;
	keys[1] = "host";
	vals[1] = opt_host;
	keys[2] = "port";
	vals[2] = opt_port;
	keys[3] = "user";
	vals[3] = opt_user;
	keys[4] = "application_name";
	vals[4] = s->appname;
	keys[5] = "fallback_application_name";
	vals[5] = "pgstorm";
	keys[6] = NULL;
	vals[6] = NULL;

	s->started = now_secs();
	s->conn = PQconnectStartParams(keys, vals, 1);
	if (s->conn == NULL)
	{
		fprintf(stderr, "pgstorm: out of memory\n");
		exit(1);
	}
	/* makes libpq put the server's SQLSTATE into the error text */
	PQsetErrorVerbosity(s->conn, PQERRORS_VERBOSE);
	effective_appname(s->conn, s->appname, sizeof(s->appname));
	s->state = SLOT_CONNECTING;
	/* the libpq documentation: behave as if the last poll said "writing" */
	s->last = PGRES_POLLING_WRITING;
	if (PQstatus(s->conn) == CONNECTION_BAD)
		s->last = PGRES_POLLING_FAILED;
}

static void
add_latency(DArr *a, double ms)
{
	if (a->n == a->cap)
	{
		long		cap = a->cap < 64 ? 64 : a->cap * 2;
		double	   *v = realloc(a->v, sizeof(double) * cap);

		if (v == NULL)
		{
			fprintf(stderr, "pgstorm: out of memory\n");
			exit(1);
		}
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = ms;
}

static void
append_latencies(DArr *to, const DArr *from)
{
	long		i;

	for (i = 0; i < from->n; i++)
		add_latency(to, from->v[i]);
}

/* Messages the server sends to a held session (e.g. the FATAL of a
 * pg_terminate_backend) are counted as "lost", not printed, unless -v. */
static void
notice_quiet(void *arg, const char *message)
{
	(void) arg;
	if (opt_verbose)
		fprintf(stderr, "pgstorm: held session: %s", message);
}

/* An attempt got no answer before --timeout: count it and drop it. */
static void
time_out_slot(Stats *st, Slot *s, double t)
{
	st->timeouts++;
	count_state(st, "timeout", "no answer before --timeout\n");
	dump_attempt(st, "timeout", "", false, (t - s->started) * 1000.0);
	PQfinish(s->conn);
	s->conn = NULL;
	s->state = SLOT_DONE;
}

/* An attempt resolved: record its outcome. */
static void
resolve_slot(Stats *st, Slot *s, double t)
{
	double		ms = (t - s->started) * 1000.0;

	if (s->last == PGRES_POLLING_OK)
	{
		s->state = SLOT_ADMITTED;
		PQsetNoticeProcessor(s->conn, notice_quiet, NULL);
		st->admitted++;
		add_latency(&st->lat_all, ms);
		add_latency(&st->lat_ok, ms);
		dump_attempt(st, "admitted", "", false, ms);
		return;
	}
	else
	{
		const char *msg = PQerrorMessage(s->conn);
		char		code[6];
		bool		ours;

		if (parse_sqlstate(msg, code))
		{
			char		want[200];
			const char *name = opt_service != NULL ? opt_service : s->appname;

			st->refused++;
			count_state(st, code, msg);
			if (name[0] != '\0')
				snprintf(want, sizeof(want), OUR_MESSAGE "%s\"", name);
			else
				snprintf(want, sizeof(want), OUR_MESSAGE);
			ours = strcmp(code, "53300") == 0 && strstr(msg, want) != NULL;
			if (ours)
				st->ours++;
			dump_attempt(st, "refused", code, ours, ms);
			add_latency(&st->lat_all, ms);
			add_latency(&st->lat_ref, ms);
		}
		else
		{
			st->client++;
			count_state(st, "client", msg);
			dump_attempt(st, "client", "", false, ms);
		}
		PQfinish(s->conn);
		s->conn = NULL;
		s->state = SLOT_DONE;
	}
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array; NAN when empty */
static double
pct(const double *arr, long n, double p)
{
	long		rank;

	if (n == 0)
		return NAN;
	rank = (long) ceil(p * n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return arr[rank - 1];
}

/* Interruptible sleep. */
static void
sleep_secs(double secs)
{
	double		end = now_secs() + secs;

	while (!interrupted)
	{
		double		left = end - now_secs();

		if (left <= 0)
			break;
		(void) poll(NULL, 0, left > 0.2 ? 200 : (int) (left * 1000) + 1);
	}
}

/*
 * Hold the admitted connections: wait, noticing sessions the server
 * closes (pg_terminate_backend, idle_session_timeout, shutdown).
 */
static void
hold_slots(Stats *st, Slot *slots, long n, struct pollfd *pfds, long *idx)
{
	double		end = now_secs() + opt_hold;

	while (!interrupted)
	{
		long		np = 0;
		long		i;
		int			wait_ms = 200;

		if (opt_hold >= 0)
		{
			double		left = end - now_secs();

			if (left <= 0)
				break;
			if (left < 0.2)
				wait_ms = (int) (left * 1000) + 1;
		}
		for (i = 0; i < n; i++)
			if (slots[i].state == SLOT_ADMITTED)
			{
				pfds[np].fd = PQsocket(slots[i].conn);
				pfds[np].events = POLLIN;
				pfds[np].revents = 0;
				idx[np++] = i;
			}
		if (poll(pfds, np, wait_ms) <= 0)
			continue;
		for (i = 0; i < np; i++)
		{
			Slot	   *s = &slots[idx[i]];

			if (pfds[i].revents == 0)
				continue;
			if (!PQconsumeInput(s->conn) || PQstatus(s->conn) != CONNECTION_OK)
			{
				st->lost++;
				PQfinish(s->conn);
				s->conn = NULL;
				s->state = SLOT_DONE;
			}
			else
			{
				PGresult   *r;

				/* drain anything asynchronous (e.g. a notice) */
				while (!PQisBusy(s->conn) && (r = PQgetResult(s->conn)) != NULL)
					PQclear(r);
			}
		}
	}
}

static void
run_round(Stats *st, Slot *slots, struct pollfd *pfds, long *idx)
{
	long		next = 0;		/* next slot to start */
	long		inflight = 0;
	long		resolved = 0;
	long		limit = opt_concurrency > 0 ? opt_concurrency : opt_n;
	double		t0 = now_secs();
	long		i;

	memset(slots, 0, sizeof(Slot) * opt_n);

	while (resolved < opt_n && !interrupted)
	{
		long		np = 0;
		double		t;
		int			rc;

		while (next < opt_n && inflight < limit)
		{
			start_slot(&slots[next], next);
			st->attempted++;
			inflight++;
			next++;
		}

		/* anything already failed (e.g. a bad option) resolves now */
		for (i = 0; i < next; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state != SLOT_CONNECTING)
				continue;
			if (s->last == PGRES_POLLING_FAILED || s->last == PGRES_POLLING_OK)
			{
				resolve_slot(st, s, now_secs());
				inflight--;
				resolved++;
				continue;
			}
			pfds[np].fd = PQsocket(s->conn);
			pfds[np].events = s->last == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			pfds[np].revents = 0;
			idx[np++] = i;
		}
		if (np == 0)
			continue;

		rc = poll(pfds, np, 100);
		if (rc < 0 && errno != EINTR)
		{
			perror("pgstorm: poll");
			exit(1);
		}
		t = now_secs();
		for (i = 0; i < np; i++)
		{
			Slot	   *s = &slots[idx[i]];

			if (rc > 0 && pfds[i].revents != 0)
			{
				s->last = PQconnectPoll(s->conn);
				if (s->last == PGRES_POLLING_OK || s->last == PGRES_POLLING_FAILED)
				{
					resolve_slot(st, s, now_secs());
					inflight--;
					resolved++;
				}
			}
			else if (t - s->started > opt_timeout)
			{
				time_out_slot(st, s, t);
				inflight--;
				resolved++;
			}
		}
	}
	st->connect_secs = now_secs() - t0;
	st->max_open = st->admitted;	/* all held together */

	if (!interrupted)
		hold_slots(st, slots, opt_n, pfds, idx);

	/* close everything: admitted ones send Terminate, others are dropped */
	for (i = 0; i < opt_n; i++)
		if (slots[i].conn != NULL)
		{
			PQfinish(slots[i].conn);
			slots[i].conn = NULL;
		}
}

/*
 * --hold-each: every admitted connection is closed on its own, --hold-each
 * (+ k x --stagger) after its admission.  Without --loop, the N attempts of
 * the round start as in run_round() (at most -c at once) and the round ends
 * when every one has been resolved and closed.  With --loop, the N slots are
 * N clients: each starts a new attempt as soon as its previous one was
 * closed, refused or failed, until --loop seconds have passed; then the
 * attempts in flight resolve and the admitted connections are closed at the
 * end of their hold.
 */
static void
run_each(Stats *st, Slot *slots, struct pollfd *pfds, long *idx)
{
	long		next = 0;		/* next slot to start (no --loop) */
	long		inflight = 0;
	long		resolved = 0;
	long		open = 0;
	long		rank = 0;		/* admissions so far, for --stagger */
	long		limit = opt_concurrency > 0 ? opt_concurrency : opt_n;
	double		t0 = now_secs();
	double		loop_end = t0 + opt_loop;
	long		i;

	memset(slots, 0, sizeof(Slot) * opt_n);

	while (!interrupted)
	{
		long		np = 0;
		double		t = now_secs();
		double		wake = t + 0.1;
		int			rc;

		if (opt_loop > 0)
		{
			if (t < loop_end)
				for (i = 0; i < opt_n; i++)
					if (slots[i].state == SLOT_IDLE || slots[i].state == SLOT_DONE)
					{
						start_slot(&slots[i], i);
						st->attempted++;
						inflight++;
					}
			if (t >= loop_end && inflight == 0 && open == 0)
				break;
			if (loop_end > t && loop_end < wake)
				wake = loop_end;
		}
		else
		{
			while (next < opt_n && inflight < limit)
			{
				start_slot(&slots[next], next);
				st->attempted++;
				inflight++;
				next++;
			}
			if (resolved == opt_n && open == 0)
				break;
		}

		for (i = 0; i < opt_n; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state == SLOT_CONNECTING)
			{
				if (s->last == PGRES_POLLING_FAILED || s->last == PGRES_POLLING_OK)
				{
					/* resolved at once, e.g. a bad option: handled below */
					wake = t;
					continue;
				}
				pfds[np].fd = PQsocket(s->conn);
				pfds[np].events = s->last == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			}
			else if (s->state == SLOT_ADMITTED)
			{
				if (s->close_at < wake)
					wake = s->close_at;
				pfds[np].fd = PQsocket(s->conn);
				pfds[np].events = POLLIN;
			}
			else
				continue;
			pfds[np].revents = 0;
			idx[np++] = i;
		}

		rc = 0;
		if (wake > t)
		{
			rc = poll(pfds, np, (int) ((wake - t) * 1000) + 1);
			if (rc < 0 && errno != EINTR)
			{
				perror("pgstorm: poll");
				exit(1);
			}
		}
		t = now_secs();

		/* connects that resolved without polling */
		for (i = 0; i < opt_n; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state == SLOT_CONNECTING &&
				(s->last == PGRES_POLLING_FAILED || s->last == PGRES_POLLING_OK))
			{
				resolve_slot(st, s, t);
				inflight--;
				resolved++;
				if (s->state == SLOT_ADMITTED)
				{
					s->close_at = t + opt_hold_each + rank++ * opt_stagger;
					if (++open > st->max_open)
						st->max_open = open;
				}
			}
		}

		for (i = 0; i < np; i++)
		{
			Slot	   *s = &slots[idx[i]];

			if (s->state == SLOT_CONNECTING)
			{
				if (rc > 0 && pfds[i].revents != 0)
				{
					s->last = PQconnectPoll(s->conn);
					if (s->last == PGRES_POLLING_OK || s->last == PGRES_POLLING_FAILED)
					{
						t = now_secs();
						resolve_slot(st, s, t);
						inflight--;
						resolved++;
						if (s->state == SLOT_ADMITTED)
						{
							s->close_at = t + opt_hold_each + rank++ * opt_stagger;
							if (++open > st->max_open)
								st->max_open = open;
						}
					}
				}
				else if (t - s->started > opt_timeout)
				{
					time_out_slot(st, s, t);
					inflight--;
					resolved++;
				}
			}
			else if (s->state == SLOT_ADMITTED && rc > 0 && pfds[i].revents != 0)
			{
				if (!PQconsumeInput(s->conn) || PQstatus(s->conn) != CONNECTION_OK)
				{
					st->lost++;
					PQfinish(s->conn);
					s->conn = NULL;
					s->state = SLOT_DONE;
					open--;
				}
				else
				{
					PGresult   *r;

					while (!PQisBusy(s->conn) && (r = PQgetResult(s->conn)) != NULL)
						PQclear(r);
				}
			}
		}

		/* the end of each hold */
		t = now_secs();
		for (i = 0; i < opt_n; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state == SLOT_ADMITTED && s->close_at <= t)
			{
				PQfinish(s->conn);
				s->conn = NULL;
				s->state = SLOT_DONE;
				open--;
			}
		}
	}
	st->connect_secs = now_secs() - t0;

	for (i = 0; i < opt_n; i++)
		if (slots[i].conn != NULL)
		{
			PQfinish(slots[i].conn);
			slots[i].conn = NULL;
		}
}

static void
stats_init(Stats *st)
{
	memset(st, 0, sizeof(*st));
}

static void
stats_free(Stats *st)
{
	free(st->lat_all.v);
	free(st->lat_ok.v);
	free(st->lat_ref.v);
}

static void
stats_add(Stats *tot, const Stats *r)
{
	int			i;

	tot->attempted += r->attempted;
	tot->admitted += r->admitted;
	tot->refused += r->refused;
	tot->ours += r->ours;
	tot->client += r->client;
	tot->timeouts += r->timeouts;
	tot->lost += r->lost;
	tot->connect_secs += r->connect_secs;
	for (i = 0; i < r->nstates; i++)
	{
		int			j;

		for (j = 0; j < tot->nstates; j++)
			if (strcmp(tot->states[j].code, r->states[i].code) == 0)
				break;
		if (j == tot->nstates)
		{
			if (j == MAX_STATES)
				continue;
			strcpy(tot->states[j].code, r->states[i].code);
			tot->nstates++;
		}
		tot->states[j].count += r->states[i].count;
	}
	if (r->max_open > tot->max_open)
		tot->max_open = r->max_open;
	append_latencies(&tot->lat_all, &r->lat_all);
	append_latencies(&tot->lat_ok, &r->lat_ok);
	append_latencies(&tot->lat_ref, &r->lat_ref);
}

static void
stats_sort(Stats *st)
{
	qsort(st->lat_all.v, st->lat_all.n, sizeof(double), cmp_double);
	qsort(st->lat_ok.v, st->lat_ok.n, sizeof(double), cmp_double);
	qsort(st->lat_ref.v, st->lat_ref.n, sizeof(double), cmp_double);
}

static const char *
label(const Stats *st)
{
	static char buf[32];

	if (st->round == 0)
		return "total";
	snprintf(buf, sizeof(buf), "%d", st->round);
	return buf;
}

/* a number or an empty/null field */
static void
print_num(double v, const char *none)
{
	if (isnan(v))
		fputs(none, stdout);
	else
		printf("%.3f", v);
}

static void
print_csv_header(void)
{
	printf("round,attempted,admitted,refused,refused_ours,client_errors,timeouts,lost,"
		   "p50_ms,p90_ms,p99_ms,max_ms,admitted_p50_ms,admitted_p99_ms,"
		   "refused_p50_ms,refused_p99_ms,connect_secs,sqlstates,max_open\n");
}

static void
print_stats(const Stats *st)
{
	int			i;

	if (opt_format == OUT_TEXT)
	{
		printf("%-6s attempted %ld  admitted %ld  refused %ld (ours %ld)  client errors %ld  "
			   "timeouts %ld  lost %ld  max open %ld\n",
			   st->round == 0 ? "total:" : label(st), st->attempted, st->admitted,
			   st->refused, st->ours, st->client, st->timeouts, st->lost, st->max_open);
		printf("       by SQLSTATE:");
		if (st->nstates == 0)
			printf(" none");
		for (i = 0; i < st->nstates; i++)
			printf(" %s=%ld", st->states[i].code, st->states[i].count);
		printf("\n       latency ms (all) p50 ");
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.50), "-");
		printf(" p90 ");
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.90), "-");
		printf(" p99 ");
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.99), "-");
		printf(" max ");
		print_num(pct(st->lat_all.v, st->lat_all.n, 1.0), "-");
		printf("; admitted p50 ");
		print_num(pct(st->lat_ok.v, st->lat_ok.n, 0.50), "-");
		printf(" p99 ");
		print_num(pct(st->lat_ok.v, st->lat_ok.n, 0.99), "-");
		printf("; refused p50 ");
		print_num(pct(st->lat_ref.v, st->lat_ref.n, 0.50), "-");
		printf(" p99 ");
		print_num(pct(st->lat_ref.v, st->lat_ref.n, 0.99), "-");
		printf("\n");
	}
	else if (opt_format == OUT_CSV)
	{
		printf("%s,%ld,%ld,%ld,%ld,%ld,%ld,%ld,", label(st), st->attempted,
			   st->admitted, st->refused, st->ours, st->client, st->timeouts, st->lost);
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.50), "");
		putchar(',');
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.90), "");
		putchar(',');
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.99), "");
		putchar(',');
		print_num(pct(st->lat_all.v, st->lat_all.n, 1.0), "");
		putchar(',');
		print_num(pct(st->lat_ok.v, st->lat_ok.n, 0.50), "");
		putchar(',');
		print_num(pct(st->lat_ok.v, st->lat_ok.n, 0.99), "");
		putchar(',');
		print_num(pct(st->lat_ref.v, st->lat_ref.n, 0.50), "");
		putchar(',');
		print_num(pct(st->lat_ref.v, st->lat_ref.n, 0.99), "");
		printf(",%.3f,", st->connect_secs);
		for (i = 0; i < st->nstates; i++)
			printf("%s%s=%ld", i ? ";" : "", st->states[i].code, st->states[i].count);
		printf(",%ld\n", st->max_open);
	}
	else
	{
		printf("{\"round\": %s%s%s, \"attempted\": %ld, \"admitted\": %ld, "
			   "\"refused\": %ld, \"refused_ours\": %ld, \"client_errors\": %ld, "
			   "\"timeouts\": %ld, \"lost\": %ld, \"sqlstates\": {",
			   st->round == 0 ? "\"" : "", label(st), st->round == 0 ? "\"" : "",
			   st->attempted, st->admitted, st->refused, st->ours, st->client,
			   st->timeouts, st->lost);
		for (i = 0; i < st->nstates; i++)
			printf("%s\"%s\": %ld", i ? ", " : "", st->states[i].code, st->states[i].count);
		printf("}, \"latency_ms\": {\"p50\": ");
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.50), "null");
		printf(", \"p90\": ");
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.90), "null");
		printf(", \"p99\": ");
		print_num(pct(st->lat_all.v, st->lat_all.n, 0.99), "null");
		printf(", \"max\": ");
		print_num(pct(st->lat_all.v, st->lat_all.n, 1.0), "null");
		printf(", \"admitted_p50\": ");
		print_num(pct(st->lat_ok.v, st->lat_ok.n, 0.50), "null");
		printf(", \"admitted_p99\": ");
		print_num(pct(st->lat_ok.v, st->lat_ok.n, 0.99), "null");
		printf(", \"refused_p50\": ");
		print_num(pct(st->lat_ref.v, st->lat_ref.n, 0.50), "null");
		printf(", \"refused_p99\": ");
		print_num(pct(st->lat_ref.v, st->lat_ref.n, 0.99), "null");
		printf("}, \"connect_secs\": %.3f, \"max_open\": %ld}", st->connect_secs,
			   st->max_open);
	}
}

static double
parse_double(const char *s, const char *what)
{
	char	   *end;
	double		v = strtod(s, &end);

	if (end == s || *end != '\0' || !isfinite(v))
	{
		fprintf(stderr, "pgstorm: invalid %s: \"%s\"\n", what, s);
		exit(1);
	}
	return v;
}

static long
parse_long(const char *s, const char *what, long min)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < min)
	{
		fprintf(stderr, "pgstorm: invalid %s: \"%s\" (minimum %ld)\n", what, s, min);
		exit(1);
	}
	return v;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"host", required_argument, NULL, 'h'},
		{"port", required_argument, NULL, 'p'},
		{"username", required_argument, NULL, 'U'},
		{"appname", required_argument, NULL, 'a'},
		{"app-count", required_argument, NULL, 'A'},
		{"connections", required_argument, NULL, 'n'},
		{"concurrency", required_argument, NULL, 'c'},
		{"hold", required_argument, NULL, 'H'},
		{"rounds", required_argument, NULL, 'r'},
		{"pause", required_argument, NULL, 'P'},
		{"timeout", required_argument, NULL, 't'},
		{"service", required_argument, NULL, 's'},
		{"quiet", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'v'},
		{"csv", no_argument, NULL, 1},
		{"json", no_argument, NULL, 2},
		{"help", no_argument, NULL, 3},
		{"version", no_argument, NULL, 4},
		{"dump", required_argument, NULL, 5},
		{"hold-each", required_argument, NULL, 'e'},
		{"stagger", required_argument, NULL, 6},
		{"loop", required_argument, NULL, 'L'},
		{NULL, 0, NULL, 0}
	};
	int			c;
	Slot	   *slots;
	struct pollfd *pfds;
	long	   *idx;
	Stats		total;
	struct sigaction sa;
	struct rlimit rl;
	int			r;

	while ((c = getopt_long(argc, argv, "d:h:p:U:a:A:n:c:H:r:P:t:s:e:L:qv", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				opt_conninfo = optarg;
				break;
			case 'h':
				opt_host = optarg;
				break;
			case 'p':
				opt_port = optarg;
				break;
			case 'U':
				opt_user = optarg;
				break;
			case 'a':
				opt_appname = optarg;
				break;
			case 'A':
				opt_app_count = (int) parse_long(optarg, "app count", 1);
				break;
			case 'n':
				opt_n = parse_long(optarg, "number of connections", 1);
				break;
			case 'c':
				opt_concurrency = parse_long(optarg, "concurrency", 1);
				break;
			case 'H':
				opt_hold = parse_double(optarg, "hold time");
				if (opt_hold < 0)
					opt_hold = -1;
				break;
			case 'r':
				opt_rounds = (int) parse_long(optarg, "number of rounds", 1);
				break;
			case 'P':
				opt_pause = parse_double(optarg, "pause");
				break;
			case 't':
				opt_timeout = parse_double(optarg, "timeout");
				break;
			case 's':
				opt_service = optarg;
				break;
			case 'e':
				opt_hold_each = parse_double(optarg, "hold time");
				if (opt_hold_each < 0)
				{
					fprintf(stderr, "pgstorm: --hold-each must not be negative\n");
					return 1;
				}
				break;
			case 6:
				opt_stagger = parse_double(optarg, "stagger");
				if (opt_stagger < 0)
				{
					fprintf(stderr, "pgstorm: --stagger must not be negative\n");
					return 1;
				}
				break;
			case 'L':
				opt_loop = parse_double(optarg, "loop time");
				if (opt_loop <= 0)
				{
					fprintf(stderr, "pgstorm: --loop must be positive\n");
					return 1;
				}
				break;
			case 'q':
				opt_quiet = true;
				break;
			case 'v':
				opt_verbose = true;
				break;
			case 1:
				opt_format = OUT_CSV;
				break;
			case 2:
				opt_format = OUT_JSON;
				break;
			case 3:
				usage();
				return 0;
			case 4:
				printf("pgstorm " PGSTORM_VERSION " (libpq %d)\n", PQlibVersion());
				return 0;
			case 5:
				dump_file = fopen(optarg, "a");
				if (dump_file == NULL)
				{
					fprintf(stderr, "pgstorm: could not open \"%s\": %s\n", optarg,
							strerror(errno));
					return 1;
				}
				break;
			default:
				fprintf(stderr, "Try \"pgstorm --help\" for more information.\n");
				return 1;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "pgstorm: unexpected argument \"%s\"\n"
				"Try \"pgstorm --help\" for more information.\n", argv[optind]);
		return 1;
	}
	if ((opt_loop > 0 || opt_stagger > 0) && opt_hold_each < 0)
	{
		fprintf(stderr, "pgstorm: --loop and --stagger need --hold-each\n");
		return 1;
	}
	if (opt_loop > 0)
		opt_rounds = 1;
	/* one descriptor per connection, plus a few */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t) opt_n + 32)
	{
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t) opt_n + 32 ?
			(rlim_t) opt_n + 32 : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < (rlim_t) opt_n + 32)
			fprintf(stderr, "pgstorm: warning: open file limit %lu is below %ld connections\n",
					(unsigned long) rl.rlim_cur, opt_n);
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	slots = xmalloc(sizeof(Slot) * opt_n);
	pfds = xmalloc(sizeof(struct pollfd) * opt_n);
	idx = xmalloc(sizeof(long) * opt_n);
	stats_init(&total);

	if (opt_format == OUT_CSV)
		print_csv_header();
	else if (opt_format == OUT_JSON)
		printf("{\"connections\": %ld, \"rounds\": %d, \"per_round\": [", opt_n, opt_rounds);

	for (r = 1; r <= opt_rounds && !interrupted; r++)
	{
		Stats		st;

		if (r > 1)
			sleep_secs(opt_pause);
		if (interrupted)
			break;
		stats_init(&st);
		st.round = r;
		if (opt_hold_each >= 0)
			run_each(&st, slots, pfds, idx);
		else
			run_round(&st, slots, pfds, idx);
		stats_add(&total, &st);
		stats_sort(&st);
		if (!opt_quiet && (opt_rounds > 1 || opt_format != OUT_TEXT))
		{
			if (opt_format == OUT_JSON && r > 1)
				printf(", ");
			print_stats(&st);
			if (opt_format != OUT_JSON)
				fflush(stdout);
		}
		stats_free(&st);
	}

	stats_sort(&total);
	if (opt_format == OUT_JSON)
	{
		printf("], \"total\": ");
		print_stats(&total);
		printf(", \"interrupted\": %s}\n", interrupted ? "true" : "false");
	}
	else
		print_stats(&total);
	if (interrupted && opt_format == OUT_TEXT && opt_hold >= 0)
		printf("(interrupted)\n");
	if (dump_file != NULL)
		fclose(dump_file);
	return 0;
}
