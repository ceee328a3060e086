/*-------------------------------------------------------------------------
 * budgets.c
 *		Parsers for dbpool_guard.budgets and dbpool_guard.exempt_roles.
 *
 * libc only: no palloc, no ereport.  The GUC check hooks call these and
 * turn a false return into GUC_check_errdetail(why); the fuzz harness in
 * test/fuzz calls them directly.
 *
 * Grammar of a budgets value (white space around tokens is ignored):
 *
 *		value	:= [ entry { "," entry } ]
 *		entry	:= name "=" budget [ "@" threshold ]
 *		name	:= "*" | bare | '"' { char | '""' } '"'
 *		bare	:= one or more printable ASCII characters other than
 *				   white space and  , = @ "
 *		budget	:= digits					(0 .. max_budget)
 *		threshold := digits [ "." digits ] | "." digits	(in (0, 1],
 *				   at most six decimals)
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

typedef struct Cursor
{
	const char *p;				/* next character */
	const char *end;			/* end of the entry being parsed */
} Cursor;

static void set_why(char *why, size_t whylen, const char *fmt,...) DBPG_PRINTF(3, 4);
static void append(char *buf, size_t buflen, size_t *len, const char *fmt,...) DBPG_PRINTF(4, 5);

static void
set_why(char *why, size_t whylen, const char *fmt,...)
{
	va_list		ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
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
skip_space(Cursor *c)
{
	while (c->p < c->end && is_space(*c->p))
		c->p++;
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

/*
 * Parse a name at the cursor into out[DBPG_NAME_MAX + 1].  *is_star tells
 * whether it was the bare "*".  On error, fills why with the reason (a
 * sentence fragment completed by the caller).
 */
static bool
parse_name(Cursor *c, char *out, bool *is_star, const char **problem,
		   bool pipe_ends)
{
	size_t		n = 0;

	*is_star = false;
	if (c->p < c->end && *c->p == '"')
	{
		c->p++;
		for (;;)
		{
			char		ch;

			if (c->p >= c->end)
			{
				*problem = "has an unterminated quoted name";
				return false;
			}
			ch = *c->p++;
			if (ch == '"')
			{
				if (c->p < c->end && *c->p == '"')
					c->p++;		/* "" stands for one " */
				else
					break;
			}
			if (ch < ' ' || ch > '~')
			{
				*problem = "has a name with a character that is not printable ASCII (application_name never contains one)";
				return false;
			}
			if (n >= DBPG_NAME_MAX)
			{
				*problem = "has a name longer than 63 bytes (application_name is clipped to 63 bytes)";
				return false;
			}
			out[n++] = ch;
		}
		out[n] = '\0';
		if (n == 0)
		{
			*problem = "has an empty name";
			return false;
		}
		if (strcmp(out, "*") == 0)
		{
			*problem = "has the quoted name \"*\"; write * without quotes for the shared budget of unlisted services";
			return false;
		}
		return true;
	}

	while (c->p < c->end && is_bare(*c->p) && !(pipe_ends && *c->p == '|'))
	{
		if (n >= DBPG_NAME_MAX)
		{
			*problem = "has a name longer than 63 bytes (application_name is clipped to 63 bytes)";
			return false;
		}
		out[n++] = *c->p++;
	}
	out[n] = '\0';
	if (n == 0)
	{
		if (c->p < c->end && !is_space(*c->p) && *c->p != '=')
			*problem = BAD_CHAR;
		else
			*problem = "has an empty name";
		return false;
	}
	if (c->p < c->end && !is_space(*c->p) && *c->p != '=' && *c->p != '@' &&
		!(pipe_ends && *c->p == '|'))
	{
		*problem = BAD_CHAR;
		return false;
	}
	*is_star = (strcmp(out, "*") == 0);
	return true;
}

/* Parse an unsigned integer in [0, max]. */
static bool
parse_budget(Cursor *c, int max_budget, int32_t *out, const char **problem)
{
	long		v = 0;

	if (c->p >= c->end || !is_digit(*c->p))
	{
		*problem = "has no budget: a whole number of connections from 0 to max_connections must follow \"=\"";
		return false;
	}
	while (c->p < c->end && is_digit(*c->p))
	{
		v = v * 10 + (*c->p++ - '0');
		if (v > max_budget)
		{
			*problem = "has a budget larger than max_connections";
			return false;
		}
	}
	*out = (int32_t) v;
	return true;
}

/* Parse a decimal threshold in (0, 1] into parts per million, exactly. */
static bool
parse_threshold(Cursor *c, int32_t *out, const char **problem)
{
	long		whole = 0;
	long		frac = 0;
	int			fdigits = 0;
	bool		any = false;

	while (c->p < c->end && is_digit(*c->p))
	{
		whole = whole * 10 + (*c->p++ - '0');
		any = true;
		if (whole > 1)
		{
			*problem = "has a threshold greater than 1";
			return false;
		}
	}
	if (c->p < c->end && *c->p == '.')
	{
		c->p++;
		while (c->p < c->end && is_digit(*c->p))
		{
			if (fdigits == 6)
			{
				*problem = "has a threshold with more than six decimal places";
				return false;
			}
			frac = frac * 10 + (*c->p++ - '0');
			fdigits++;
			any = true;
		}
		if (fdigits == 0)
			any = false;
	}
	if (!any)
	{
		*problem = "has no threshold: a number in (0, 1] must follow \"@\"";
		return false;
	}
	while (fdigits < 6)
	{
		frac *= 10;
		fdigits++;
	}
	if (whole * DBPG_PPM + frac > DBPG_PPM)
	{
		*problem = "has a threshold greater than 1";
		return false;
	}
	if (whole == 0 && frac == 0)
	{
		*problem = "has a threshold of 0; it must be greater than 0";
		return false;
	}
	*out = (int32_t) (whole * DBPG_PPM + frac);
	return true;
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const DbpgBudgetEntry *) a)->name,
				  ((const DbpgBudgetEntry *) b)->name);
}

bool
dbpg_budgets_parse(const char *value, int max_entries, int max_budget,
				   DbpgBudgets *out, char *why, size_t whylen)
{
	const char *p = value ? value : "";
	int			entryno = 0;
	int			n = 0;
	char		quoted[QUOTE_MAX + 8];
	const char *s;

	out->nentries = 0;
	out->has_default = false;
	memset(&out->deflt, 0, sizeof(out->deflt));

	/* An empty or all-blank value means no budgets. */
	for (s = p; *s != '\0' && is_space(*s); s++)
		;
	if (*s == '\0')
		return true;

	for (;;)
	{
		const char *end = entry_end(p);
		const char *problem = NULL;
		Cursor		c;
		DbpgBudgetEntry e;
		bool		is_star;

		entryno++;
		if (end == NULL)
		{
			quote_entry(p, p + strlen(p), quoted, sizeof(quoted));
			set_why(why, whylen, "Entry %d (\"%s\") has an unterminated quoted name.",
					entryno, quoted);
			return false;
		}
		quote_entry(p, end, quoted, sizeof(quoted));

		c.p = p;
		c.end = end;
		memset(&e, 0, sizeof(e));
		e.threshold_ppm = DBPG_THRESHOLD_DEFAULT;
		skip_space(&c);
		if (c.p == c.end)
		{
			set_why(why, whylen, "Entry %d is empty.", entryno);
			return false;
		}
		if (!parse_name(&c, e.name, &is_star, &problem, false))
			goto bad;
		skip_space(&c);
		if (c.p >= c.end || *c.p != '=')
		{
			problem = "has no \"=\" after the name; write name=budget or name=budget@threshold, with a name containing white space or , = @ \" in double quotes";
			goto bad;
		}
		c.p++;
		skip_space(&c);
		if (!parse_budget(&c, max_budget, &e.budget, &problem))
			goto bad;
		skip_space(&c);
		if (c.p < c.end && *c.p == '.')
		{
			problem = "has a budget that is not a whole number of connections";
			goto bad;
		}
		if (c.p < c.end && *c.p == '@')
		{
			c.p++;
			skip_space(&c);
			if (!parse_threshold(&c, &e.threshold_ppm, &problem))
				goto bad;
			skip_space(&c);
			if (c.p < c.end)
			{
				problem = "has unexpected text after the threshold; a threshold is a plain decimal such as 0.85";
				goto bad;
			}
		}
		if (c.p < c.end)
		{
			problem = "has unexpected text after the budget";
			goto bad;
		}

		if (is_star)
		{
			if (out->has_default)
			{
				set_why(why, whylen, "Entry %d (\"%s\") repeats the entry *.",
						entryno, quoted);
				return false;
			}
			out->has_default = true;
			out->deflt = e;
		}
		else
		{
			if (n >= max_entries)
			{
				set_why(why, whylen,
						"Entry %d (\"%s\") is one more than the %d services that dbpool_guard.max_services allows.",
						entryno, quoted, max_entries);
				return false;
			}
			out->entries[n++] = e;
		}

		if (*end == '\0')
			break;
		p = end + 1;
		continue;

bad:
		set_why(why, whylen, "Entry %d (\"%s\") %s.", entryno, quoted, problem);
		return false;
	}

	qsort(out->entries, n, sizeof(DbpgBudgetEntry), entry_cmp);
	for (int i = 1; i < n; i++)
	{
		if (strcmp(out->entries[i - 1].name, out->entries[i].name) == 0)
		{
			set_why(why, whylen, "Service \"%s\" is listed more than once.",
					out->entries[i].name);
			return false;
		}
	}
	out->nentries = n;
	return true;
}

const DbpgBudgetEntry *
dbpg_budgets_find(const DbpgBudgets *b, const char *name)
{
	int			lo = 0;
	int			hi;

	if (b == NULL)
		return NULL;
	hi = b->nentries - 1;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			cmp = strcmp(name, b->entries[mid].name);

		if (cmp == 0)
			return &b->entries[mid];
		if (cmp < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
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
					char *why, size_t whylen)
{
	const char *p = value ? value : "";
	int			entryno = 0;
	char		quoted[QUOTE_MAX + 8];
	const char *s;

	out->nnames = 0;
	for (s = p; *s != '\0' && is_space(*s); s++)
		;
	if (*s == '\0')
		return true;

	for (;;)
	{
		const char *end = entry_end(p);
		const char *problem = NULL;
		Cursor		c;
		char		name[DBPG_NAME_MAX + 1];
		bool		is_star;

		entryno++;
		if (end == NULL)
		{
			quote_entry(p, p + strlen(p), quoted, sizeof(quoted));
			set_why(why, whylen, "Entry %d (\"%s\") has an unterminated quoted name.",
					entryno, quoted);
			return false;
		}
		quote_entry(p, end, quoted, sizeof(quoted));
		c.p = p;
		c.end = end;
		skip_space(&c);
		if (c.p == c.end)
		{
			set_why(why, whylen, "Entry %d is empty.", entryno);
			return false;
		}
		if (*c.p == '*')
		{
			set_why(why, whylen, "Entry %d (\"%s\") is not a role name.",
					entryno, quoted);
			return false;
		}
		if (!parse_name(&c, name, &is_star, &problem, false))
		{
			set_why(why, whylen, "Entry %d (\"%s\") %s.", entryno, quoted, problem);
			return false;
		}
		skip_space(&c);
		if (c.p < c.end)
		{
			set_why(why, whylen,
					"Entry %d (\"%s\") has unexpected text after the name; write a role name containing white space or = @ in double quotes.",
					entryno, quoted);
			return false;
		}
		for (int i = 0; i < out->nnames; i++)
		{
			if (strcmp(out->names[i], name) == 0)
			{
				set_why(why, whylen, "Role \"%s\" is listed more than once.", name);
				return false;
			}
		}
		if (out->nnames >= max_names)
		{
			set_why(why, whylen, "Entry %d (\"%s\") is one more than the %d roles allowed.",
					entryno, quoted, max_names);
			return false;
		}
		memcpy(out->names[out->nnames++], name, sizeof(name));

		if (*end == '\0')
			break;
		p = end + 1;
	}
	return true;
}

static int
binding_cmp(const void *a, const void *b)
{
	return strcmp(((const DbpgBinding *) a)->service,
				  ((const DbpgBinding *) b)->service);
}

bool
dbpg_bindings_parse(const char *value, int max_entries, int max_roles,
					DbpgBinding *bout, char (*rout)[DBPG_NAME_MAX + 1],
					int *nb, int *nr, char *why, size_t whylen)
{
	const char *p = value ? value : "";
	int			entryno = 0;
	char		quoted[QUOTE_MAX + 8];
	const char *s;

	*nb = 0;
	*nr = 0;
	for (s = p; *s != '\0' && is_space(*s); s++)
		;
	if (*s == '\0')
		return true;

	for (;;)
	{
		const char *end = entry_end(p);
		const char *problem = NULL;
		Cursor		c;
		DbpgBinding bnd;
		bool		is_star;

		entryno++;
		if (end == NULL)
		{
			quote_entry(p, p + strlen(p), quoted, sizeof(quoted));
			set_why(why, whylen, "Entry %d (\"%s\") has an unterminated quoted name.",
					entryno, quoted);
			return false;
		}
		quote_entry(p, end, quoted, sizeof(quoted));
		c.p = p;
		c.end = end;
		memset(&bnd, 0, sizeof(bnd));
		skip_space(&c);
		if (c.p == c.end)
		{
			set_why(why, whylen, "Entry %d is empty.", entryno);
			return false;
		}
		if (!parse_name(&c, bnd.service, &is_star, &problem, false))
			goto bad;
		if (is_star)
		{
			problem = "binds *, which is not a service: only named services can be bound to roles";
			goto bad;
		}
		skip_space(&c);
		if (c.p >= c.end || *c.p != '=')
		{
			problem = "has no \"=\" after the service; write service=role or service=role1|role2";
			goto bad;
		}
		c.p++;
		bnd.first = *nr;
		for (;;)
		{
			char		role[DBPG_NAME_MAX + 1];
			bool		role_star;

			skip_space(&c);
			if (c.p >= c.end || *c.p == '|')
			{
				problem = "has an empty role name";
				goto bad;
			}
			if (!parse_name(&c, role, &role_star, &problem, true))
				goto bad;
			if (role_star)
			{
				problem = "has * where a role name belongs";
				goto bad;
			}
			for (int i = bnd.first; i < *nr; i++)
			{
				if (strcmp(rout[i], role) == 0)
				{
					problem = "names a role more than once";
					goto bad;
				}
			}
			if (*nr >= max_roles)
			{
				set_why(why, whylen, "Entry %d (\"%s\") names more than the %d roles allowed in all.",
						entryno, quoted, max_roles);
				return false;
			}
			memcpy(rout[(*nr)++], role, sizeof(role));
			skip_space(&c);
			if (c.p < c.end && *c.p == '|')
			{
				c.p++;
				continue;
			}
			break;
		}
		if (c.p < c.end)
		{
			problem = "has unexpected text after a role name; separate roles with |";
			goto bad;
		}
		bnd.count = *nr - bnd.first;
		if (*nb >= max_entries)
		{
			set_why(why, whylen,
					"Entry %d (\"%s\") is one more than the %d services that dbpool_guard.max_services allows.",
					entryno, quoted, max_entries);
			return false;
		}
		bout[(*nb)++] = bnd;

		if (*end == '\0')
			break;
		p = end + 1;
		continue;

bad:
		set_why(why, whylen, "Entry %d (\"%s\") %s.", entryno, quoted, problem);
		return false;
	}

	qsort(bout, *nb, sizeof(DbpgBinding), binding_cmp);
	for (int i = 1; i < *nb; i++)
	{
		if (strcmp(bout[i - 1].service, bout[i].service) == 0)
		{
			set_why(why, whylen, "Service \"%s\" is bound more than once.",
					bout[i].service);
			return false;
		}
	}
	return true;
}

const DbpgBinding *
dbpg_bindings_find(const DbpgBindings *b, const char *service)
{
	int			lo = 0;
	int			hi;

	if (b == NULL)
		return NULL;
	hi = b->nbindings - 1;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			cmp = strcmp(service, b->bindings[mid].service);

		if (cmp == 0)
			return &b->bindings[mid];
		if (cmp < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
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
