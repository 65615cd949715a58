#include "upstream/registry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    breaker *br[UPSTREAM_NOPS];
    bulkhead *bh;
} upstream_slot;

struct upstream_model {
    char *name;
    bool pinned;
    long holds;         /* attempts in progress */
    long reserved;      /* llm_reserve places */
    uint64_t last_used; /* the registry's tick when last asked for */
    upstream_slot *hosts; /* n_hosts */
};

struct upstream_registry {
    upstream_registry_config cfg;
    breaker_config breaker;
    upstream_model **models; /* the pinned ones first, then those on demand */
    size_t n_models, n_pinned, cap;
    uint64_t tick;
};

const char *upstream_op_name(upstream_op op)
{
    static const char *const names[UPSTREAM_NOPS] = {"embed", "chat", "models"};
    return op < UPSTREAM_NOPS ? names[op] : "unknown";
}

static void upstream_model_free(upstream_model *m)
{
    if (!m)
        return;
    free(m->hosts);
    free(m->name);
    free(m);
}

static upstream_model *upstream_model_new(const upstream_registry *r, const char *name, bool pinned)
{
    upstream_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->name = strdup(name);
    m->hosts = calloc(r->cfg.n_hosts ? r->cfg.n_hosts : 1, sizeof *m->hosts);
    m->pinned = pinned;
    if (!m->name || !m->hosts) {
        upstream_model_free(m);
        return NULL;
    }
    return m;
}

ragd_err upstream_registry_new(const upstream_registry_config *cfg, upstream_registry **out)
{
    *out = NULL;
    upstream_registry *r = calloc(1, sizeof *r);
    if (!r)
        return RAGD_ENOMEM;
    r->cfg = *cfg;
    r->breaker = *cfg->breaker;
    r->cfg.breaker = &r->breaker;
    r->cfg.pinned = NULL;
    r->cap = cfg->n_pinned + 1 + cfg->max_models;
    r->models = calloc(r->cap, sizeof *r->models);
    ragd_err e = r->models ? RAGD_OK : RAGD_ENOMEM;
    for (size_t i = 0; e == RAGD_OK && i <= cfg->n_pinned; i++) {
        const char *name = i < cfg->n_pinned ? cfg->pinned[i] : "";
        if (upstream_registry_find(r, name))
            continue; /* named twice */
        upstream_model *m = upstream_model_new(r, name, true);
        if (!m)
            e = RAGD_ENOMEM;
        else
            r->models[r->n_models++] = m;
    }
    r->n_pinned = r->n_models;
    if (e != RAGD_OK) {
        upstream_registry_free(r);
        return e;
    }
    *out = r;
    return RAGD_OK;
}

void upstream_registry_free(upstream_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_models; i++)
        upstream_model_free(r->models[i]);
    free(r->models);
    free(r);
}

upstream_model *upstream_registry_find(upstream_registry *r, const char *model)
{
    for (size_t i = 0; i < r->n_models; i++)
        if (strcmp(r->models[i]->name, model) == 0)
            return r->models[i];
    return NULL;
}

size_t upstream_registry_on_demand(const upstream_registry *r) { return r->n_models - r->n_pinned; }

/* Nothing of m is in use: no hold, no reservation, every breaker CLOSED, every bulkhead
 * idle. Such an entry can go without anyone noticing but its counters. */
static bool upstream_model_idle(const upstream_registry *r, upstream_model *m)
{
    if (m->pinned || m->holds > 0 || m->reserved > 0)
        return false;
    for (size_t h = 0; h < r->cfg.n_hosts; h++) {
        for (int op = 0; op < UPSTREAM_NOPS; op++) {
            breaker *b = m->hosts[h].br[op];
            if (!b)
                continue;
            breaker_snapshot s;
            breaker_snapshot_get(b, &s);
            if (s.state != BREAKER_CLOSED)
                return false;
        }
        if (m->hosts[h].bh && !bulkhead_idle(m->hosts[h].bh))
            return false;
    }
    return true;
}

/* Removes the least recently used idle entry on demand: true when one went. */
static bool upstream_registry_evict(upstream_registry *r)
{
    size_t victim = SIZE_MAX;
    for (size_t i = r->n_pinned; i < r->n_models; i++)
        if (upstream_model_idle(r, r->models[i]) &&
            (victim == SIZE_MAX || r->models[i]->last_used < r->models[victim]->last_used))
            victim = i;
    if (victim == SIZE_MAX)
        return false;
    upstream_model *m = r->models[victim];
    for (size_t h = 0; h < r->cfg.n_hosts; h++) {
        for (int op = 0; op < UPSTREAM_NOPS; op++)
            if (m->hosts[h].br[op])
                breaker_registry_remove(r->cfg.breakers, m->hosts[h].br[op]);
        if (m->hosts[h].bh)
            bulkhead_set_remove(r->cfg.bulkheads, m->hosts[h].bh); /* idle: removed */
    }
    upstream_model_free(m);
    r->models[victim] = r->models[--r->n_models];
    return true;
}

ragd_err upstream_registry_get(upstream_registry *r, const char *model, upstream_model **out)
{
    *out = NULL;
    upstream_model *m = upstream_registry_find(r, model);
    if (!m) {
        if (upstream_registry_on_demand(r) >= r->cfg.max_models && !upstream_registry_evict(r))
            return RAGD_EBUSY;
        m = upstream_model_new(r, model, false);
        if (!m)
            return RAGD_ENOMEM;
        r->models[r->n_models++] = m;
    }
    m->last_used = ++r->tick;
    *out = m;
    return RAGD_OK;
}

ragd_err upstream_model_breaker(upstream_registry *r, upstream_model *m, size_t host, upstream_op op, breaker **out)
{
    *out = m->hosts[host].br[op];
    if (*out)
        return RAGD_OK;
    char err[128];
    ragd_err e = breaker_registry_add(r->cfg.breakers, r->cfg.hosts[host], upstream_op_name(op), m->name, &r->breaker,
                                      out, err, sizeof err);
    if (e == RAGD_ECONFLICT) /* made elsewhere under that name (an admin test): share it */
        e = RAGD_OK;
    if (e == RAGD_OK)
        m->hosts[host].br[op] = *out;
    return e;
}

ragd_err upstream_model_bulkhead(upstream_registry *r, upstream_model *m, size_t host, bulkhead **out)
{
    *out = m->hosts[host].bh;
    if (*out)
        return RAGD_OK;
    ragd_err e = bulkhead_set_get(r->cfg.bulkheads, r->cfg.hosts[host], m->name, out);
    if (e == RAGD_OK)
        m->hosts[host].bh = *out;
    return e;
}

bulkhead *upstream_model_bulkhead_if(const upstream_model *m, size_t host) { return m->hosts[host].bh; }

void upstream_model_hold(upstream_model *m) { m->holds++; }
void upstream_model_release(upstream_model *m)
{
    if (m->holds > 0)
        m->holds--;
}
void upstream_model_reserve(upstream_model *m, long delta)
{
    m->reserved += delta;
    if (m->reserved < 0)
        m->reserved = 0;
}
long upstream_model_reserved(const upstream_model *m) { return m->reserved; }
