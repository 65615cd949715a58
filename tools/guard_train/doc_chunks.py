#!/usr/bin/env python3
"""Benign documentation passages for the prompt-injection screen (make guard-train / guard-eval).

Renders the pydoc text of a fixed list of standard-library modules and cuts it into chunks of
about 1-2 KB at blank lines. One JSONL row per chunk, in data/injection's schema: label benign,
kind doc_chunk, source pydoc; split test for a deterministic 30 % (sha256 of the text), else train.
The output depends only on the module list and the Python version that renders it."""
import hashlib
import json
import pydoc
import sys
import importlib

MODULES = """argparse asyncio.subprocess base64 bisect calendar collections configparser contextlib copy csv
dataclasses datetime decimal difflib email.message enum fnmatch fractions functools getopt gettext glob
gzip hashlib heapq hmac html.parser http.client http.server imaplib inspect io ipaddress itertools json
locale logging mailbox mimetypes netrc operator optparse os pathlib pickle pkgutil platform plistlib
pprint queue random re secrets select shelve shlex shutil signal smtplib socket sqlite3 ssl statistics
string struct subprocess sys tarfile tempfile textwrap threading time timeit tokenize trace traceback
typing unittest urllib.parse urllib.request uuid warnings weakref xml.etree.ElementTree zipfile zlib""".split()

MIN_CHUNK, MAX_CHUNK = 1000, 2000


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


def main():
    seen = set()
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        text = pydoc.render_doc(mod, renderer=pydoc.plaintext)
        for c in chunks(text):
            c = "\n".join(line.rstrip() for line in c.splitlines()).strip()
            if len(c) < 200 or c in seen:
                continue
            seen.add(c)
            split = "test" if int(hashlib.sha256(c.encode()).hexdigest()[:8], 16) % 100 < 30 else "train"
            sys.stdout.write(json.dumps({"text": c, "label": "benign", "kind": "doc_chunk", "lang": "en",
                                         "source": "pydoc", "split": split}) + "\n")


if __name__ == "__main__":
    main()
