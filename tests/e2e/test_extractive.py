"""The extractive answer (no LLM: the product on a machine without Ollama) on real documents:
the repository's own markdown (README.md, docs/*.md, docs/internals/*.md: headings, tables,
code fences, link lists) and markup-heavy HTML pages made here (navigation link lists, a table
of contents with dotted leaders, anchors, tables, code blocks), and the machine's Debian HTML
manuals when present. With no backend (what the defaults give without Ollama)
every answer must be made of whole sentences, none of them a markup line, heading, anchor,
fence, table row or table-of-contents line, none repeated, each run ending with a citation of
a source that exists; the README's example answers with the decision, not the heading.
"""
import glob
import os
import re
import unittest

import harness

ROOT = harness.project_root()

# The README's example: a note whose heading shares the question's word ("backups").
BACKUP_NOTE = """# Backups

We decided to back up the database nightly, at 02:00 UTC, to the NAS in the office.
Restores are tested on the first Monday of every month.

## Retention

| copy | kept |
|------|------|
| daily | 30 days |

<a name="offsite" />
Offsite copies are kept for one year because the auditors asked for it.
"""

NAV = "".join(f'<li><a href="/{w.lower()}.html">{w}</a></li>' for w in
              ("Home", "Download", "Documentation", "Community", "Blog", "Contact"))
TOC = "".join(f"<p>{i}. {t} {'.' * 30} {i * 7}</p>" for i, t in
              enumerate(("Introduction", "Installing the server", "Configuring storage",
                         "Monitoring", "Troubleshooting"), 1))


def html_page(title, body):
    return (f"<!doctype html><html><head><title>{title}</title></head><body>"
            f'<nav><ul>{NAV}</ul></nav><a name="top"></a><h1>{title}</h1>'
            f"<h2>Contents</h2>{TOC}{body}"
            '<footer><a href="/privacy">Privacy</a> | <a href="/terms">Terms</a> | '
            '<a href="#top">Back to top</a></footer></body></html>')


HTML_PAGES = {
    "install.html": html_page("Installing the server", """
<h2 id="install">1. Installing the server</h2>
<p>The server runs on any Linux machine with a C17 compiler. Install the build
dependencies with the package manager, then run make in the source folder.</p>
<pre><code>sudo apt-get install build-essential
./configure --prefix=/usr/local
make &amp;&amp; make install</code></pre>
<p>The installation takes about five minutes on a small machine.</p>
<table><tr><th>Package</th><th>Version</th></tr><tr><td>libevent</td><td>2.1</td></tr>
<tr><td>sqlite3</td><td>3.40</td></tr></table>
<h2>2. Configuring storage</h2>
<p>Data is stored under /var/lib/server by default. Set the DATA_DIR variable to move it
to another disk.</p>"""),
    "monitoring.html": html_page("Monitoring", """
<h2>Monitoring</h2>
<p>The server exports its metrics in the Prometheus text format on the /metrics path.
The on-call engineer owns the alert rules and reviews them every quarter.</p>
<ul><li><a href="/metrics">Metrics reference</a></li><li><a href="/alerts">Alert rules</a></li></ul>
<h3>Troubleshooting</h3>
<p>When the disk fills up, the server refuses new documents so that existing data stays
readable. Free some space and the server accepts writes again within a minute.</p>
<pre>
if (disk_full) {
    return refuse_write();
}
</pre>"""),
}

# Questions over that corpus (the checks below hold for every answer).
QUESTIONS = [
    "what did we decide about backups?",
    "when are restores tested?",
    "how long are offsite copies kept?",
    "why are offsite copies kept for a year?",
    "how do I install the server?",
    "where is data stored?",
    "who owns the alert rules?",
    "what happens when the disk fills up?",
    "which format are metrics exported in?",
    "how long does the installation take?",
    "how do I run the unit tests?",
    "what is the default chunk size?",
    "how does the circuit breaker work?",
    "what happens when Ollama is down?",
    "how are API keys configured?",
    "what does the answer cache store?",
    "when is a document quarantined?",
    "how does reciprocal rank fusion combine the lists?",
    "how do I ingest a folder of files?",
    "what does /health/ready return?",
    "how do I stream an answer?",
    "what is the builtin embedder?",
    "why does ragd defer completion callbacks?",
    "how many retries does the upstream client make?",
    "what limits the size of a request body?",
]

CITE = re.compile(r" \[(\d+)\]")
# not after ":" — "says cached: true." is one sentence (two that end so are not a repeat)
SENTENCE_END = re.compile(r"(?<=[.!?\u2026])\s+(?=\S)")
MARKUP = [
    ("heading", re.compile(r"^\s*#{1,6}(\s|$)")),
    ("fence", re.compile(r"```|~~~")),
    ("table row", re.compile(r"^\s*\||\|.*\|")),
    ("html tag or anchor", re.compile(r"<\s*/?\s*[A-Za-z!][^>]*>")),
    ("markdown link", re.compile(r"\]\(")),
    ("table-of-contents leader", re.compile(r"(\.\s?){4,}\s*\d+\s*$")),
    ("list marker", re.compile(r"^\s*([-*+]|\d+[.)])\s")),
    ("setext underline", re.compile(r"^\s*(=+|-{3,})\s*$")),
]


def load_corpus():
    """[(id, content_type, source, bytes)]: the repository's markdown and the HTML pages."""
    docs = []
    paths = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) \
        + sorted(glob.glob(os.path.join(ROOT, "docs", "internals", "*.md")))
    for p in paths:
        with open(p, "rb") as f:
            docs.append((os.path.relpath(p, ROOT), "text/markdown", os.path.relpath(p, ROOT), f.read()))
    for name, page in HTML_PAGES.items():
        docs.append((name, "text/html", name, page.encode()))
    docs.append(("notes/backups.md", "text/markdown", "notes/backups.md", BACKUP_NOTE.encode()))
    return docs


def ingest_corpus(srv, db):
    for doc_id, ctype, source, body in load_corpus():
        r = srv.request("POST", f"/api/ingest?db={db}&id={doc_id}&source={source}", body=body,
                        content_type=ctype, timeout=120)
        if r.status != 200:
            raise AssertionError(f"ingest {doc_id}: {r!r}")


def split_answer(answer):
    """[(sentence, citation n)]: every sentence with the marker of the run it belongs to;
    text after the last marker gets None."""
    out = []
    pos = 0
    for m in CITE.finditer(answer):
        run = answer[pos:m.start()].strip()
        for s in SENTENCE_END.split(run):
            if s.strip():
                out.append((s.strip(), int(m.group(1))))
        pos = m.end()
    rest = answer[pos:].strip()
    if rest:
        out.append((rest, None))
    return out


def answer_problems(answer, nsources):
    """The rules an extractive answer breaks, as readable strings (empty: none)."""
    problems = []
    if nsources == 0:  # nothing retrieved (e.g. only some of the Debian manuals are installed)
        if not re.fullmatch(r"No relevant passages were found in collection '[^']*'\.", answer):
            problems.append(f"no sources, yet the answer is not the no-passages message: {answer!r}")
        return problems
    sentences = split_answer(answer)
    seen = set()
    for s, n in sentences:
        if n is None:
            problems.append(f"no citation after {s!r}")
        elif not 1 <= n <= nsources:
            problems.append(f"[{n}] cites no source (there are {nsources}): {s!r}")
        for what, rx in MARKUP:
            if rx.search(s):
                problems.append(f"{what}: {s!r}")
        if not re.search(r"[.!?:\u2026\u3002][\"')\]\u201d\u2019]*$", s):
            problems.append(f"not a whole sentence: {s!r}")
        key = re.sub(r"[^0-9a-z]+", "", s.lower())
        if key in seen:
            problems.append(f"repeated: {s!r}")
        seen.add(key)
    return problems


# What the defaults give on a machine without Ollama (auto → builtin embedder, extractive
# answers), said explicitly so that a server that happens to listen on the default Ollama
# port (another test's fake) cannot change the test.
NO_BACKEND_ENV = {"RAGD_EMBEDDER": "builtin", "RAGD_GENERATOR": "extractive"}


class ExtractiveRealDocsTest(harness.E2ETestCase):
    """No LLM, builtin embedder; the corpus is ingested once for the class."""

    server_env = NO_BACKEND_ENV

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ingest_corpus(cls.server, "docs")

    def ask(self, question, **extra):
        body = self.call("POST", "/api/query", {"query": question, "db": "docs", **extra})
        self.assertEqual(body["provider"], "extractive", body)
        return body

    def test_every_answer_is_clean_sentences_with_citations(self):
        self.assertGreaterEqual(len(QUESTIONS), 20)
        failures = []
        for q in QUESTIONS:
            body = self.ask(q)
            answer = body["answer"]
            if not answer:
                failures.append(f"{q!r}: empty answer")
                continue
            for p in answer_problems(answer, len(body["sources"])):
                failures.append(f"{q!r}: {p}\n    answer: {answer!r}")
        self.assertEqual(failures, [], "\n".join(failures))

    def test_more_sentences_and_larger_k(self):
        # More passages (overlapping chunks, more markup) per answer: still clean.
        failures = []
        for q in QUESTIONS[:12]:
            body = self.ask(q, k=10)
            for p in answer_problems(body["answer"], len(body["sources"])):
                failures.append(f"{q!r}: {p}\n    answer: {body['answer']!r}")
        self.assertEqual(failures, [], "\n".join(failures))

    def test_readme_example_answers_with_the_decision(self):
        body = self.ask("what did we decide about backups?")
        answer = body["answer"]
        self.assertIn("nightly", answer)
        self.assertNotIn("# Backups", answer)
        self.assertTrue(answer.startswith("We decided"), answer)
        n = int(CITE.search(answer).group(1))
        self.assertEqual(body["sources"][n - 1]["doc_id"], "notes/backups.md", body["sources"])

    def test_question_type_picks_the_answering_sentence(self):
        self.assertIn("Monday", self.ask("when are restores tested?")["answer"])
        self.assertIn("because the auditors", self.ask("why are offsite copies kept for a year?")["answer"])


# Real HTML from the machine's Debian documentation, when it is there (a clean CI machine may
# not have these files: the class is skipped then; the generated pages above always run).
DEBIAN_HTML = ["/usr/share/doc/bzip2/manual.html", "/usr/share/doc/bc/bc.html",
               "/usr/share/doc/base-passwd/users-and-groups.html",
               "/usr/share/doc/fontconfig/fontconfig-user.html"]
DEBIAN_QUESTIONS = [
    "how do I decompress a file?", "what block size does bzip2 use?", "how much memory does bzip2 need?",
    "what does the scale variable do?", "how do I define a function in bc?", "who owns the games group?",
    "what is the nogroup group for?", "where are font configuration files stored?",
    "how does fontconfig match fonts?", "what happens when a compressed file is damaged?",
]


class ExtractiveDebianHtmlTest(harness.E2ETestCase):
    """The same checks on real HTML manuals (tables of contents, navigation, code blocks)."""

    server_env = NO_BACKEND_ENV

    @classmethod
    def setUpClass(cls):
        cls.files = [f for f in DEBIAN_HTML if os.path.isfile(f)]
        if not cls.files:
            raise unittest.SkipTest("no Debian HTML documentation on this machine")
        super().setUpClass()
        for f in cls.files:
            name = os.path.basename(f)
            with open(f, "rb") as fh:
                r = cls.server.request("POST", f"/api/ingest?db=deb&id={name}&source={name}",
                                       body=fh.read(), content_type="text/html", timeout=120)
            if r.status != 200:
                raise AssertionError(f"ingest {name}: {r!r}")

    def test_answers_are_clean(self):
        failures = []
        for q in DEBIAN_QUESTIONS:
            body = self.call("POST", "/api/query", {"query": q, "db": "deb"})
            for p in answer_problems(body["answer"], len(body["sources"])):
                failures.append(f"{q!r}: {p}\n    answer: {body['answer']!r}")
        self.assertEqual(failures, [], "\n".join(failures))


class SplitAnswerTest(unittest.TestCase):
    """The checker itself catches what it is meant to catch (so the tests above can fail)."""

    def test_checker_flags_markup_and_repeats(self):
        self.assertTrue(answer_problems("# Backups [1]", 1))
        self.assertTrue(answer_problems("We decided. We decided. [1]", 1))
        self.assertTrue(answer_problems("| a | b | [1]", 1))
        self.assertTrue(answer_problems('<a name="x" /> Text here. [1]', 1))
        self.assertTrue(answer_problems("Install ........ 12 [1]", 1))
        self.assertTrue(answer_problems("Fine sentence. [2]", 1))
        self.assertTrue(answer_problems("Fine sentence.", 1))
        self.assertEqual(answer_problems("Fine sentence. Another one! [1] Third one. [2]", 2), [])
        self.assertEqual(answer_problems("No relevant passages were found in collection 'deb'.", 0), [])
        self.assertTrue(answer_problems("Some sentence. [1]", 0))


if __name__ == "__main__":
    unittest.main()
