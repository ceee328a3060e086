/*-------------------------------------------------------------------------
 * fuzz_budgets.c
 *		libFuzzer harness for the libc-only parsers in src/budgets.c.
 *
 * Every input is one GUC value.  It goes through
 *
 *	- dbpg_budgets_parse (dbpool_guard.budgets), with the default table
 *	  size and the largest max_connections, and again with a small table
 *	  and a small max_connections, so that both limits are reached;
 *	- dbpg_namelist_parse (dbpool_guard.exempt_roles);
 *	- dbpg_bindings_parse (dbpool_guard.service_roles);
 *	- dbpg_ppm_from_double and dbpg_cap, on numbers taken from the bytes.
 *
 * Output buffers are allocated at their exact size, so AddressSanitizer
 * sees any write past them.  Besides "no crash, no undefined behaviour,
 * no leak", each parse is checked for:
 *
 *	- a rejected value: a reason that is one printable ASCII sentence
 *	  (it becomes the errdetail of the GUC error), and a hint that is
 *	  empty or one such sentence (the errhint), whatever the input;
 *	- an accepted value: the invariants the server relies on (names of
 *	  1..63 printable ASCII bytes, sorted and unique, budgets, bursts and
 *	  thresholds in range, dbpg_budgets_find finds every entry);
 *	- the round trip: dbpg_budgets_format prints the configuration, the
 *	  printed text parses back to the same configuration (burst
 *	  included), and printing that again gives the same text (the
 *	  canonical form is a fixed point).  Each entry printed alone ends in
 *	  exactly "=budget", "+burst" when the burst is above 0 and
 *	  "@threshold" when one was given.  Name lists and bindings have no
 *	  printer in src/; they are printed here with every name quoted and
 *	  must parse back the same.
 *	- a truncated print: a prefix of the full text, always terminated.
 *
 * Before the first input, LLVMFuzzerInitialize checks a few values with
 * known answers (the burst grammar: what each accepted value holds, and
 * which reason each rejected one gives), which the invariants alone do
 * not pin down.
 *
 * A failed check prints what differs and aborts, which libFuzzer reports
 * as a crash and saves the input.
 *
 * IDENTIFICATION
 *		test/fuzz/fuzz_budgets.c
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgets.h"

/* The server's values: default dbpool_guard.max_services, MAX_BACKENDS. */
#define BIG_ENTRIES		128
#define BIG_BUDGET		262143
/* Small limits, so that "one more than" and "larger than" are reached. */
#define SMALL_ENTRIES	3
#define SMALL_BUDGET	100
/* check_exempt's DBPG_MAX_EXEMPT and DBPG_MAX_BOUND_ROLES (dbpool_guard.h) */
#define MAX_EXEMPT		64
#define MAX_BOUND_ROLES	1024
#define BINDING_ENTRIES	16

static const char *current_input;

static void fail(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

static void
fail(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "\nfuzz_budgets: check failed: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ninput: \"%s\"\n", current_input ? current_input : "");
	abort();
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n > 0 ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

static int
printable(const char *s)
{
	for (; *s; s++)
		if (*s < ' ' || *s > '~')
			return 0;
	return 1;
}

/* A name as the server stores it: 1..63 printable ASCII bytes, terminated. */
static void
check_name(const char *name, const char *what)
{
	size_t		len = strnlen(name, DBPG_NAME_MAX + 1);

	CHECK(len >= 1 && len <= DBPG_NAME_MAX, "%s has length %zu", what, len);
	CHECK(printable(name), "%s \"%s\" is not printable ASCII", what, name);
}

/* One printable sentence that fits its buffer (a reason or a hint). */
static void
check_sentence(const char *text, size_t len_max, const char *what)
{
	size_t		len = strnlen(text, len_max);

	CHECK(len < len_max, "%s: not terminated within %zu bytes", what, len_max);
	CHECK(len > 0, "%s: empty", what);
	CHECK(printable(text), "%s: not printable ASCII: \"%s\"", what, text);
	CHECK(text[0] >= 'A' && text[0] <= 'Z', "%s: not a sentence: \"%s\"", what, text);
	if (len < len_max - 1)
		CHECK(text[len - 1] == '.', "%s: not a sentence: \"%s\"", what, text);
}

/* A rejection: a reason, and a hint or none. */
static void
check_error(const DbpgParseError *err, const char *what)
{
	check_sentence(err->detail, sizeof(err->detail), what);
	if (err->hint[0] != '\0')
		check_sentence(err->hint, sizeof(err->hint), what);
}

static void
check_entry(const DbpgBudgetEntry *e, int max_budget, const char *what)
{
	int32_t		cap;

	CHECK(e->budget >= 0 && e->budget <= max_budget,
		  "%s \"%s\": budget %d out of [0, %d]", what, e->name, (int) e->budget, max_budget);
	CHECK(e->burst >= 0 && e->burst <= max_budget,
		  "%s \"%s\": burst %d out of [0, %d]", what, e->name, (int) e->burst, max_budget);
	CHECK(e->threshold_ppm == DBPG_THRESHOLD_DEFAULT ||
		  (e->threshold_ppm >= 1 && e->threshold_ppm <= DBPG_PPM),
		  "%s \"%s\": threshold %d ppm out of range", what, e->name, (int) e->threshold_ppm);
	cap = dbpg_cap(e->budget, e->threshold_ppm == DBPG_THRESHOLD_DEFAULT ?
				   850000 : e->threshold_ppm);
	CHECK(e->budget == 0 ? cap == 0 : (cap >= 1 && cap <= e->budget),
		  "%s \"%s\": cap %d for budget %d", what, e->name, (int) cap, (int) e->budget);
}

static void
check_budgets(const DbpgBudgets *b, int max_entries, int max_budget)
{
	CHECK(b->nentries >= 0 && b->nentries <= max_entries,
		  "%d entries with max_entries %d", (int) b->nentries, max_entries);
	for (int i = 0; i < b->nentries; i++)
	{
		const DbpgBudgetEntry *e = &b->entries[i];
		char		other[DBPG_NAME_MAX + 2];
		const DbpgBudgetEntry *f;

		check_name(e->name, "a service name");
		CHECK(strcmp(e->name, "*") != 0, "a named entry is called \"*\"");
		check_entry(e, max_budget, "entry");
		if (i > 0)
			CHECK(strcmp(b->entries[i - 1].name, e->name) < 0,
				  "entries not strictly sorted: \"%s\" then \"%s\"",
				  b->entries[i - 1].name, e->name);
		CHECK(dbpg_budgets_find(b, e->name) == e, "find(\"%s\") misses", e->name);
		/* a name that is not listed is not found (or found as itself) */
		snprintf(other, sizeof(other), "%s~", e->name);
		other[DBPG_NAME_MAX] = '\0';
		f = dbpg_budgets_find(b, other);
		CHECK(f == NULL || strcmp(f->name, other) == 0, "find(\"%s\") found \"%s\"",
			  other, f ? f->name : "");
	}
	if (b->has_default)
	{
		CHECK(strcmp(b->deflt.name, "*") == 0, "the default entry is \"%s\"", b->deflt.name);
		check_entry(&b->deflt, max_budget, "default entry");
	}
	CHECK(dbpg_budgets_find(b, "*") == NULL, "find(\"*\") found a named entry");
	CHECK(dbpg_budgets_find(NULL, "x") == NULL, "find in no configuration found something");
}

static void
same_entry(const DbpgBudgetEntry *a, const DbpgBudgetEntry *b, const char *printed)
{
	CHECK(strcmp(a->name, b->name) == 0 && a->budget == b->budget &&
		  a->burst == b->burst && a->threshold_ppm == b->threshold_ppm,
		  "round trip changed \"%s\"=%d+%d@%d into \"%s\"=%d+%d@%d (printed: %s)",
		  a->name, (int) a->budget, (int) a->burst, (int) a->threshold_ppm,
		  b->name, (int) b->budget, (int) b->burst, (int) b->threshold_ppm,
		  printed);
}

/* Print b; the result is malloc'd and exactly as long as needed. */
static char *
print_budgets(const DbpgBudgets *b)
{
	size_t		need = dbpg_budgets_format(b, NULL, 0);
	char	   *buf = xmalloc(need + 1);
	size_t		got = dbpg_budgets_format(b, buf, need + 1);

	CHECK(got == need, "format needs %zu bytes, then reports %zu", need, got);
	CHECK(strlen(buf) == need, "format wrote %zu bytes, reported %zu", strlen(buf), need);

	/* truncated prints: a terminated prefix, nothing written past the end */
	{
		size_t		sizes[5] = {0, 1, need / 2 + 1, need, need > 3 ? 3 : 1};

		for (int i = 0; i < 5; i++)
		{
			size_t		sz = sizes[i];
			char	   *small = xmalloc(sz);

			if (sz == 0)
			{
				/* nothing may be written, not even a terminator */
				small[0] = 'x';
				CHECK(dbpg_budgets_format(b, small, 0) == need && small[0] == 'x',
					  "a format into 0 bytes wrote or reported another length");
				free(small);
				continue;
			}
			CHECK(dbpg_budgets_format(b, small, sz) == need,
				  "a truncated format reports another length");
			CHECK(strlen(small) == (sz - 1 < need ? sz - 1 : need) &&
				  memcmp(small, buf, strlen(small)) == 0,
				  "a format into %zu bytes is not a prefix: \"%s\"", sz, small);
			free(small);
		}
	}
	return buf;
}

/*
 * Print one entry alone: it must end in "=budget[+burst][@threshold]",
 * with "+burst" exactly when the burst is above 0.  Nothing after the
 * name holds "=", so the last "=" is the one before the budget.
 */
static void
check_entry_print(const DbpgBudgetEntry *e, bool star)
{
	DbpgBudgets *one = xmalloc(DbpgBudgetsSize(1));
	char		want[64];
	size_t		wlen = 0;
	char	   *buf;
	size_t		need;
	const char *eq;

	memset(one, 0, DbpgBudgetsSize(1));
	if (star)
	{
		one->has_default = true;
		one->deflt = *e;
	}
	else
	{
		one->nentries = 1;
		one->entries[0] = *e;
	}
	need = dbpg_budgets_format(one, NULL, 0);
	buf = xmalloc(need + 1);
	dbpg_budgets_format(one, buf, need + 1);

	wlen += snprintf(want + wlen, sizeof(want) - wlen, "=%d", (int) e->budget);
	if (e->burst > 0)
		wlen += snprintf(want + wlen, sizeof(want) - wlen, "+%d", (int) e->burst);
	if (e->threshold_ppm != DBPG_THRESHOLD_DEFAULT)
		snprintf(want + wlen, sizeof(want) - wlen, "@%d.%06d",
				 (int) (e->threshold_ppm / DBPG_PPM),
				 (int) (e->threshold_ppm % DBPG_PPM));
	eq = strrchr(buf, '=');
	CHECK(eq != NULL && strcmp(eq, want) == 0,
		  "entry \"%s\" (budget %d, burst %d, threshold %d) prints as %s, not ...%s",
		  e->name, (int) e->budget, (int) e->burst, (int) e->threshold_ppm,
		  buf, want);
	free(buf);
	free(one);
}

static void
fuzz_budgets(const char *value, int max_entries, int max_budget)
{
	DbpgBudgets *b = xmalloc(DbpgBudgetsSize(max_entries));
	DbpgParseError err;

	if (!dbpg_budgets_parse(value, max_entries, max_budget, b, &err))
		check_error(&err, "budgets");
	else
	{
		char	   *printed;
		char	   *again;
		DbpgBudgets *r = xmalloc(DbpgBudgetsSize(max_entries));

		check_budgets(b, max_entries, max_budget);
		for (int i = 0; i < b->nentries; i++)
			check_entry_print(&b->entries[i], false);
		if (b->has_default)
			check_entry_print(&b->deflt, true);
		printed = print_budgets(b);
		CHECK(dbpg_budgets_parse(printed, max_entries, max_budget, r, &err),
			  "the printed value does not parse: %s (%s)", printed, err.detail);
		CHECK(r->nentries == b->nentries && r->has_default == b->has_default,
			  "round trip: %d entries%s became %d entries%s (printed: %s)",
			  (int) b->nentries, b->has_default ? " and *" : "",
			  (int) r->nentries, r->has_default ? " and *" : "", printed);
		for (int i = 0; i < b->nentries; i++)
			same_entry(&b->entries[i], &r->entries[i], printed);
		if (b->has_default)
			same_entry(&b->deflt, &r->deflt, printed);
		again = print_budgets(r);
		CHECK(strcmp(printed, again) == 0,
			  "printing is not canonical: \"%s\" then \"%s\"", printed, again);
		free(again);
		free(printed);
		free(r);
	}
	free(b);
}

/* Append a name in double quotes, doubling quotes inside. */
static size_t
put_quoted(char *buf, size_t pos, const char *name)
{
	buf[pos++] = '"';
	for (const char *s = name; *s; s++)
	{
		if (*s == '"')
			buf[pos++] = '"';
		buf[pos++] = *s;
	}
	buf[pos++] = '"';
	return pos;
}

static void
fuzz_namelist(const char *value, int max_names)
{
	DbpgNameList *l = xmalloc(DbpgNameListSize(max_names));
	DbpgParseError err;

	if (!dbpg_namelist_parse(value, max_names, l, &err))
		check_error(&err, "exempt_roles");
	else
	{
		DbpgNameList *r = xmalloc(DbpgNameListSize(max_names));
		char	   *printed;
		size_t		pos = 0;

		CHECK(l->nnames >= 0 && l->nnames <= max_names, "%d names", (int) l->nnames);
		for (int i = 0; i < l->nnames; i++)
		{
			check_name(l->names[i], "a role name");
			for (int j = 0; j < i; j++)
				CHECK(strcmp(l->names[i], l->names[j]) != 0,
					  "role \"%s\" listed twice", l->names[i]);
		}

		/* every name quoted: at most 2 * 63 + 2 bytes and ", " each */
		printed = xmalloc((size_t) l->nnames * (2 * DBPG_NAME_MAX + 4) + 1);
		for (int i = 0; i < l->nnames; i++)
		{
			if (i > 0)
			{
				printed[pos++] = ',';
				printed[pos++] = ' ';
			}
			pos = put_quoted(printed, pos, l->names[i]);
		}
		printed[pos] = '\0';
		CHECK(dbpg_namelist_parse(printed, max_names, r, &err),
			  "the printed list does not parse: %s (%s)", printed, err.detail);
		CHECK(r->nnames == l->nnames, "round trip: %d names became %d (printed: %s)",
			  (int) l->nnames, (int) r->nnames, printed);
		for (int i = 0; i < l->nnames; i++)
			CHECK(strcmp(l->names[i], r->names[i]) == 0,
				  "round trip: \"%s\" became \"%s\"", l->names[i], r->names[i]);
		free(printed);
		free(r);
	}
	free(l);
}

static void
fuzz_bindings(const char *value, int max_entries, int max_roles)
{
	DbpgBindings *b = xmalloc(DbpgBindingsSize(max_entries, max_roles));
	DbpgParseError err;

	if (!dbpg_bindings_parse(value, max_entries, max_roles, b, &err))
		check_error(&err, "service_roles");
	else
	{
		DbpgBindings *r = xmalloc(DbpgBindingsSize(max_entries, max_roles));
		int			nb = b->nbindings;
		int			nr = b->nroles;
		char		(*roles)[DBPG_NAME_MAX + 1] = DbpgBindingsRoles(b);
		int			total = 0;
		char	   *printed;
		size_t		pos = 0;

		CHECK(nb >= 0 && nb <= max_entries && nr >= nb && nr <= max_roles,
			  "%d bindings, %d roles", nb, nr);
		for (int i = 0; i < nb; i++)
		{
			const DbpgBinding *bnd = &b->bindings[i];

			check_name(bnd->service, "a bound service");
			CHECK(strcmp(bnd->service, "*") != 0, "\"*\" is bound");
			if (i > 0)
				CHECK(strcmp(b->bindings[i - 1].service, bnd->service) < 0,
					  "bindings not strictly sorted");
			CHECK(bnd->count >= 1 && bnd->first >= 0 && bnd->first + bnd->count <= nr,
				  "binding \"%s\" has roles [%d, +%d) of %d", bnd->service,
				  (int) bnd->first, (int) bnd->count, nr);
			CHECK(dbpg_bindings_find(b, bnd->service) == bnd,
				  "bindings_find(\"%s\") misses", bnd->service);
			total += bnd->count;
			for (int j = bnd->first; j < bnd->first + bnd->count; j++)
			{
				check_name(roles[j], "a bound role");
				for (int k = bnd->first; k < j; k++)
					CHECK(strcmp(roles[j], roles[k]) != 0, "role \"%s\" bound twice to \"%s\"",
						  roles[j], bnd->service);
			}
		}
		CHECK(total == nr, "bindings name %d roles, %d were stored", total, nr);
		CHECK(dbpg_bindings_find(b, "") == NULL, "bindings_find(\"\") found something");

		/*
		 * The block the check hook keeps is the first DbpgBindingsSize(nb,
		 * nr) bytes: a copy of exactly that size must read the same.
		 */
		{
			DbpgBindings *flat = xmalloc(DbpgBindingsSize(nb, nr));

			memcpy(flat, b, DbpgBindingsSize(nb, nr));
			for (int i = 0; i < nb; i++)
				CHECK(strcmp(DbpgBindingsRoles(flat)[flat->bindings[i].first],
							 roles[b->bindings[i].first]) == 0,
					  "the kept block lost a role of \"%s\"", b->bindings[i].service);
			free(flat);
		}

		/* print with everything quoted, in sorted order; parse back */
		printed = xmalloc((size_t) nb * (2 * DBPG_NAME_MAX + 5) +
						  (size_t) nr * (2 * DBPG_NAME_MAX + 3) + 1);
		for (int i = 0; i < nb; i++)
		{
			if (i > 0)
			{
				printed[pos++] = ',';
				printed[pos++] = ' ';
			}
			pos = put_quoted(printed, pos, b->bindings[i].service);
			printed[pos++] = '=';
			for (int j = b->bindings[i].first; j < b->bindings[i].first + b->bindings[i].count; j++)
			{
				if (j > b->bindings[i].first)
					printed[pos++] = '|';
				pos = put_quoted(printed, pos, roles[j]);
			}
		}
		printed[pos] = '\0';
		CHECK(dbpg_bindings_parse(printed, max_entries, max_roles, r, &err),
			  "the printed bindings do not parse: %s (%s)", printed, err.detail);
		CHECK(r->nbindings == nb && r->nroles == nr,
			  "round trip: %d/%d became %d/%d (printed: %s)",
			  nb, nr, (int) r->nbindings, (int) r->nroles, printed);
		for (int i = 0; i < nb; i++)
		{
			CHECK(strcmp(b->bindings[i].service, r->bindings[i].service) == 0 &&
				  b->bindings[i].count == r->bindings[i].count,
				  "round trip changed binding \"%s\"", b->bindings[i].service);
			for (int j = 0; j < b->bindings[i].count; j++)
				CHECK(strcmp(roles[b->bindings[i].first + j],
							 DbpgBindingsRoles(r)[r->bindings[i].first + j]) == 0,
					  "round trip changed a role of \"%s\"", b->bindings[i].service);
		}
		free(printed);
		free(r);
	}
	free(b);
}

/* Numbers: thresholds from doubles (GUC reals) and caps. */
static void
fuzz_numbers(const uint8_t *data, size_t size)
{
	double		d;
	int32_t		ppm;
	int32_t		budget;
	int32_t		cap;

	if (size < sizeof(double) + 2 * sizeof(int32_t))
		return;
	memcpy(&d, data, sizeof(double));
	memcpy(&budget, data + sizeof(double), sizeof(int32_t));
	memcpy(&ppm, data + sizeof(double) + sizeof(int32_t), sizeof(int32_t));

	/* any threshold, even out of range: no overflow, a cap in [1, budget] */
	{
		int32_t		b = budget < 0 ? -(budget + 1) : budget;

		cap = dbpg_cap(b, ppm);
		CHECK(b == 0 ? cap == 0 : (cap >= 1 && cap <= b),
			  "cap(%d, %d) = %d", (int) b, (int) ppm, (int) cap);
	}

	ppm = dbpg_ppm_from_double(d);
	CHECK(ppm >= 0 && ppm <= DBPG_PPM, "ppm_from_double(%g) = %d", d, (int) ppm);
	if (d >= 0.000001 && d <= 1)
		CHECK(ppm >= 1, "ppm_from_double(%g) = 0", d);
	if (ppm < 1)
		return;
	if (budget < 0)
		budget = -(budget + 1);
	budget %= BIG_BUDGET + 1;
	cap = dbpg_cap(budget, ppm);
	CHECK(budget == 0 ? cap == 0 : (cap >= 1 && cap <= budget),
		  "cap(%d, %d) = %d", (int) budget, (int) ppm, (int) cap);
	/* exact ceiling: cap - 1 slots are below the threshold, cap are not */
	if (budget > 0 && cap > 1)
		CHECK((int64_t) (cap - 1) * DBPG_PPM < (int64_t) budget * ppm,
			  "cap(%d, %d) = %d is one too many", (int) budget, (int) ppm, (int) cap);
	if (budget > 0 && cap < budget)
		CHECK((int64_t) cap * DBPG_PPM >= (int64_t) budget * ppm,
			  "cap(%d, %d) = %d is one too few", (int) budget, (int) ppm, (int) cap);
}

/*
 * Known answers, checked once before fuzzing: what the burst grammar
 * accepts (budget, burst and threshold of the entry named "a", or of "*"
 * when the value has no "a"), and the reason for what it rejects (a part
 * of the detail, and of the hint or "" for none).
 */
typedef struct KnownGood
{
	const char *value;
	int32_t		budget;
	int32_t		burst;
	int32_t		threshold_ppm;
} KnownGood;

typedef struct KnownBad
{
	const char *value;
	const char *detail;
	const char *hint;
} KnownBad;

static const KnownGood known_good[] = {
	{"a=10", 10, 0, DBPG_THRESHOLD_DEFAULT},
	{"a=10@0.9", 10, 0, 900000},
	{"a=10+5", 10, 5, DBPG_THRESHOLD_DEFAULT},
	{"a=10 + 5 @ 0.9", 10, 5, 900000},
	{"a=10+5@1", 10, 5, DBPG_PPM},
	{"*=2+3", 2, 3, DBPG_THRESHOLD_DEFAULT},
	{"a=0+4", 0, 4, DBPG_THRESHOLD_DEFAULT},
	{"a=0+0", 0, 0, DBPG_THRESHOLD_DEFAULT},
	{"a=10+0", 10, 0, DBPG_THRESHOLD_DEFAULT},
	{"a=10+007", 10, 7, DBPG_THRESHOLD_DEFAULT},
	{"a=1+100", 1, 100, DBPG_THRESHOLD_DEFAULT},
	{"\"a+b\"=1, c+d=2+1, a=3", 3, 0, DBPG_THRESHOLD_DEFAULT},
};

static const KnownBad known_bad[] = {
	{"a=10+", "has no burst: ", ""},
	{"a=10+x", "has no burst: ", ""},
	{"a=10+-1", "has no burst: ", ""},
	{"a=10++5", "has no burst: ", ""},
	{"a=+5", "has no budget: ", "Write a budget before the burst"},
	{"a=10+5.5", "has a burst that is not a whole number", ""},
	{"a=10+101", "has a burst larger than max_connections", ""},
	{"a=10+99999999999999999999", "has a burst larger than max_connections", ""},
	{"a=10+5+1", "has more than one burst", "Write one burst per entry"},
	{"a=10+5@0.9+1", "has more than one burst", "Write one burst per entry"},
	{"a=10@0.9+5", "has its burst after the threshold", "Write the burst before the threshold"},
	{"a=10+5 x", "has unexpected text after the burst", ""},
	{"a=10 x", "has unexpected text after the budget", ""},
	{"a", "has no \"=\" after the name", "name=budget+burst@threshold"},
};

static void
check_known_answers(void)
{
	DbpgBudgets *b = xmalloc(DbpgBudgetsSize(SMALL_ENTRIES));
	DbpgParseError err;

	for (size_t i = 0; i < sizeof(known_good) / sizeof(known_good[0]); i++)
	{
		const KnownGood *k = &known_good[i];
		const DbpgBudgetEntry *e;

		current_input = k->value;
		CHECK(dbpg_budgets_parse(k->value, SMALL_ENTRIES, SMALL_BUDGET, b, &err),
			  "known value rejected: %s", err.detail);
		e = dbpg_budgets_find(b, "a");
		if (e == NULL && b->has_default)
			e = &b->deflt;
		CHECK(e != NULL, "known value: no entry \"a\" and no \"*\"");
		CHECK(e->budget == k->budget && e->burst == k->burst &&
			  e->threshold_ppm == k->threshold_ppm,
			  "known value read as %d+%d@%d, not %d+%d@%d",
			  (int) e->budget, (int) e->burst, (int) e->threshold_ppm,
			  (int) k->budget, (int) k->burst, (int) k->threshold_ppm);
	}
	for (size_t i = 0; i < sizeof(known_bad) / sizeof(known_bad[0]); i++)
	{
		const KnownBad *k = &known_bad[i];

		current_input = k->value;
		CHECK(!dbpg_budgets_parse(k->value, SMALL_ENTRIES, SMALL_BUDGET, b, &err),
			  "known bad value accepted");
		CHECK(strstr(err.detail, k->detail) != NULL,
			  "known bad value: detail \"%s\" lacks \"%s\"", err.detail, k->detail);
		CHECK(k->hint[0] == '\0' ? err.hint[0] == '\0' :
			  strstr(err.hint, k->hint) != NULL,
			  "known bad value: hint \"%s\", expected %s%s", err.hint,
			  k->hint[0] ? "one with " : "none", k->hint);
	}
	current_input = NULL;
	free(b);
}

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	check_known_answers();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a GUC value is a C string: exactly size + 1 bytes, so ASan sees reads past it */
	char	   *value = xmalloc(size + 1);

	memcpy(value, data, size);
	value[size] = '\0';
	current_input = value;

	fuzz_budgets(value, BIG_ENTRIES, BIG_BUDGET);
	fuzz_budgets(value, SMALL_ENTRIES, SMALL_BUDGET);
	fuzz_namelist(value, MAX_EXEMPT);
	fuzz_namelist(value, 2);
	fuzz_bindings(value, BINDING_ENTRIES, MAX_BOUND_ROLES);
	fuzz_bindings(value, 2, 3);
	fuzz_numbers(data, size);

	current_input = NULL;
	free(value);
	return 0;
}
