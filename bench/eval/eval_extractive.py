#!/usr/bin/env python3
"""Answer quality of the extractive generator (no LLM): how many answers contain the expected
fact, on a small labelled question set over markdown team notes (headings, lists, tables, code
fences, anchors, link lists), mixed with the repository's own docs and the HTML pages of
tests/e2e/test_extractive.py as distractors. Also the answers' time as the server reports it
(timings_ms.total of an extractive query is dominated by retrieval; the generator alone is
measured by bench/bench_extractive.c).

    RAGD_BIN=$PWD/build/ragd python3 bench/eval/eval_extractive.py [-v]

Results: BENCHMARKS.md ("Extractive answers").
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
import harness  # noqa: E402
import test_extractive  # noqa: E402

NOTES = {
    "notes/backups.md": test_extractive.BACKUP_NOTE,
    "notes/oncall.md": """# On-call

<a name="rota"></a>
## Rota

| week | person |
|------|--------|
| 1 | Dana |

Maria Lopez leads the on-call rota this quarter. Each shift lasts one week, from Monday 09:00 to the next Monday 09:00.

## Escalation

- [Runbook](https://wiki.example/runbook)
- [Pager settings](https://wiki.example/pager)

If the primary does not acknowledge a page within 15 minutes, it escalates to the secondary.
We chose PagerDuty over Opsgenie because it already integrates with our chat tool.
""",
    "notes/release.md": """# Release process

1. Introduction .......... 1
2. Branching .......... 2
3. Tagging .......... 3

## Branching

Releases are cut from the main branch every second Thursday.
We agreed to freeze features two days before each release.

```sh
git tag -s v1.2.0
git push --tags
```

## Tagging

Tags are signed with the release key, which is stored in the hardware token in the safe.
A release needs approval from two maintainers before it is published.
""",
    "notes/database.md": """Database
========

The production database runs PostgreSQL 15 on two servers in Frankfurt.
It holds about 420 GB of data and grows by roughly 8 GB per month.

Connection pooling
------------------

    max_connections = 200
    pool_size = 40

We decided to use PgBouncer in transaction mode, because session mode kept too many idle connections open.
The pool allows 40 connections per application server.
""",
    "notes/incident-2026-03.md": """# Incident: March outage

## Summary

On 14 March 2026 the API was unavailable for 47 minutes.
The outage was caused by an expired TLS certificate on the load balancer.

## Follow-up

- Certificates are now renewed automatically by certbot, 30 days before they expire.
- Jonas Berg owns the monitoring of certificate expiry.

> We will add an alert that fires 14 days before any certificate expires.
""",
    "notes/office.md": """# Office

<div align="center"><img src="map.png" alt="map" /></div>

The office is at Torstrasse 12 in Berlin, on the third floor.
Visitors sign in at the reception desk, which is open from 8:00 to 18:00.
The team has 23 people, 9 of whom work fully remote.
""",
}

# (question, expected fact: a substring the answer must contain, case-insensitive)
QUESTIONS = [
    ("what did we decide about backups?", "nightly"),
    ("when are restores tested?", "first Monday"),
    ("why are offsite copies kept for a year?", "auditors"),
    ("who leads the on-call rota?", "Maria Lopez"),
    ("how long does an on-call shift last?", "one week"),
    ("what happens if the primary does not acknowledge a page?", "15 minutes"),
    ("why did we choose PagerDuty?", "integrates"),
    ("when are releases cut?", "every second Thursday"),
    ("what did we agree about feature freezes?", "two days"),
    ("where is the release key stored?", "hardware token"),
    ("how many maintainers must approve a release?", "two maintainers"),
    ("which database do we run in production?", "PostgreSQL 15"),
    ("how much data does the database hold?", "420 GB"),
    ("what did we decide about connection pooling?", "transaction mode"),
    ("how many connections does the pool allow?", "40 connections"),
    ("when was the March outage?", "14 March"),
    ("what caused the March outage?", "expired TLS certificate"),
    ("how long was the API unavailable?", "47 minutes"),
    ("who owns certificate expiry monitoring?", "Jonas Berg"),
    ("when are certificates renewed?", "30 days"),
    ("where is the office?", "Torstrasse 12"),
    ("when is the reception open?", "8:00"),
    ("how many people are on the team?", "23 people"),
    ("which format are metrics exported in?", "Prometheus"),
    ("what happens when the disk fills up?", "refuses new documents"),
]

MARKUP = re.compile(r"(^|\s)#{1,6}\s|```|\|.*\||<\s*/?[A-Za-z!][^>]*>|\]\(|(\.\s?){4,}\s*\d")


def main():
    verbose = "-v" in sys.argv
    srv = harness.Server(env=test_extractive.NO_BACKEND_ENV, name="eval_extractive")
    srv.start()
    try:
        test_extractive.ingest_corpus(srv, "eval")
        for doc_id, text in NOTES.items():
            r = srv.request("POST", f"/api/ingest?db=eval&id={doc_id}&source={doc_id}",
                            body=text.encode(), content_type="text/markdown")
            assert r.status == 200, r
        hits = markup = total_ms = 0
        problems = 0
        for q, fact in QUESTIONS:
            r = srv.request("POST", "/api/query", json_body={"query": q, "db": "eval"})
            assert r.status == 200, r
            a = r.body["answer"]
            ok = fact.lower() in a.lower()
            hits += ok
            markup += bool(MARKUP.search(a))
            problems += bool(test_extractive.answer_problems(a, len(r.body["sources"])))
            total_ms += r.body["timings_ms"]["total"]
            if verbose or not ok:
                print(f"{'OK ' if ok else 'MISS'} {q!r} (want {fact!r})\n     {a[:300]!r}")
        n = len(QUESTIONS)
        print(f"expected fact in answer: {hits}/{n}; answers with markup: {markup}/{n}; "
              f"answers breaking a rule of test_extractive: {problems}/{n}; "
              f"mean timings_ms.total {total_ms / n:.2f}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
