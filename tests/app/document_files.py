"""Real documents written on the fly for the summarisation tests."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "The river authority met on Tuesday to review the water supply of the northern districts.",
    "Engineers reported that two of the five pumping stations need new motors before winter.",
    "The finance committee proposed a budget of four million for repairs over three years.",
    "Residents asked for better notice before planned interruptions of the supply.",
    "A pilot project will test smart meters in three hundred homes next spring.",
]


def page_text(page: int, sentences: int = 6) -> str:
    return " ".join(f"Page {page}. {SENTENCES[(page + i) % len(SENTENCES)]}" for i in range(sentences))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with a text layer (Helvetica), one string per page, wrapped at about 90 characters."""
    objects: list[bytes] = []
    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        words, lines, line = text.split(), [], ""
        for word in words:
            if len(line) + len(word) > 90:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        lines.append(line)
        body = "BT /F1 10 Tf 14 TL 50 760 Td " + " ".join(f"({_escape(x)}) Tj T*" for x in lines) + " ET"
        stream = body.encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def write_encrypted_pdf(path: Path, source: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    with open(path, "wb") as f:
        writer.write(f)
    return path


def write_scanned_pdf(path: Path, pages: int = 3) -> Path:
    """Pages without a text layer, as a scanner makes them (here: blank)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    with open(path, "wb") as f:
        writer.write(f)
    return path


def write_docx(path: Path, sections: dict[str, list[str]]) -> Path:
    import docx

    document = docx.Document()
    for heading, paragraphs in sections.items():
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))
    return path
