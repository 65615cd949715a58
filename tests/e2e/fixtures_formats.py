"""Small REAL documents of every format ragd reads, made with the Python standard library
only (no tool, no shipped binary): a PDF written by hand (three pages of Helvetica text, a
correct cross-reference table), a DOCX and an ODT (the minimal parts Word and LibreOffice
write), an EPUB (mimetype stored first, container, package, two XHTML chapters), a gzip, a
Latin-1 text, a reStructuredText file and a README with no extension — and the hostile ones
(a truncated PDF, a zip-bomb DOCX, an entity-bomb DOCX, binary junk).

Each good document carries a fact: a sentence with a word found nowhere else (FACTS[name]
gives the sentence, WORDS[name] the word to query for). Used by test_formats.py and by the
other helpers' tests (uploads, cli): `import fixtures_formats as ff; ff.pdf()`.
"""

import gzip
import io
import random
import zipfile

# name -> (the unique word, the sentence that carries it)
_FACTS = {
    "pdf_page1": ("quorvintal", "The quorvintal valve opens at seventeen degrees on the first page."),
    "pdf_page2": ("zandrelith", "Zandrelith crystals were catalogued on the second page of the report."),
    "pdf_page3": ("mippleworth", "The mippleworth ledger closes the report on its third page."),
    "docx": ("brontavesk", "The brontavesk protocol was signed in the Word document."),
    "odt": ("glimmerhaft", "Glimmerhaft tiles cover the roof described in the OpenDocument file."),
    "epub1": ("tessaloquin", "Tessaloquin merchants open the first chapter of the book."),
    "epub2": ("vorpastrine", "The vorpastrine bridge collapses in the second chapter."),
    "gz": ("plonkerbaum", "Plonkerbaum orchards are described in the compressed text."),
    "latin1": ("quixadelle", "Café quixadelle: the crème brûlée of Zürich is served at noon."),
    "rst": ("frobnitzal", "The frobnitzal daemon restarts every night, says the reStructuredText page."),
    "readme": ("wumplecore", "Wumplecore is the build system this README describes."),
}
FACTS = {k: v[1] for k, v in _FACTS.items()}
WORDS = {k: v[0] for k, v in _FACTS.items()}

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT_TYPE = "application/vnd.oasis.opendocument.text"
EPUB_TYPE = "application/epub+zip"


# ---------------------------------------------------------------- PDF

def _pdf_escape(s):
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf(pages=None):
    """A PDF of one page per entry of pages (each a list of lines), Helvetica 12 pt, written
    object by object with the byte offsets of the xref table counted exactly. By default
    three pages long enough (over ragd's default chunk size each) that each fact's chunk
    lies on its own page."""
    if pages is None:  # three pages of about 1,400 characters, each fact mid-page
        pages = []
        for p, fact in enumerate((FACTS["pdf_page1"], FACTS["pdf_page2"], FACTS["pdf_page3"]), 1):
            filler = [f"Line {i} of page {p} records the routine readings of the fixture plant." for i in range(20)]
            pages.append(filler[:10] + [fact] + filler[10:])
    n = len(pages)
    # objects: 1 catalog, 2 pages, 3 font, then per page: page object, content stream
    objs = {}
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objs[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objs[2] = f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode()
    objs[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    for i, lines in enumerate(pages):
        page_no, content_no = 4 + 2 * i, 5 + 2 * i
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops.append(f"({_pdf_escape(line)}) Tj T*")
        ops.append("ET")
        stream = ("\n".join(ops) + "\n").encode("latin-1")
        objs[page_no] = (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                         f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_no} 0 R >>").encode()
        objs[content_no] = (f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"endstream")
    return _pdf_file(objs)


def _pdf_stream(data, dict_entries=b""):
    return b"<< " + dict_entries + b"/Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _pdf_file(objs):
    """A PDF file of the numbered objects (dict number -> bytes), xref offsets exact."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted(objs):
        offsets[num] = out.tell()
        out.write(f"{num} 0 obj\n".encode() + objs[num] + b"\nendobj\n")
    xref = out.tell()
    count = max(objs) + 1
    out.write(f"xref\n0 {count}\n".encode())
    out.write(b"0000000000 65535 f \n")
    for num in range(1, count):
        out.write(f"{offsets[num]:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {count} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def pdf_truncated():
    """The fixture PDF cut in the middle of its first content stream: no xref, no trailer,
    no complete page."""
    whole = pdf()
    return whole[: whole.index(b"stream\n") + 12]


def pdf_fanout(levels=6, fan=10):
    """A 1-page PDF of about 1 KB whose page draws a form XObject that draws the next one
    `fan` times, `levels` deep: poppler walks fan**(levels-1) leaves within ONE page (six
    levels of ten: minutes of CPU), which no check between pages can stop."""
    form = b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> "
    objs = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> "
            b"/XObject << /L0 6 0 R >> >> /Contents 5 0 R >>"),
        5: _pdf_stream(b"BT /F1 12 Tf 72 720 Td (fan out) Tj ET /L0 Do"),
    }
    for level in range(levels):
        num = 6 + level
        if level < levels - 1:
            objs[num] = _pdf_stream(b"/N Do " * fan, form + b"/XObject << /N %d 0 R >> >> " % (num + 1))
        else:
            objs[num] = _pdf_stream(b"BT /F1 12 Tf 72 700 Td (leaf) Tj ET", form + b">> ")
    return _pdf_file(objs)


def pdf_scanned():
    """A valid one-page PDF with no text at all (what a scan without OCR looks like)."""
    return pdf([[]])


# ---------------------------------------------------------------- zip-based formats

def _zip(entries, first_stored=None):
    """A zip of (name, bytes) entries, deflated; first_stored: (name, bytes) written first and
    uncompressed (the ODF/EPUB mimetype rule)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if first_stored:
            z.writestr(zipfile.ZipInfo(first_stored[0]), first_stored[1], compress_type=zipfile.ZIP_STORED)
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _docx_para(text, style=None):
    ppr = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f'<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>'


def _docx_parts(document_xml):
    return [
        ("[Content_Types].xml",
         '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
         '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
         '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
         '<Default Extension="xml" ContentType="application/xml"/>'
         '<Override PartName="/word/document.xml" ContentType="application/'
         'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'),
        ("_rels/.rels",
         '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
         '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
         '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
         'relationships/officeDocument" Target="word/document.xml"/></Relationships>'),
        ("word/document.xml", document_xml),
    ]


def docx():
    """A DOCX: a Heading1, a paragraph with the fact, a second heading and a table."""
    body = (_docx_para("Protocol overview", "Heading1") + _docx_para(FACTS["docx"]) +
            _docx_para("Signatories", "Heading2") + _docx_para("Two parties signed it.") +
            f'<w:tbl><w:tr><w:tc>{_docx_para("left cell")}</w:tc><w:tc>{_docx_para("right cell")}</w:tc></w:tr></w:tbl>')
    xml = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
           f'<w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>')
    return _zip(_docx_parts(xml))


def docx_zip_bomb(mib=64):
    """A DOCX whose document.xml unpacks to mib MiB of spaces (about 1000:1)."""
    pad = b" " * (mib << 20)
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{_W}"><w:body>'.encode() + pad +
           b"</w:body></w:document>")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data in _docx_parts("")[:2]:
            z.writestr(name, data)
        z.writestr("word/document.xml", xml)
    return buf.getvalue()


def docx_entity_bomb():
    """A DOCX whose document.xml is the billion-laughs entity expansion."""
    ents = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    xml = (f'<?xml version="1.0"?><!DOCTYPE w:document [{ents}]>'
           f'<w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>')
    return _zip(_docx_parts(xml))


def odt():
    """An ODT: a level-1 heading, a paragraph with the fact (with a text:s run)."""
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        '<office:body><office:text>'
        '<text:h text:outline-level="1">Roof survey</text:h>'
        f'<text:p>{FACTS["odt"]}</text:p>'
        '<text:p>Two<text:s text:c="2"/>spaces and a<text:tab/>tab.</text:p>'
        '</office:text></office:body></office:document-content>')
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{ODT_TYPE}"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        '</manifest:manifest>')
    return _zip([("content.xml", content), ("META-INF/manifest.xml", manifest)],
                first_stored=("mimetype", ODT_TYPE))


def _xhtml(title, text):
    return ('<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE html>'
            f'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title></head>'
            f'<body><h1>{title}</h1><p>{text}</p></body></html>')


def epub():
    """An EPUB 3: two chapters in spine order (chapter 2 listed first in the manifest)."""
    container = ('<?xml version="1.0"?><container version="1.0" '
                 'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                 '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                 '</rootfiles></container>')
    opf = ('<?xml version="1.0" encoding="UTF-8"?>'
           '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
           '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
           '<dc:identifier id="id">urn:uuid:0b5a8f1e-ragd-fixture</dc:identifier>'
           '<dc:title>The Merchant Fixture</dc:title><dc:language>en</dc:language></metadata>'
           '<manifest>'
           '<item id="c2" href="text/chapter%202.xhtml" media-type="application/xhtml+xml"/>'
           '<item id="c1" href="text/chapter1.xhtml" media-type="application/xhtml+xml"/>'
           '</manifest><spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>')
    return _zip([("META-INF/container.xml", container), ("OEBPS/content.opf", opf),
                 ("OEBPS/text/chapter1.xhtml", _xhtml("Chapter One", FACTS["epub1"])),
                 ("OEBPS/text/chapter 2.xhtml", _xhtml("Chapter Two", FACTS["epub2"]))],
                first_stored=("mimetype", EPUB_TYPE))


# ---------------------------------------------------------------- text kinds

def gz():
    """A gzip of a plain text (mtime 0: the same bytes every run)."""
    return gzip.compress(f"Compressed notes.\n\n{FACTS['gz']}\n".encode(), mtime=0)


def latin1():
    """Latin-1 bytes (é, è, û, ü as single bytes): not valid UTF-8."""
    return f"Menu of the day\n\n{FACTS['latin1']}\n".encode("latin-1")


def rst():
    """reStructuredText with an overlined title and two section levels."""
    return (f"=============\nDaemon Manual\n=============\n\nIntroduction\n============\n\n"
            f"{FACTS['rst']}\n\nRestarts\n--------\n\nIt restarts at 03:00.\n").encode()


def readme():
    """A README with no extension: plain UTF-8."""
    return f"Wumplecore\n\n{FACTS['readme']}\nRun it with: wumple build\n".encode()


def junk(n=4096):
    """Binary junk (seeded: the same bytes every run)."""
    return random.Random(11).randbytes(n)


# name -> (bytes maker, source file name, content type)
GOOD = {
    "pdf": (pdf, "report.pdf", "application/pdf"),
    "docx": (docx, "protocol.docx", DOCX_TYPE),
    "odt": (odt, "survey.odt", ODT_TYPE),
    "epub": (epub, "merchant.epub", EPUB_TYPE),
    "gz": (gz, "notes.txt.gz", "application/gzip"),
    "latin1": (latin1, "menu.txt", "text/plain; charset=iso-8859-1"),
    "rst": (rst, "daemon.rst", "text/x-rst"),
    "readme": (readme, "README", "application/octet-stream"),
}


def write_all(folder):
    """Writes every good fixture into folder under its file name; returns the paths."""
    import os
    paths = []
    for make, name, _ in GOOD.values():
        p = os.path.join(folder, name)
        with open(p, "wb") as f:
            f.write(make())
        paths.append(p)
    return paths


if __name__ == "__main__":  # python3 fixtures_formats.py DIR: writes them for a look
    import sys
    for p in write_all(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(p)
