#ifndef RAGD_UPSTREAM_REGISTRY_H
#define RAGD_UPSTREAM_REGISTRY_H

/* The breakers and bulkheads of one llm (docs/internals/codec.md, "registry"): a breaker
 * per (backend host, operation, model) and a bulkhead per (backend host, model), reached
 * through one entry per model. The configured models' entries are built at start and never
 * go; a model outside the configuration (pass-through lets clients name any) gets an entry
 * on demand, at most max_models of them: past that the least recently used idle one is
 * evicted (its breakers all CLOSED, nothing in flight, queued or reserved), and when none
 * is idle the caller is refused (RAGD_EBUSY).
 *
 * The breakers and bulkheads themselves stay in the breaker_registry and bulkhead_set the
 * caller owns (what /health and /metrics iterate); this module creates them on first use
 * and removes those of an evicted model.
 *
 * Threads: loop thread only, no locks. Never calls back. */
#include <stdbool.h>
#include <stddef.h>

#include "upstream/breaker.h"
#include "upstream/bulkhead.h"
#include "util/err.h"

typedef enum { UPSTREAM_OP_EMBED, UPSTREAM_OP_CHAT, UPSTREAM_OP_MODELS, UPSTREAM_NOPS } upstream_op;
/* "embed", "chat", "models": the op part of a breaker's name. */
const char *upstream_op_name(upstream_op op);

typedef struct upstream_registry upstream_registry;
typedef struct upstream_model upstream_model;

typedef struct {
    breaker_registry *breakers;   /* borrowed: where the breakers live */
    bulkhead_set *bulkheads;      /* borrowed: where the bulkheads live */
    const char *const *hosts;     /* the backends' names as shown (borrowed, outlive the registry) */
    size_t n_hosts;
    const breaker_config *breaker; /* copied */
    const char *const *pinned;    /* the configured models (copied); "" is always one */
    size_t n_pinned;
    size_t max_models;            /* entries on demand, beyond the pinned ones (>= 1) */
} upstream_registry_config;

/* RAGD_OK and *out, RAGD_ENOMEM. */
ragd_err upstream_registry_new(const upstream_registry_config *cfg, upstream_registry **out);
/* Frees the entries; their breakers and bulkheads stay with their sets. NULL ok. */
void upstream_registry_free(upstream_registry *r);

/* The entry of model, found or created (see above), marked as used now. RAGD_EBUSY when
 * max_models entries on demand exist and none is idle; RAGD_ENOMEM. */
ragd_err upstream_registry_get(upstream_registry *r, const char *model, upstream_model **out);
/* The entry of model when it exists; never creates or evicts. */
upstream_model *upstream_registry_find(upstream_registry *r, const char *model);
/* Entries on demand now (the pinned ones not counted). */
size_t upstream_registry_on_demand(const upstream_registry *r);

/* The breaker of (host, op) of m and its bulkhead of host, created on first use. RAGD_OK,
 * or the error of breaker_registry_add / bulkhead_set_get (a set full). */
ragd_err upstream_model_breaker(upstream_registry *r, upstream_model *m, size_t host, upstream_op op, breaker **out);
ragd_err upstream_model_bulkhead(upstream_registry *r, upstream_model *m, size_t host, bulkhead **out);
/* The bulkhead of host when it exists, else NULL. */
bulkhead *upstream_model_bulkhead_if(const upstream_model *m, size_t host);

/* Holds keep an entry from eviction: one per attempt in progress (from host choice to its
 * end) and one per reservation. */
void upstream_model_hold(upstream_model *m);
void upstream_model_release(upstream_model *m);
void upstream_model_reserve(upstream_model *m, long delta); /* +1 per llm_reserve, -1 per give-back */
long upstream_model_reserved(const upstream_model *m);

#endif
