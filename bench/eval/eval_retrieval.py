#!/usr/bin/env python3
"""eval_retrieval: document-level retrieval quality of ragd on real documentation.

Corpus: the pydoc text of the Python standard library modules listed in modules.txt (one
document per module, rendered by this machine's python3; the FILE and DATA sections are
left out because they hold machine-specific paths and values). Questions: questions.jsonl,
written by hand, each labelled with the module(s) whose documentation answers it, or
"none" for the no-answer queries (gibberish, off-topic).

The command starts build/ragd on its defaults through the e2e harness (a fresh data dir,
a builtin-embedded collection), ingests the corpus, asks every question through
/api/retrieve with method vector, keyword and hybrid (k=5 for recall@5, k=10 for MRR@10),
and computes beside them a plain SQLite FTS5 BM25 baseline over the very chunks ragd
stored (read back with GET /api/dbs/{db}/documents/{id}).

Metrics, per method, over the answerable questions:
- recall@5: the share of a question's labelled documents among the documents of the top 5
  results (most questions have one label: then it is 1 or 0), averaged;
- MRR@10: 1 / the rank of the first labelled document among the distinct documents of the
  top 10 results (0 when none), averaged;
- dup@5: the share of the top-5 slots that repeat a document already shown above them.
The BM25 baselines rank chunks by bm25() of an OR query of the question's words and keep
the distinct documents in order of their best chunk (5 documents for recall@5, 10 for MRR):
"bm25" with FTS5's default tokenizer (unicode61), "bm25-porter" with ragd's own
(porter unicode61). Both are document-level: five distinct documents, never a repeat.

Usage: RAGD_BIN=build/ragd python3 bench/eval/eval_retrieval.py [--env VAR=VALUE ...]
       [--json FILE] [--show-misses METHOD] [--quiet] [--dump-chunks FILE]
--env passes a server variable (e.g. RAGD_FUSION=rrf) to ragd; the harness gives ragd no
other variable of the calling shell. Deterministic: the same machine gives the same
figures (the corpus hash printed at the top tells whether two runs saw the same text).
"""
import argparse
import contextlib
import hashlib
import importlib
import io
import json
import os
import pydoc
import random
import re
import sqlite3
import sys
import time
import urllib.parse
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

DB = "eval"
METHODS = ("vector", "keyword", "hybrid")
BASELINES = ("bm25", "bm25-porter")
NOISE_QUERIES = 300


# ------------------------------------------------------------------------------ corpus

def read_modules(path):
    mods = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            mods.extend(line.split("#", 1)[0].split())
    return mods


def drop_sections(text, names):
    """Removes pydoc top-level sections (a line of capitals at column 0 up to the next one)."""
    out, skipping = [], False
    for line in text.split("\n"):
        if line and not line[0].isspace() and line.strip().isupper():
            skipping = line.strip() in names
        if not skipping:
            out.append(line)
    return "\n".join(out).rstrip() + "\n"


def render(module):
    """The plain-text pydoc page of a module, made machine-independent."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = importlib.import_module(module)
        text = pydoc.render_doc(obj, title="Python Library Documentation: %s",
                                renderer=pydoc.plaintext)
    text = drop_sections(text, {"FILE", "DATA"})
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)  # object addresses in reprs


def build_corpus(modules):
    docs = {}
    for m in modules:
        docs[m] = render(m)
    digest = hashlib.sha256()
    for m in modules:
        digest.update(m.encode() + b"\0" + docs[m].encode() + b"\0")
    return docs, digest.hexdigest()[:16]


def read_questions(path, docs):
    qs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            q = json.loads(line)
            q["line"] = n
            labels = q["docs"]
            if labels != ["none"]:
                missing = [d for d in labels if d not in docs]
                if missing:
                    sys.exit(f"questions.jsonl:{n}: label(s) {missing} not in the corpus")
            qs.append(q)
    return qs


# ------------------------------------------------------------------------------ ragd

def call(srv, method, path, body=None, status=200):
    r = srv.request(method, path, json_body=body, timeout=120)
    if r.status != status or not r.is_json():
        sys.exit(f"{method} {path}: {r!r}\n--- server log ---\n{srv.log_tail()}")
    return r.body


def ingest(srv, docs):
    call(srv, "POST", "/api/dbs", {"name": DB}, status=201)  # builtin embedder, always
    batch, size, chunks = [], 0, 0
    for m, text in docs.items():
        batch.append({"id": m, "text": text, "source": f"pydoc:{m}"})
        size += len(text)
        if size > 2_000_000:
            chunks += call(srv, "POST", "/api/ingest", {"db": DB, "documents": batch})["chunks"]
            batch, size = [], 0
    if batch:
        chunks += call(srv, "POST", "/api/ingest", {"db": DB, "documents": batch})["chunks"]
    return chunks


def stored_chunks(srv, docs):
    rows = []
    for m in docs:
        d = call(srv, "GET", f"/api/dbs/{DB}/documents/{urllib.parse.quote(m, safe='')}")
        for c in d["chunks"]:
            rows.append((m, c["chunk"], c["text"]))
    return rows


def retrieve(srv, query, method, k):
    body = call(srv, "POST", "/api/retrieve", {"db": DB, "query": query, "method": method, "k": k})
    return [(s["doc_id"], s["score"]) for s in body["sources"]]


# ------------------------------------------------------------------------------ baseline

class Bm25:
    """Plain FTS5 BM25 over the stored chunks, in memory."""

    def __init__(self, rows, tokenizer):
        self.db = sqlite3.connect(":memory:")
        tok = f", tokenize='{tokenizer}'" if tokenizer else ""
        self.db.execute(f"CREATE VIRTUAL TABLE c USING fts5(doc UNINDEXED, text{tok})")
        self.db.executemany("INSERT INTO c(doc, text) VALUES (?, ?)", [(d, t) for d, _, t in rows])

    def docs(self, question, n):
        words = re.findall(r"\w+", question.lower())
        if not words:
            return []
        expr = " OR ".join('"' + w + '"' for w in words)
        out = []
        for (doc,) in self.db.execute("SELECT doc FROM c WHERE c MATCH ? ORDER BY bm25(c) LIMIT 200",
                                      (expr,)):
            if doc not in out:
                out.append(doc)
                if len(out) == n:
                    break
        return out


# ------------------------------------------------------------------------------ metrics

def distinct(seq):
    out = []
    for x in seq:
        if x not in out:
            out.append(x)
    return out


def recall(labels, docs):
    return sum(1 for d in labels if d in docs) / len(labels)


def rr(labels, ranked_docs):
    for i, d in enumerate(ranked_docs, 1):
        if d in labels:
            return 1.0 / i
    return 0.0


def dup_slots(docs):
    return sum(1 for i, d in enumerate(docs) if d in docs[:i])


def mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", action="append", default=[], metavar="VAR=VALUE")
    ap.add_argument("--json", metavar="FILE", help="write per-question results here")
    ap.add_argument("--show-misses", metavar="METHOD", help="list the questions METHOD misses at 5")
    ap.add_argument("--quiet", action="store_true", help="only the summary table")
    ap.add_argument("--dump-chunks", metavar="FILE", help="write the stored chunks here (JSON lines), "
                    "for whoever writes questions")
    args = ap.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":  # set orders in reprs: one text per machine
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    import harness  # noqa: E402 (after sys.path)

    t0 = time.monotonic()
    modules = read_modules(os.path.join(HERE, "modules.txt"))
    docs, digest = build_corpus(modules)
    questions = read_questions(os.path.join(HERE, "questions.jsonl"), docs)
    answerable = [q for q in questions if q["docs"] != ["none"]]
    noanswer = [q for q in questions if q["docs"] == ["none"]]
    bad_evidence = [q for q in answerable
                    if q.get("evidence") and not any(q["evidence"] in docs[d] for d in q["docs"])]
    env = dict(e.split("=", 1) for e in args.env)
    print(f"corpus: {len(docs)} pydoc pages of Python {sys.version.split()[0]}, "
          f"{sum(len(t) for t in docs.values()) / 1e6:.2f} MB, sha256 {digest}; "
          f"questions: {len(answerable)} answerable + {len(noanswer)} no-answer"
          + (f"; server env: {' '.join(args.env)}" if args.env else ""))
    for q in bad_evidence:
        print(f"  warning: questions.jsonl:{q['line']}: evidence {q['evidence']!r} not in {q['docs']}")

    srv = harness.Server(env=env, name="eval")
    try:
        srv.start()
        t1 = time.monotonic()
        n_chunks = ingest(srv, docs)
        rows = stored_chunks(srv, docs)
        t2 = time.monotonic()
        if len(rows) != n_chunks:
            sys.exit(f"ingested {n_chunks} chunks but read back {len(rows)}")
        print(f"ingest: {n_chunks} chunks in {t2 - t1:.1f} s")
        if args.dump_chunks:
            with open(args.dump_chunks, "w", encoding="utf-8") as f:
                for d, c, t in rows:
                    f.write(json.dumps({"doc": d, "chunk": c, "text": t}) + "\n")

        # Which answerable questions need their document's context: no chunk holding the
        # evidence names the module (any dotted part of its name, as a word).
        by_doc = {}
        for d, _, t in rows:
            by_doc.setdefault(d, []).append(t)
        for q in answerable:
            ev = q.get("evidence")
            q["ctx"] = False
            if ev:
                holders = [t for d in q["docs"] for t in by_doc[d] if ev in t]
                names = {p.lower() for d in q["docs"] for p in d.split(".")}
                q["ctx"] = bool(holders) and not any(
                    names & set(re.findall(r"\w+", t.lower())) for t in holders)

        results = {}
        for q in questions:
            res = {}
            for m in METHODS:
                r5 = retrieve(srv, q["q"], m, 5)
                r10 = retrieve(srv, q["q"], m, 10)
                res[m] = {"top5": [d for d, _ in r5], "top10": [d for d, _ in r10],
                          "best": r5[0][1] if r5 else None}
            results[q["line"]] = res
        # Random letter strings (seeded), for the relevance floor: how similar the nearest
        # chunk is to a query that means nothing, and whether any keyword matches it.
        rng = random.Random(1)
        noise = []
        for _ in range(NOISE_QUERIES):
            text = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
                            for _ in range(rng.randint(1, 4)))
            v = retrieve(srv, text, "vector", 1)
            kw = retrieve(srv, text, "keyword", 1)
            hy = retrieve(srv, text, "hybrid", 1)
            noise.append((v[0][1] if v else 0.0, bool(kw), bool(hy)))
        t3 = time.monotonic()
        srv.stop()
    finally:
        srv.cleanup()

    for name, tok in (("bm25", None), ("bm25-porter", "porter unicode61")):
        idx = Bm25(rows, tok)
        for q in questions:
            results[q["line"]][name] = {"top5": idx.docs(q["q"], 5), "top10": idx.docs(q["q"], 10)}

    allm = METHODS + BASELINES
    score = {m: {} for m in allm}
    for q in answerable:
        for m in allm:
            r = results[q["line"]][m]
            score[m][q["line"]] = (recall(q["docs"], r["top5"]), rr(q["docs"], distinct(r["top10"])),
                                   dup_slots(r["top5"]), len(r["top5"]))

    def row(m, subset):
        s = [score[m][q["line"]] for q in subset]
        return mean([x[0] for x in s]), mean([x[1] for x in s])

    half_a = [q for i, q in enumerate(answerable) if i % 2 == 0]
    half_b = [q for i, q in enumerate(answerable) if i % 2 == 1]
    ctx = [q for q in answerable if q["ctx"]]
    print()
    print(f"| method | recall@5 | MRR@10 | dup@5 | half A r@5 / MRR | half B r@5 / MRR "
          f"| context ({len(ctx)}) r@5 / MRR |")
    print("|---|---|---|---|---|---|---|")
    for m in allm:
        r5, mrr = row(m, answerable)
        dups = sum(score[m][q["line"]][2] for q in answerable)
        slots = sum(score[m][q["line"]][3] for q in answerable)
        ra, ma = row(m, half_a)
        rb, mb = row(m, half_b)
        rc, mc = row(m, ctx)
        print(f"| {m} | {r5:.3f} | {mrr:.3f} | {dups / max(slots, 1):.1%} | {ra:.3f} / {ma:.3f} "
              f"| {rb:.3f} / {mb:.3f} | {rc:.3f} / {mc:.3f} |")
    print()
    for m in allm:
        if m == "hybrid":
            continue
        w5 = sum(1 for q in answerable if score["hybrid"][q["line"]][0] > score[m][q["line"]][0])
        l5 = sum(1 for q in answerable if score["hybrid"][q["line"]][0] < score[m][q["line"]][0])
        wr = sum(1 for q in answerable if score["hybrid"][q["line"]][1] > score[m][q["line"]][1])
        lr = sum(1 for q in answerable if score["hybrid"][q["line"]][1] < score[m][q["line"]][1])
        print(f"hybrid vs {m:12s} recall@5: {w5:3d} won, {l5:3d} lost;  RR@10: {wr:3d} won, {lr:3d} lost")
    print()
    for m in METHODS:
        empty = sum(1 for q in noanswer if not results[q["line"]][m]["top5"])
        best = [results[q["line"]][m]["best"] for q in noanswer if results[q["line"]][m]["best"] is not None]
        print(f"no-answer queries, {m:7s}: {empty}/{len(noanswer)} with no sources"
              + (f"; best score of the others: max {max(best):.3f}" if best else ""))
    # For the relevance floor: how similar the best vector hit is for questions that have an
    # answer, against the queries that have none, and which questions no keyword matches.
    sims = sorted(results[q["line"]]["vector"]["best"] for q in answerable)
    none_sims = [results[q["line"]]["vector"]["best"] for q in noanswer]
    no_kw = [q for q in answerable if not results[q["line"]]["keyword"]["top5"]]
    print(f"vector top-1 similarity: answerable min {sims[0]:.3f}, 5th percentile "
          f"{sims[len(sims) // 20]:.3f}, median {sims[len(sims) // 2]:.3f}; no-answer max "
          f"{max(none_sims):.3f}; answerable questions no keyword matches: {len(no_kw)}"
          + "".join(f"\n  {q['q']!r}: vector top-1 {results[q['line']]['vector']['best']:.3f}, "
                    f"hybrid {'found it' if score['hybrid'][q['line']][0] > 0 else 'missed'}"
                    for q in no_kw))
    nsims = sorted(x[0] for x in noise)
    print(f"random letter strings ({len(noise)}, seeded): vector top-1 similarity max {nsims[-1]:.3f}, "
          f"99th percentile {nsims[len(nsims) * 99 // 100]:.3f}, median {nsims[len(nsims) // 2]:.3f}; "
          f"{sum(1 for x in noise if x[1])} with a keyword match; "
          f"{sum(1 for x in noise if not x[2])} with no hybrid sources")
    if not args.quiet:
        for q in noanswer:
            got = {m: results[q["line"]][m]["top5"][:1] for m in METHODS}
            print(f"  {q['q']!r}: " + ", ".join(f"{m} {got[m][0] if got[m] else '-'}" for m in METHODS))
    if args.show_misses:
        m = args.show_misses
        print(f"\nquestions {m} misses at 5:")
        for q in answerable:
            if score[m][q["line"]][0] < 1.0:
                print(f"  {q['line']:4d} {q['q']!r} want {q['docs']} got {results[q['line']][m]['top5']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"corpus": digest, "env": env, "questions": questions, "results": results}, f)
    print(f"\ntime: {time.monotonic() - t0:.1f} s (queries {t3 - t2:.1f} s)")


if __name__ == "__main__":
    main()
