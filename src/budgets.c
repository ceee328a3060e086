/*-------------------------------------------------------------------------
 * budgets.c
 *		Parsers for dbpool_guard.budgets, dbpool_guard.exempt_roles and
 *		dbpool_guard.service_roles.
 *
 * libc only: no palloc, no ereport.  The GUC check hooks call these and
 * turn a false return into GUC_check_errdetail and GUC_check_errhint; the
 * fuzz harness in test/fuzz calls them directly.
 *
 * All three values are comma-separated lists of entries, walked by one
 * iterator (EntryIter): it splits the value at commas outside double
 * quotes, numbers the entries from 1, keeps a printable copy of each for
 * messages, and rejects an unterminated quote or an empty entry.  Each
 * parser reads the fields of an entry with the iterator's cursor.
 *
 * Grammar (white space around tokens is ignored; an empty or all-blank
 * value is an empty list):
 *
 *		budgets	:= [ entry { "," entry } ]
 *		entry	:= name "=" budget [ "+" burst ] [ "@" threshold ]
 *		exempt_roles  := [ role { "," role } ]
 *		service_roles := [ binding { "," binding } ]
 *		binding	:= name "=" role { "|" role }
 *		name, role := "*" | bare | '"' { char | '""' } '"'
 *				   ("*" only as a budgets entry's name)
 *		bare	:= one or more printable ASCII characters other than
 *				   white space and  , = @ "	  (and | in a role list)
 *		budget, burst := digits				(0 .. max_budget)
 *		threshold := digits [ "." digits ] | "." digits	(in (0, 1],
 *				   at most six decimals)
 *
 * A budget is the service's own slots; its cap is ceil(threshold *
 * budget).  A burst is how many slots more the service may borrow from
 * dbpool_guard.burst_pool: 0 when the entry gives none, and printed by
 * dbpg_budgets_format only when above 0, so that "a=10+0" and "a=10" are
 * one configuration.  "0+N" is allowed (no slot of its own: the service
 * may only borrow); "0" alone still means that it may not connect.  The
 * burst comes before the threshold: "a=10@0.9+5" is rejected with a hint
 * giving the order, so that each configuration has one spelling.
 *
 * IDENTIFICATION
 *		src/budgets.c
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgets.h"

#define BAD_CHAR "has a character in its name that needs double quotes (white space , = @ \") or that is not printable ASCII"

#if defined(__GNUC__) || defined(__clang__)
#define DBPG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DBPG_PRINTF(f, a)
#endif

/* How much of an offending entry an error message quotes. */
#define QUOTE_MAX	80

/*
 * Walks the entries of a list value.  Between entry_next() calls, p..end
 * is what is left of the current entry.
 */
typedef struct EntryIter
{
	const char *next;			/* start of the next entry; NULL after the last */
	int			entryno;		/* the current entry's number, from 1 */
	char		quoted[QUOTE_MAX + 8];	/* its text, for messages */
	const char *p;				/* next character of the current entry */
	const char *end;			/* end of the current entry */
	const char *star_hint;		/* what to say of a quoted "*", or NULL */
	DbpgParseError *err;
} EntryIter;

static bool reject(DbpgParseError *err, const char *hint, const char *fmt,...) DBPG_PRINTF(3, 4);
static void append(char *buf, size_t buflen, size_t *len, const char *fmt,...) DBPG_PRINTF(4, 5);

/* Say why a value is rejected (and, unless hint is NULL, what to write). */
static bool
reject(DbpgParseError *err, const char *hint, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
	snprintf(err->hint, sizeof(err->hint), "%s", hint ? hint : "");
	return false;
}

/* Reject the current entry: "Entry N ("text") <problem>." */
static bool
reject_entry(EntryIter *it, const char *problem, const char *hint)
{
	return reject(it->err, hint, "Entry %d (\"%s\") %s.", it->entryno,
				  it->quoted, problem);
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\f' || c == '\v';
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A character that may appear in a bare (unquoted) name. */
static bool
is_bare(char c)
{
	return c > ' ' && c <= '~' && c != ',' && c != '=' && c != '@' &&
		c != '"';
}

static void
skip_space(EntryIter *it)
{
	while (it->p < it->end && is_space(*it->p))
		it->p++;
}

/* Is the cursor at character ch (white space skipped first)? */
static bool
at_char(EntryIter *it, char ch)
{
	skip_space(it);
	return it->p < it->end && *it->p == ch;
}

/*
 * Copy the text of an entry, trimmed and shortened, for error messages.
 * Control and non-ASCII bytes are shown as '?' so that the message stays
 * printable whatever was written.
 */
static void
quote_entry(const char *start, const char *end, char *buf, size_t buflen)
{
	size_t		n = 0;

	while (start < end && is_space(*start))
		start++;
	while (end > start && is_space(end[-1]))
		end--;
	while (start < end && n + 4 < buflen && n < QUOTE_MAX)
	{
		char		ch = *start++;

		buf[n++] = (ch >= ' ' && ch <= '~') ? ch : '?';
	}
	if (start < end && n + 4 < buflen)
	{
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
}

/*
 * Find the end of the entry starting at p: the next comma outside double
 * quotes, or the end of the string.  Returns NULL on an unterminated
 * quote.
 */
static const char *
entry_end(const char *p)
{
	bool		inquote = false;

	for (; *p != '\0'; p++)
	{
		if (*p == '"')
		{
			if (inquote && p[1] == '"')
				p++;			/* doubled quote inside a quoted name */
			else
				inquote = !inquote;
		}
		else if (*p == ',' && !inquote)
			return p;
	}
	return inquote ? NULL : p;
}

static void
entries_begin(EntryIter *it, const char *value, DbpgParseError *err)
{
	const char *s = value ? value : "";

	memset(it, 0, sizeof(*it));
	it->err = err;
	err->detail[0] = '\0';
	err->hint[0] = '\0';
	it->next = s;
	while (*s != '\0' && is_space(*s))
		s++;
	if (*s == '\0')
		it->next = NULL;		/* empty or all blank: no entries */
}

/*
 * Move to the next entry: 1 when there is one (the cursor at its first
 * non-blank character), 0 after the last, -1 when it is rejected (an
 * unterminated quote, or an empty entry).
 */
static int
entry_next(EntryIter *it)
{
	const char *start = it->next;
	const char *end;

	if (start == NULL)
		return 0;
	it->entryno++;
	end = entry_end(start);
	if (end == NULL)
	{
		quote_entry(start, start + strlen(start), it->quoted, sizeof(it->quoted));
		reject_entry(it, "has an unterminated quoted name", NULL);
		return -1;
	}
	quote_entry(start, end, it->quoted, sizeof(it->quoted));
	it->p = start;
	it->end = end;
	it->next = *end == '\0' ? NULL : end + 1;
	skip_space(it);
	if (it->p == it->end)
	{
		reject(it->err, NULL, "Entry %d is empty.", it->entryno);
		return -1;
	}
	return 1;
}

#define NAME_TOO_LONG "has a name longer than 63 bytes (application_name is clipped to 63 bytes)"

/*
 * Read a name at the cursor into out[DBPG_NAME_MAX + 1]: bare, or in
 * double quotes with "" for one ".  *is_star tells whether it was the
 * bare "*" (a quoted "*" is rejected).  With pipe_ends, a bare name ends
 * at '|' (role lists).  On error, rejects the entry and returns false.
 */
static bool
parse_name(EntryIter *it, char *out, bool *is_star, bool pipe_ends)
{
	size_t		n = 0;

	*is_star = false;
	if (it->p < it->end && *it->p == '"')
	{
		it->p++;
		for (;;)
		{
			char		ch;

			if (it->p >= it->end)
				return reject_entry(it, "has an unterminated quoted name", NULL);
			ch = *it->p++;
			if (ch == '"')
			{
				if (it->p < it->end && *it->p == '"')
					it->p++;	/* "" stands for one " */
				else
					break;
			}
			if (ch < ' ' || ch > '~')
				return reject_entry(it, "has a name with a character that is not printable ASCII (application_name never contains one)", NULL);
			if (n >= DBPG_NAME_MAX)
				return reject_entry(it, NAME_TOO_LONG, NULL);
			out[n++] = ch;
		}
		out[n] = '\0';
		if (n == 0)
			return reject_entry(it, "has an empty name", NULL);
		if (strcmp(out, "*") == 0)
			return reject_entry(it, "has the quoted name \"*\"", it->star_hint);
		return true;
	}

	while (it->p < it->end && is_bare(*it->p) && !(pipe_ends && *it->p == '|'))
	{
		if (n >= DBPG_NAME_MAX)
			return reject_entry(it, NAME_TOO_LONG, NULL);
		out[n++] = *it->p++;
	}
	out[n] = '\0';
	if (n == 0)
	{
		if (it->p < it->end && !is_space(*it->p) && *it->p != '=')
			return reject_entry(it, BAD_CHAR, NULL);
		return reject_entry(it, "has an empty name", NULL);
	}
	if (it->p < it->end && !is_space(*it->p) && *it->p != '=' && *it->p != '@' &&
		!(pipe_ends && *it->p == '|'))
		return reject_entry(it, BAD_CHAR, NULL);
	*is_star = (strcmp(out, "*") == 0);
	return true;
}

/*
 * Parse a whole number of connections in [0, max] at the cursor: a budget
 * (what "budget", after sign '=') or a burst (what "burst", after sign
 * '+'); what and sign only name it in messages.  A "." after the digits
 * is rejected here, so that "1.5" is not read as 1 and stray text.
 */
static bool
parse_count(EntryIter *it, int max, const char *what, char sign,
			int32_t *out)
{
	char		problem[160];
	long		v = 0;

	if (it->p >= it->end || !is_digit(*it->p))
	{
		/* "a=+5": a burst with no budget before it */
		bool		burst_first = (sign == '=' && it->p < it->end &&
								   *it->p == '+');

		snprintf(problem, sizeof(problem),
				 "has no %s: a whole number of connections from 0 to max_connections must follow \"%c\"",
				 what, sign);
		return reject_entry(it, problem, burst_first ?
							"Write a budget before the burst, 0 for no slot of its own: name=0+burst." :
							NULL);
	}
	while (it->p < it->end && is_digit(*it->p))
	{
		v = v * 10 + (*it->p++ - '0');
		if (v > max)
		{
			snprintf(problem, sizeof(problem),
					 "has a %s larger than max_connections", what);
			return reject_entry(it, problem, NULL);
		}
	}
	if (at_char(it, '.'))
	{
		snprintf(problem, sizeof(problem),
				 "has a %s that is not a whole number of connections", what);
		return reject_entry(it, problem, NULL);
	}
	*out = (int32_t) v;
	return true;
}

/* Parse a decimal threshold in (0, 1] into parts per million, exactly. */
static bool
parse_threshold(EntryIter *it, int32_t *out)
{
	long		whole = 0;
	long		frac = 0;
	int			fdigits = 0;
	bool		any = false;

	while (it->p < it->end && is_digit(*it->p))
	{
		whole = whole * 10 + (*it->p++ - '0');
		any = true;
		if (whole > 1)
			return reject_entry(it, "has a threshold greater than 1", NULL);
	}
	if (it->p < it->end && *it->p == '.')
	{
		it->p++;
		while (it->p < it->end && is_digit(*it->p))
		{
			if (fdigits == 6)
				return reject_entry(it, "has a threshold with more than six decimal places", NULL);
			frac = frac * 10 + (*it->p++ - '0');
			fdigits++;
			any = true;
		}
		if (fdigits == 0)
			any = false;
	}
	if (!any)
		return reject_entry(it, "has no threshold: a number in (0, 1] must follow \"@\"", NULL);
	while (fdigits < 6)
	{
		frac *= 10;
		fdigits++;
	}
	if (whole * DBPG_PPM + frac > DBPG_PPM)
		return reject_entry(it, "has a threshold greater than 1", NULL);
	if (whole == 0 && frac == 0)
		return reject_entry(it, "has a threshold of 0; it must be greater than 0", NULL);
	*out = (int32_t) (whole * DBPG_PPM + frac);
	return true;
}

#define ONE_BURST_HINT "Write one burst per entry: name=budget+burst or name=budget+burst@threshold."

/* One budgets entry: name "=" budget [ "+" burst ] [ "@" threshold ]. */
static bool
parse_budget_entry(EntryIter *it, int max_budget, DbpgBudgetEntry *e,
				   bool *is_star)
{
	bool		has_burst = false;

	memset(e, 0, sizeof(*e));
	e->threshold_ppm = DBPG_THRESHOLD_DEFAULT;
	if (!parse_name(it, e->name, is_star, false))
		return false;
	if (!at_char(it, '='))
		return reject_entry(it, "has no \"=\" after the name",
							"Write name=budget, name=budget@threshold, name=budget+burst or name=budget+burst@threshold, with a name containing white space or , = @ \" in double quotes.");
	it->p++;
	skip_space(it);
	if (!parse_count(it, max_budget, "budget", '=', &e->budget))
		return false;
	if (at_char(it, '+'))
	{
		it->p++;
		skip_space(it);
		if (!parse_count(it, max_budget, "burst", '+', &e->burst))
			return false;
		if (at_char(it, '+'))
			return reject_entry(it, "has more than one burst", ONE_BURST_HINT);
		has_burst = true;
	}
	if (at_char(it, '@'))
	{
		it->p++;
		skip_space(it);
		if (!parse_threshold(it, &e->threshold_ppm))
			return false;
		if (at_char(it, '+') && has_burst)
			return reject_entry(it, "has more than one burst", ONE_BURST_HINT);
		if (at_char(it, '+'))
			return reject_entry(it, "has its burst after the threshold",
								"Write the burst before the threshold: name=budget+burst@threshold.");
		if (it->p < it->end)
			return reject_entry(it, "has unexpected text after the threshold",
								"A threshold is a plain decimal such as 0.85.");
	}
	if (it->p < it->end)
		return reject_entry(it, has_burst ?
							"has unexpected text after the burst" :
							"has unexpected text after the budget", NULL);
	return true;
}

/*
 * Entries and bindings begin with their name: one comparison sorts both
 * (qsort) and finds in both (bsearch, with the name as the key).
 */
static int
name_cmp(const void *a, const void *b)
{
	return strcmp((const char *) a, (const char *) b);
}

/*
 * Sort the services by name (budgets entries, or bindings when bound) and
 * reject a service that appears twice.
 */
static bool
sort_services(void *base, int n, size_t size, bool bound,
			  DbpgParseError *err)
{
	const char *p = base;

	qsort(base, n, size, name_cmp);
	for (int i = 1; i < n; i++)
	{
		const char *name = p + i * size;

		if (strcmp(p + (i - 1) * size, name) != 0)
			continue;
		if (bound)
			return reject(err, NULL, "Service \"%s\" is bound more than once.", name);
		return reject(err, NULL, "Service \"%s\" is listed more than once.", name);
	}
	return true;
}

/* Find a name in a sorted array of entries or bindings; NULL if absent. */
static const void *
find_name(const void *base, int n, size_t size, const char *name)
{
	return n > 0 ? bsearch(name, base, n, size, name_cmp) : NULL;
}

/* May the current entry add a service to the n already read? */
static bool
room_for_service(EntryIter *it, int n, int max_entries)
{
	if (n < max_entries)
		return true;
	return reject(it->err, NULL,
				  "Entry %d (\"%s\") is one more than the %d services that dbpool_guard.max_services allows.",
				  it->entryno, it->quoted, max_entries);
}

bool
dbpg_budgets_parse(const char *value, int max_entries, int max_budget,
				   DbpgBudgets *out, DbpgParseError *err)
{
	EntryIter	it;
	int			n = 0;
	int			r;

	out->nentries = 0;
	out->has_default = false;
	memset(&out->deflt, 0, sizeof(out->deflt));

	entries_begin(&it, value, err);
	it.star_hint = "Write * without quotes for the shared budget of unlisted services.";
	while ((r = entry_next(&it)) > 0)
	{
		DbpgBudgetEntry e;
		bool		is_star;

		if (!parse_budget_entry(&it, max_budget, &e, &is_star))
			return false;
		if (is_star)
		{
			if (out->has_default)
				return reject_entry(&it, "repeats the entry *", NULL);
			out->has_default = true;
			out->deflt = e;
		}
		else
		{
			if (!room_for_service(&it, n, max_entries))
				return false;
			out->entries[n++] = e;
		}
	}
	if (r < 0 ||
		!sort_services(out->entries, n, sizeof(DbpgBudgetEntry), false, err))
		return false;
	out->nentries = n;
	return true;
}

const DbpgBudgetEntry *
dbpg_budgets_find(const DbpgBudgets *b, const char *name)
{
	return b ? find_name(b->entries, b->nentries, sizeof(DbpgBudgetEntry), name) : NULL;
}

/* Append to buf as snprintf would, keeping the running length. */
static void
append(char *buf, size_t buflen, size_t *len, const char *fmt,...)
{
	va_list		ap;
	int			r;

	va_start(ap, fmt);
	r = vsnprintf(*len < buflen ? buf + *len : NULL,
				  *len < buflen ? buflen - *len : 0, fmt, ap);
	va_end(ap);
	if (r > 0)
		*len += (size_t) r;
}

static void
append_name(char *buf, size_t buflen, size_t *len, const char *name)
{
	bool		bare = (name[0] != '\0' && strcmp(name, "*") != 0);

	for (const char *s = name; *s && bare; s++)
		bare = is_bare(*s);
	if (bare)
	{
		append(buf, buflen, len, "%s", name);
		return;
	}
	append(buf, buflen, len, "\"");
	for (const char *s = name; *s; s++)
		append(buf, buflen, len, *s == '"' ? "\"\"" : "%c", *s);
	append(buf, buflen, len, "\"");
}

static void
append_entry(char *buf, size_t buflen, size_t *len,
			 const DbpgBudgetEntry *e, bool star)
{
	if (star)
		append(buf, buflen, len, "*");
	else
		append_name(buf, buflen, len, e->name);
	append(buf, buflen, len, "=%d", (int) e->budget);
	if (e->burst > 0)
		append(buf, buflen, len, "+%d", (int) e->burst);
	if (e->threshold_ppm != DBPG_THRESHOLD_DEFAULT)
	{
		int32_t		t = e->threshold_ppm;

		append(buf, buflen, len, "@%d.%06d", (int) (t / DBPG_PPM),
			   (int) (t % DBPG_PPM));
	}
}

size_t
dbpg_budgets_format(const DbpgBudgets *b, char *buf, size_t buflen)
{
	size_t		len = 0;

	if (buflen > 0)
		buf[0] = '\0';
	for (int i = 0; i < b->nentries; i++)
	{
		if (i > 0)
			append(buf, buflen, &len, ", ");
		append_entry(buf, buflen, &len, &b->entries[i], false);
	}
	if (b->has_default)
	{
		if (b->nentries > 0)
			append(buf, buflen, &len, ", ");
		append_entry(buf, buflen, &len, &b->deflt, true);
	}
	return len;
}

bool
dbpg_namelist_parse(const char *value, int max_names, DbpgNameList *out,
					DbpgParseError *err)
{
	EntryIter	it;
	int			r;

	out->nnames = 0;
	entries_begin(&it, value, err);
	while ((r = entry_next(&it)) > 0)
	{
		char		name[DBPG_NAME_MAX + 1];
		bool		is_star;

		if (*it.p == '*')
			return reject_entry(&it, "is not a role name", NULL);
		if (!parse_name(&it, name, &is_star, false))
			return false;
		skip_space(&it);
		if (it.p < it.end)
			return reject_entry(&it, "has unexpected text after the name",
								"Write a role name containing white space or = @ in double quotes.");
		for (int i = 0; i < out->nnames; i++)
		{
			if (strcmp(out->names[i], name) == 0)
				return reject(err, NULL, "Role \"%s\" is listed more than once.", name);
		}
		if (out->nnames >= max_names)
			return reject(err, NULL, "Entry %d (\"%s\") is one more than the %d roles allowed.",
						  it.entryno, it.quoted, max_names);
		memcpy(out->names[out->nnames++], name, sizeof(name));
	}
	return r == 0;
}

/*
 * One binding: service "=" role { "|" role }.  Its roles are appended to
 * roles[], which holds *nroles names and has room for max_roles.
 */
static bool
parse_binding(EntryIter *it, DbpgBinding *bnd, char (*roles)[DBPG_NAME_MAX + 1],
			  int *nroles, int max_roles)
{
	bool		is_star;

	memset(bnd, 0, sizeof(*bnd));
	if (!parse_name(it, bnd->service, &is_star, false))
		return false;
	if (is_star)
		return reject_entry(it, "binds *, which is not a service: only named services can be bound to roles", NULL);
	if (!at_char(it, '='))
		return reject_entry(it, "has no \"=\" after the service",
							"Write service=role or service=role1|role2.");
	it->p++;
	bnd->first = *nroles;
	for (;;)
	{
		char		role[DBPG_NAME_MAX + 1];

		if (at_char(it, '|') || it->p >= it->end)
			return reject_entry(it, "has an empty role name", NULL);
		if (!parse_name(it, role, &is_star, true))
			return false;
		if (is_star)
			return reject_entry(it, "has * where a role name belongs", NULL);
		for (int i = bnd->first; i < *nroles; i++)
		{
			if (strcmp(roles[i], role) == 0)
				return reject_entry(it, "names a role more than once", NULL);
		}
		if (*nroles >= max_roles)
			return reject(it->err, NULL,
						  "Entry %d (\"%s\") names more than the %d roles allowed in all.",
						  it->entryno, it->quoted, max_roles);
		memcpy(roles[(*nroles)++], role, sizeof(role));
		if (!at_char(it, '|'))
			break;
		it->p++;
	}
	if (it->p < it->end)
		return reject_entry(it, "has unexpected text after a role name",
							"Separate roles with |.");
	bnd->count = *nroles - bnd->first;
	return true;
}

bool
dbpg_bindings_parse(const char *value, int max_entries, int max_roles,
					DbpgBindings *out, DbpgParseError *err)
{
	/* the roles are gathered after room for max_entries, moved down at the end */
	char		(*roles)[DBPG_NAME_MAX + 1] =
		(char (*)[DBPG_NAME_MAX + 1]) &out->bindings[max_entries];
	EntryIter	it;
	int			nb = 0;
	int			nr = 0;
	int			r;

	out->nbindings = 0;
	out->nroles = 0;
	entries_begin(&it, value, err);
	while ((r = entry_next(&it)) > 0)
	{
		DbpgBinding bnd;

		if (!parse_binding(&it, &bnd, roles, &nr, max_roles) ||
			!room_for_service(&it, nb, max_entries))
			return false;
		out->bindings[nb++] = bnd;
	}
	if (r < 0 ||
		!sort_services(out->bindings, nb, sizeof(DbpgBinding), true, err))
		return false;
	out->nbindings = nb;
	out->nroles = nr;
	memmove(DbpgBindingsRoles(out), roles, (size_t) nr * (DBPG_NAME_MAX + 1));
	return true;
}

const DbpgBinding *
dbpg_bindings_find(const DbpgBindings *b, const char *service)
{
	return b ? find_name(b->bindings, b->nbindings, sizeof(DbpgBinding), service) : NULL;
}

int32_t
dbpg_cap(int32_t budget, int32_t threshold_ppm)
{
	int64_t		cap;

	if (budget <= 0)
		return 0;
	/* ceil(budget * ppm / 1e6) in integers: floating point cannot add one */
	cap = ((int64_t) budget * threshold_ppm + DBPG_PPM - 1) / DBPG_PPM;
	if (cap < 1)
		cap = 1;
	if (cap > budget)
		cap = budget;
	return (int32_t) cap;
}

int32_t
dbpg_ppm_from_double(double v)
{
	double		scaled = v * DBPG_PPM;

	if (!(scaled > 0.0))
		return 0;
	if (scaled >= DBPG_PPM)
		return DBPG_PPM;
	/* round to the nearest ppm: 0.07 is 70000, not 70000.00000000001 */
	return (int32_t) (scaled + 0.5);
}
