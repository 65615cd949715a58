#!/usr/bin/env python3
"""Benign documentation passages for the prompt-injection screen (make guard-train / guard-eval).

One JSONL row per chunk of about 1-2 KB cut at blank lines, in data/injection's schema (label
benign, kind doc_chunk). Sources, all local (no network):

- pydoc:        the pydoc text of a fixed list of standard-library modules;
- debian-man:   the man pages (English, sections 1-8) of TRAIN_PACKAGES, rendered by man-db at
                80 columns without hyphenation or justification;
- debian-doc:   the text files in /usr/share/doc of TRAIN_PACKAGES (.gz decompressed,
                copyright and HTML files left out, the first MAX_DOC_BYTES of each);
- ragd-docs:    the repository's own README.md and docs/**/*.md, without the pages about prompt
                injection and without any chunk that quotes or discusses attacks.
  Rows of these four sources: split test for a deterministic 30 % (sha256 of the text), else
  train. Each package contributes at most MAX_PER_PACKAGE chunks (the lowest hashes).
- heldout-doc:  split heldout, for measurement only (guard_train never trains or sets a threshold
                on it): the README*, *.txt and NEWS* files of 2-200 KB in /usr/share/doc that
                belong to no package of TRAIN_PACKAGES (the files the lead's ingest test used).
                Machine-dependent: it is whatever else is installed.

TRAIN_PACKAGES are on every Debian 12 machine that ran scripts/deps.sh: the Essential/required
packages and the build dependencies. A system installed without man pages or /usr/share/doc
(Docker's minimal images) yields fewer rows; the output depends on the package versions, the
Python version and the repository's docs."""
import glob
import gzip
import hashlib
import importlib
import json
import os
import pydoc
import re
import subprocess
import sys

MODULES = """argparse asyncio.subprocess base64 bisect calendar collections configparser contextlib copy csv
dataclasses datetime decimal difflib email.message enum fnmatch fractions functools getopt gettext glob
gzip hashlib heapq hmac html.parser http.client http.server imaplib inspect io ipaddress itertools json
locale logging mailbox mimetypes netrc operator optparse os pathlib pickle pkgutil platform plistlib
pprint queue random re secrets select shelve shlex shutil signal smtplib socket sqlite3 ssl statistics
string struct subprocess sys tarfile tempfile textwrap threading time timeit tokenize trace traceback
typing unittest urllib.parse urllib.request uuid warnings weakref xml.etree.ElementTree zipfile zlib""".split()

# Essential/required in Debian 12, and scripts/deps.sh's packages (with what they pull in).
TRAIN_PACKAGES = """bash coreutils dpkg apt tar grep sed findutils diffutils gzip util-linux libc-bin
debianutils ncurses-bin gcc-12 cpp-12 make curl libcurl4-openssl-dev python3.11 python3 pkg-config
libpcre2-dev libsqlite3-dev libevent-dev libjansson-dev libssl-dev libxml2-dev libmicrohttpd-dev
libutf8proc-dev libmd4c-dev libstemmer-dev libcmocka-dev ca-certificates""".split()

# The repository's pages about prompt injection quote attacks: left out whole.
REPO_EXCLUDED = {"docs/api.md", "docs/internals/fence.md", "docs/internals/guard.md", "BENCHMARKS.md"}
# Any other repository chunk that discusses attacks is left out too.
REPO_ATTACK_WORDS = re.compile(r"inject|jailbreak|<\||\[INST\]|<<SYS>>|canary|quarantin|ignore (all )?previous",
                               re.IGNORECASE)

MIN_CHUNK, MAX_CHUNK = 1000, 2000
MAX_PER_PACKAGE = 150
MAX_DOC_BYTES = 200_000
HELDOUT_NAMES = re.compile(r"^(README.*|.*\.txt|NEWS.*)$")
REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def chunks(text):
    buf = ""
    for para in text.split("\n\n"):
        para = para.strip("\n")
        if not para.strip():
            continue
        while len(para) > MAX_CHUNK:  # one long paragraph: cut at a line break
            cut = para.rfind("\n", 0, MAX_CHUNK)
            cut = cut if cut > MIN_CHUNK // 2 else MAX_CHUNK
            if buf:
                yield buf
                buf = ""
            yield para[:cut]
            para = para[cut:].lstrip("\n")
        if buf and len(buf) + len(para) + 2 > MAX_CHUNK:
            yield buf
            buf = ""
        buf = buf + "\n\n" + para if buf else para
        if len(buf) >= MIN_CHUNK:
            yield buf
            buf = ""
    if buf.strip():
        yield buf


def text_hash(c):
    return int(hashlib.sha256(c.encode()).hexdigest()[:8], 16)


def clean(text):
    """Overstrike and SGR sequences out, blanks at line ends off, 3+ newlines to 2."""
    text = re.sub(r".\x08", "", text)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text)


def read_text(path):
    """The file's text (gunzipped), or None when it is not UTF-8 text."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read(MAX_DOC_BYTES)
        text = data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError):
        # A cut inside a multi-byte character: drop the partial tail.
        try:
            text = data[:-4].decode("utf-8")
        except (NameError, UnicodeDecodeError):
            return None
    if "\x00" in text or re.search(r"<html|<!DOCTYPE", text[:2000], re.IGNORECASE):
        return None
    return text


def package_files(pkg):
    try:
        out = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return sorted(p for p in out.splitlines() if os.path.isfile(p))


def render_man(path):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    try:
        r = subprocess.run(["man", "--nh", "--nj", "-P", "cat", "-l", path], capture_output=True, env=env,
                           timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        return r.stdout.decode("utf-8") if r.returncode == 0 else None
    except UnicodeDecodeError:
        return None


def package_texts(pkg):
    """(source, text) of one package's English man pages and its /usr/share/doc text files."""
    for path in package_files(pkg):
        if re.match(r"^/usr/share/man/man[1-8]/", path):
            text = render_man(path)
            if text:
                yield "debian-man", text
        elif path.startswith("/usr/share/doc/"):
            base = os.path.basename(path)
            if base.startswith("copyright") or re.search(r"\.(html?|css|js|png|gif|jpg|svg|pdf)(\.gz)?$", base):
                continue
            text = read_text(path)
            if text:
                yield "debian-doc", text


def repo_texts():
    for rel in ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=REPO)) + sorted(
            glob.glob("docs/internals/*.md", root_dir=REPO)):
        if rel in REPO_EXCLUDED:
            continue
        text = read_text(os.path.join(REPO, rel))
        if text:
            yield "ragd-docs", text


def heldout_files(train_paths):
    for root, dirs, files in os.walk("/usr/share/doc"):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if not HELDOUT_NAMES.match(name) or name.endswith(".gz") or os.path.islink(path):
                continue
            real = os.path.realpath(path)
            try:
                size = os.path.getsize(real)
            except OSError:
                continue
            if real in train_paths or not 2048 < size < 200 * 1024:
                continue
            yield real


def emit(seen, source, text, split=None, extra=None):
    """Writes the chunks of text not seen before; returns how many."""
    n = 0
    # pydoc's text is cut as before this module had other sources (its chunks stay the same).
    for c in chunks(text if source == "pydoc" else clean(text)):
        c = "\n".join(line.rstrip() for line in c.splitlines()).strip()
        if len(c) < 200 or c in seen:
            continue
        if source == "ragd-docs" and REPO_ATTACK_WORDS.search(c):
            continue
        seen.add(c)
        row = {"text": c, "label": "benign", "kind": "doc_chunk", "lang": "en", "source": source,
               "split": split or ("test" if text_hash(c) % 100 < 30 else "train")}
        row.update(extra or {})
        sys.stdout.write(json.dumps(row) + "\n")
        n += 1
    return n


def main():
    seen = set()
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        text = pydoc.render_doc(mod, renderer=pydoc.plaintext)
        # Default values print as "<object object at 0x7f...>" or "<weakref at 0x7f...; to ...>":
        # the address changes every run.
        emit(seen, "pydoc", re.sub(r" at 0x[0-9a-fA-F]+([;>])", r"\1", text))
    for source, text in repo_texts():
        emit(seen, source, text)
    train_paths = set()
    for pkg in TRAIN_PACKAGES:
        train_paths.update(os.path.realpath(p) for p in package_files(pkg))
        # A package's chunks, capped at MAX_PER_PACKAGE by lowest hash (deterministic).
        rows = []
        local = set()
        for source, text in package_texts(pkg):
            for c in chunks(clean(text)):
                c = c.strip()
                if len(c) >= 200 and c not in seen and c not in local:
                    local.add(c)
                    rows.append((text_hash(c), source, c))
        rows.sort()
        for _, source, c in rows[:MAX_PER_PACKAGE]:
            emit(seen, source, c, extra={"package": pkg})
    for path in heldout_files(train_paths):
        text = read_text(path)
        if text:
            emit(seen, "heldout-doc", text, split="heldout", extra={"file": path})


if __name__ == "__main__":
    main()
