#include "util/ratelimit.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"

typedef struct {
    uint64_t key; /* 0 = empty */
    double tokens;
    double last_ms;
} rl_bucket;

struct ratelimit {
    ratelimit_spec spec;
    double per_ms;      /* tokens refilled per millisecond */
    rl_bucket *tab;     /* open addressing, linear probing */
    rl_bucket *spare;   /* the sweep rebuilds into it, then the two swap: no allocation */
    size_t size;        /* a power of two, at least twice max */
    size_t max, n;
    double last_sweep_ms;
    rl_bucket overflow; /* shared by newcomers that find no room */
};

int ratelimit_parse(const char *v, ratelimit_spec *out)
{
    if (strcmp(v, "0") == 0) {
        *out = (ratelimit_spec){0, 1};
        return 0;
    }
    if (v[0] < '1' || v[0] > '9')
        return -1;
    char *end = NULL;
    unsigned long n = strtoul(v, &end, 10);
    if (*end != '/' || n > 1000000)
        return -1;
    static const struct {
        const char *unit;
        double s;
    } units[] = {{"second", 1}, {"sec", 1}, {"s", 1}, {"minute", 60}, {"min", 60},
                 {"m", 60},     {"hour", 3600}, {"h", 3600}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strcmp(end + 1, units[i].unit) == 0) {
            *out = (ratelimit_spec){(unsigned)n, units[i].s};
            return 0;
        }
    return -1;
}

const char *ratelimit_unit(const ratelimit_spec *spec)
{
    return spec->period_s <= 1 ? "second" : spec->period_s <= 60 ? "minute" : "hour";
}

ratelimit *ratelimit_new(const ratelimit_spec *spec, size_t max_clients)
{
    ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->spec = *spec;
    rl->per_ms = spec->count / (spec->period_s * 1000.0);
    rl->max = max_clients < 16 ? 16 : max_clients;
    rl->size = 32;
    while (rl->size < 2 * rl->max)
        rl->size *= 2;
    rl->tab = calloc(rl->size, sizeof *rl->tab);
    rl->spare = calloc(rl->size, sizeof *rl->spare);
    if (!rl->tab || !rl->spare) {
        ratelimit_free(rl);
        return NULL;
    }
    rl->overflow.tokens = spec->count;
    rl->last_sweep_ms = -INFINITY;
    return rl;
}

void ratelimit_free(ratelimit *rl)
{
    if (!rl)
        return;
    free(rl->tab);
    free(rl->spare);
    free(rl);
}

size_t ratelimit_clients(const ratelimit *rl) { return rl->n; }

/* The bucket's tokens at now_ms: refilled, at most count. */
static double rl_level(const ratelimit *rl, const rl_bucket *b, double now_ms)
{
    double t = b->tokens + (now_ms - b->last_ms) * rl->per_ms;
    return t > rl->spec.count ? rl->spec.count : t;
}

static size_t rl_slot(const rl_bucket *tab, size_t size, uint64_t key)
{
    size_t j = key & (size - 1);
    while (tab[j].key && tab[j].key != key)
        j = (j + 1) & (size - 1);
    return j;
}

/* Drops every bucket that is full again (as good as none): the others move to the spare
 * table, which becomes the table. */
static void rl_sweep(ratelimit *rl, double now_ms)
{
    rl->last_sweep_ms = now_ms;
    memset(rl->spare, 0, rl->size * sizeof *rl->spare);
    size_t kept = 0;
    for (size_t i = 0; i < rl->size; i++) {
        const rl_bucket *b = &rl->tab[i];
        if (b->key && rl_level(rl, b, now_ms) < rl->spec.count) {
            rl->spare[rl_slot(rl->spare, rl->size, b->key)] = *b;
            kept++;
        }
    }
    rl_bucket *t = rl->tab;
    rl->tab = rl->spare;
    rl->spare = t;
    rl->n = kept;
}

/* The client's bucket, a new full one, or the overflow bucket when there is no room. */
static rl_bucket *rl_find(ratelimit *rl, uint64_t key, double now_ms)
{
    size_t j = rl_slot(rl->tab, rl->size, key);
    if (rl->tab[j].key == key)
        return &rl->tab[j];
    if (rl->n >= rl->max && now_ms - rl->last_sweep_ms >= 1000.0) {
        rl_sweep(rl, now_ms);
        j = rl_slot(rl->tab, rl->size, key);
    }
    if (rl->n >= rl->max)
        return &rl->overflow;
    rl->tab[j] = (rl_bucket){.key = key, .tokens = rl->spec.count, .last_ms = now_ms};
    rl->n++;
    return &rl->tab[j];
}

void ratelimit_take(ratelimit *rl, const char *client, size_t len, double now_ms, ratelimit_verdict *out)
{
    uint64_t key = hash_fnv1a64(client, len, 0x9e3779b97f4a7c15ull);
    key += key == 0; /* 0 marks an empty slot */
    rl_bucket *b = rl_find(rl, key, now_ms);
    double level = rl_level(rl, b, now_ms);
    bool allowed = level >= 1.0;
    if (allowed)
        level -= 1.0;
    b->tokens = level;
    b->last_ms = now_ms;
    double s_per_token = 1.0 / (rl->per_ms * 1000.0);
    *out = (ratelimit_verdict){
        .allowed = allowed,
        .limit = rl->spec.count,
        .remaining = (unsigned)floor(level + 1e-9),
        /* whole seconds, rounded up, with a margin for the float error of the refill */
        .reset_s = (unsigned)ceil((rl->spec.count - level) * s_per_token - 1e-6),
        .retry_s = allowed ? 0 : (unsigned)ceil((1.0 - level) * s_per_token - 1e-6),
    };
    if (!allowed && out->retry_s == 0)
        out->retry_s = 1;
}
