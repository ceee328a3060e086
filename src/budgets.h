/*-------------------------------------------------------------------------
 * budgets.h
 *		Parsed forms of dbpool_guard.budgets and dbpool_guard.exempt_roles.
 *
 * Everything here is plain C with no backend dependency, so that the
 * parsers can be fuzzed and unit-tested outside the server.
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

typedef struct DbpgBudgetEntry
{
	char		name[DBPG_NAME_MAX + 1];
	int32_t		budget;			/* 0 .. max_budget */
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
 * dbpool_guard.service_roles: which roles may claim a service.  The
 * bindings are sorted by service; each names roles[first .. first+count).
 */
typedef struct DbpgBinding
{
	char		service[DBPG_NAME_MAX + 1];
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
 * Parse a budgets value into *out, which must have room for max_entries
 * named entries (DbpgBudgetsSize(max_entries)).  On failure return false
 * and write a full sentence saying why into why[whylen].
 */
extern bool dbpg_budgets_parse(const char *value, int max_entries,
							   int max_budget, DbpgBudgets *out,
							   char *why, size_t whylen);

/* Find a named entry (binary search); NULL when not listed. */
extern const DbpgBudgetEntry *dbpg_budgets_find(const DbpgBudgets *b,
												const char *name);

/*
 * Print a parsed value in canonical form (sorted, quoted where needed,
 * "*" last).  Returns the length it needed, like snprintf.
 */
extern size_t dbpg_budgets_format(const DbpgBudgets *b, char *buf,
								  size_t buflen);

/* Parse a comma-separated list of names (exempt_roles). */
extern bool dbpg_namelist_parse(const char *value, int max_names,
								DbpgNameList *out, char *why, size_t whylen);

/*
 * Parse a service_roles value: "service=role1|role2, ...".  Bindings go
 * to bout[max_entries], role names to rout[max_roles]; counts to *nb, *nr.
 */
extern bool dbpg_bindings_parse(const char *value, int max_entries,
								int max_roles, DbpgBinding *bout,
								char (*rout)[DBPG_NAME_MAX + 1],
								int *nb, int *nr, char *why, size_t whylen);

/* Find the binding of a service (binary search); NULL when unbound. */
extern const DbpgBinding *dbpg_bindings_find(const DbpgBindings *b,
											 const char *service);

/* Cap for a budget and threshold: ceil(budget * threshold), in [1, budget]. */
extern int32_t dbpg_cap(int32_t budget, int32_t threshold_ppm);

/* Parts per million from a double in (0, 1]; 0 if it rounds to nothing. */
extern int32_t dbpg_ppm_from_double(double v);

#endif							/* DBPG_BUDGETS_H */
