/*-------------------------------------------------------------------------
 * budgets.h
 *		Parsed forms of dbpool_guard.budgets, dbpool_guard.exempt_roles and
 *		dbpool_guard.service_roles, and their parsers.
 *
 * Everything here is plain C with no backend dependency, so that the
 * parsers can be fuzzed outside the server (test/fuzz).  Each parser
 * fills one flat block that the GUC check hook copies, at the size it
 * used, into the setting's "extra".
 *
 * IDENTIFICATION
 *		src/budgets.h
 *-------------------------------------------------------------------------
 */
#ifndef DBPG_BUDGETS_H
#define DBPG_BUDGETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest name that can match: application_name is clipped to 63 bytes. */
#define DBPG_NAME_MAX		63

/* Thresholds are exact decimals held as parts per million. */
#define DBPG_PPM			1000000

/* Threshold of an entry that did not give one: use dbpool_guard.threshold. */
#define DBPG_THRESHOLD_DEFAULT	(-1)

/*
 * Why a value was rejected: a full sentence for errdetail, and what to
 * write instead for errhint ("" when there is nothing to suggest).
 */
typedef struct DbpgParseError
{
	char		detail[256];
	char		hint[256];
} DbpgParseError;

/*
 * One budgets entry, "name=budget[+burst][@threshold]".  budget is the
 * service's own (guaranteed) slots, whose cap is ceil(threshold * budget);
 * burst is how many more it may borrow from dbpool_guard.burst_pool, 0
 * when the entry gives none.  A budget of 0 with a burst ("0+N") is a
 * service with no slot of its own that may only borrow; "0" alone (or
 * "0+0") may not connect.
 */
typedef struct DbpgBudgetEntry
{
	char		name[DBPG_NAME_MAX + 1];	/* first: entries sort by it */
	int32_t		budget;			/* 0 .. max_budget */
	int32_t		burst;			/* 0 .. max_budget; 0 when not given */
	int32_t		threshold_ppm;	/* 1 .. DBPG_PPM, or DBPG_THRESHOLD_DEFAULT */
} DbpgBudgetEntry;

/*
 * One flat block (it is a GUC "extra"): the named entries sorted by name
 * with strcmp, for binary search, and the "*" entry kept apart.
 */
typedef struct DbpgBudgets
{
	int32_t		nentries;		/* named entries */
	bool		has_default;	/* a "*" entry was given */
	DbpgBudgetEntry deflt;		/* the "*" entry, if has_default */
	DbpgBudgetEntry entries[];	/* nentries, sorted */
} DbpgBudgets;

#define DbpgBudgetsSize(n) \
	(offsetof(DbpgBudgets, entries) + (size_t) (n) * sizeof(DbpgBudgetEntry))

typedef struct DbpgNameList
{
	int32_t		nnames;
	char		names[][DBPG_NAME_MAX + 1];
} DbpgNameList;

#define DbpgNameListSize(n) \
	(offsetof(DbpgNameList, names) + (size_t) (n) * (DBPG_NAME_MAX + 1))

/*
 * dbpool_guard.service_roles: which roles may claim a service.  One flat
 * block: the bindings sorted by service, then the role names; a binding
 * names roles[first .. first+count) of DbpgBindingsRoles().
 */
typedef struct DbpgBinding
{
	char		service[DBPG_NAME_MAX + 1];	/* first: bindings sort by it */
	int32_t		first;
	int32_t		count;
} DbpgBinding;

typedef struct DbpgBindings
{
	int32_t		nbindings;
	int32_t		nroles;
	DbpgBinding bindings[];		/* then nroles names of DBPG_NAME_MAX + 1 */
} DbpgBindings;

#define DbpgBindingsSize(nb, nr) \
	(offsetof(DbpgBindings, bindings) + (size_t) (nb) * sizeof(DbpgBinding) + \
	 (size_t) (nr) * (DBPG_NAME_MAX + 1))
#define DbpgBindingsRoles(b) \
	((char (*)[DBPG_NAME_MAX + 1]) &(b)->bindings[(b)->nbindings])

/*
 * The parsers.  Each fills *out, which must have room for the largest
 * value allowed (the ...Size() macros with the limits given); on failure
 * each returns false and says why in *err.
 *
 * dbpg_budgets_parse reads "name=budget[+burst][@threshold], ..." (the
 * grammar is at the top of budgets.c); max_budget bounds both the budget
 * and the burst of every entry.
 */
extern bool dbpg_budgets_parse(const char *value, int max_entries,
							   int max_budget, DbpgBudgets *out,
							   DbpgParseError *err);

/* Parse a comma-separated list of role names (exempt_roles). */
extern bool dbpg_namelist_parse(const char *value, int max_names,
								DbpgNameList *out, DbpgParseError *err);

/*
 * Parse a service_roles value, "service=role1|role2, ...", into *out of
 * DbpgBindingsSize(max_entries, max_roles) bytes; the block it leaves is
 * DbpgBindingsSize(out->nbindings, out->nroles) bytes long.
 */
extern bool dbpg_bindings_parse(const char *value, int max_entries,
								int max_roles, DbpgBindings *out,
								DbpgParseError *err);

/* Find a named entry (binary search); NULL when not listed. */
extern const DbpgBudgetEntry *dbpg_budgets_find(const DbpgBudgets *b,
												const char *name);

/* Find the binding of a service (binary search); NULL when unbound. */
extern const DbpgBinding *dbpg_bindings_find(const DbpgBindings *b,
											 const char *service);

/*
 * Print a parsed budgets value in canonical form (sorted, quoted where
 * needed, "+burst" only when the burst is above 0, "*" last).  Returns the length it needed, like snprintf.  Used
 * by the fuzz harness (test/fuzz) to check that what is parsed prints
 * and parses back the same; the server does not call it.
 */
extern size_t dbpg_budgets_format(const DbpgBudgets *b, char *buf,
								  size_t buflen);

/* Cap for a budget and threshold: ceil(budget * threshold), in [1, budget]. */
extern int32_t dbpg_cap(int32_t budget, int32_t threshold_ppm);

/* Parts per million from a double in (0, 1]; 0 if it rounds to nothing. */
extern int32_t dbpg_ppm_from_double(double v);

#endif							/* DBPG_BUDGETS_H */
