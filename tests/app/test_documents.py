"""Text extraction from real documents written on the fly, and every bad input's message."""

from __future__ import annotations

import os

import pytest

from app.documents import MAX_BYTES, read_document
from app.errors import DocumentError
from tests.app.document_files import (
    page_text,
    write_docx,
    write_encrypted_pdf,
    write_pdf,
    write_scanned_pdf,
)


def test_a_pdf_keeps_its_page_numbers(tmp_path):
    pdf = write_pdf(tmp_path / "report.pdf", [page_text(p) for p in range(1, 6)])
    document = read_document(pdf)
    assert (document.kind, document.pages, document.title) == ("PDF", 5, "report.pdf")
    assert [s.label for s in document.sections] == [f"page {p}" for p in range(1, 6)]
    assert "pumping stations" in document.text and document.sections[2].text.startswith("Page 3.")


def test_a_word_document_is_cut_at_its_headings(tmp_path):
    docx = write_docx(tmp_path / "minutes.docx", {"Attendance": ["Six members."], "Budget": ["Four million."]})
    document = read_document(docx)
    assert [s.label for s in document.sections] == ["Attendance", "Budget"]
    assert "Four million." in document.sections[1].text


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("latin-1", "cp1252"),
        ("utf-16", "utf-16"),
        ("utf-8", "utf-8"),
        # without a byte-order mark, as some Windows tools write it (issue 17, item 8: "binary")
        ("utf-16-le", "utf-16-le"),
        ("utf-16-be", "utf-16-be"),
    ],
)
def test_text_files_are_decoded_by_detection_not_assumption(tmp_path, encoding, expected):
    text = "Le conseil a voté le budget de la forêt près du château; ça coûte très cher.\n" * 30
    path = tmp_path / "notes.txt"
    path.write_bytes(text.encode(encoding))
    document = read_document(path)
    assert document.encoding == expected
    assert document.text.startswith("Le conseil a voté le budget de la forêt près du château")
    assert [s.label for s in document.sections] == ["lines 1-30"]


def test_markdown_sections_follow_headings_and_html_keeps_only_text(tmp_path):
    md = tmp_path / "plan.md"
    md.write_text("# Goals\nLess leakage.\n\n## Costs\nFour million.\n", encoding="utf-8")
    assert [s.label for s in read_document(md).sections] == ["Goals", "Costs"]
    html = tmp_path / "page.html"
    html.write_text(
        "<html><head><title>x</title><style>p{color:red}</style></head><body>"
        "<h1>Water</h1><p>Pumps &amp; pipes.</p><script>alert(1)</script><h2>Money</h2><p>Four million.</p>"
        "</body></html>",
        encoding="utf-8",
    )
    document = read_document(html)
    assert [s.label for s in document.sections] == ["Water", "Money"]
    assert "Pumps & pipes." in document.text and "alert" not in document.text and "color" not in document.text


def _bad_inputs(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", [page_text(1)])
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary_pdf = tmp_path / "binary.pdf"
    binary_pdf.write_bytes(os.urandom(5000))
    binary_docx = tmp_path / "binary.docx"
    binary_docx.write_bytes(os.urandom(5000))
    binary_txt = tmp_path / "binary.txt"
    binary_txt.write_bytes(b"\x00\x01\x02" + os.urandom(5000))
    unknown = tmp_path / "unknown.txt"
    unknown.write_bytes(bytes(range(128, 256)) * 40)  # no encoding makes text of this
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: no disk used
    spreadsheet = tmp_path / "table.xlsx"
    spreadsheet.write_bytes(b"PK")
    return {
        write_encrypted_pdf(tmp_path / "locked.pdf", good): "password-protected",
        write_scanned_pdf(tmp_path / "scan.pdf"): "no text layer",
        empty: "is empty",
        binary_pdf: "not a readable PDF",
        binary_docx: "not a readable Word document",
        binary_txt: "binary file",
        unknown: "encoding could not be recognised",
        huge: "not summarised",
        spreadsheet: "only these documents",
        tmp_path / "missing.pdf": "does not exist",
    }


def _docx_unpacking_to(path, n_bytes: int):
    """A real .docx whose document.xml is padded with `n_bytes` of spaces (valid XML, a few
    hundred KB packed): a zip bomb in a document's clothing (issue 17, item 7)."""
    import zipfile

    plain = write_docx(path.with_name("plain.docx"), {"Title": ["Text."]})
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename != "word/document.xml":
                dst.writestr(item, data)
                continue
            head, tail = data.rsplit(b"</w:document>", 1)
            member = zipfile.ZipInfo("word/document.xml")
            member.compress_type = zipfile.ZIP_DEFLATED
            with dst.open(member, "w", force_zip64=True) as out:
                out.write(head)
                for _ in range(n_bytes >> 20):
                    out.write(b" " * (1 << 20))
                out.write(b"</w:document>" + tail)
    return path


def test_a_docx_that_unpacks_to_hundreds_of_mb_is_refused_before_unpacking(tmp_path):
    bomb = _docx_unpacking_to(tmp_path / "small.docx", 300 << 20)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(DocumentError, match=r"unpacks to 3\d\d MB \(word/document.xml alone"):
        read_document(bomb)


def test_every_bad_input_is_refused_with_its_reason(tmp_path):
    for path, reason in _bad_inputs(tmp_path).items():
        with pytest.raises(DocumentError, match=reason):
            read_document(path)
