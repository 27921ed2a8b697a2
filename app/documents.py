"""Text out of the documents people summarise: PDF, Word, plain text, Markdown and HTML.

Each document comes out as sections with a label to refer back to ("page 3", a heading,
"lines 41-80"). Everything that would make a summary meaningless or hang is refused here
with a sentence saying what to do: encrypted or scanned PDFs, empty or binary files, text
in an encoding that cannot be recognised, very large files.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from app.errors import DocumentError

log = logging.getLogger(__name__)

MAX_BYTES = 200 * 1024 * 1024
MAX_PAGES = 2000
MAX_UNPACKED_BYTES = 256 * 10**6  # a .docx's parts together; a 1,000-page one has ~20 MB
MAX_TEXT_CHARS = 64 * 10**6  # extracted text; about 15 million tokens
LINES_PER_SECTION = 40
_WESTERN = "cp1252"
_CLOSE_CHAOS = 0.15
SUFFIXES = {
    ".pdf": "PDF",
    ".docx": "Word",
    ".txt": "text",
    ".text": "text",
    ".md": "Markdown",
    ".markdown": "Markdown",
    ".html": "HTML",
    ".htm": "HTML",
}


@dataclass(frozen=True)
class Section:
    label: str  # where it is in the document: "page 3", a heading, "lines 41-80"
    text: str


@dataclass(frozen=True)
class Document:
    path: Path
    kind: str
    sections: tuple[Section, ...]
    pages: int | None = None
    encoding: str | None = None

    @property
    def title(self) -> str:
        """The file name as text; bytes of a name that is not UTF-8 (Linux allows them) show as �."""
        return os.fsencode(self.path.name).decode("utf-8", errors="replace")

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


def supported_suffixes() -> str:
    return ", ".join(sorted(SUFFIXES))


def read_document(path: str | Path) -> Document:
    """Extract `path`'s text by sections; raise DocumentError with a reason otherwise."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DocumentError(f"{path.name}: only these documents can be summarised: {supported_suffixes()}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DocumentError(f"{path} does not exist") from None
    except OSError as exc:
        raise DocumentError(f"{path.name} cannot be read: {exc.strerror}") from None
    if size == 0:
        raise DocumentError(f"{path.name} is empty")
    if size > MAX_BYTES:
        raise DocumentError(
            f"{path.name} is {size / 1e6:,.0f} MB; documents over {MAX_BYTES // 2**20} MB are not summarised. "
            "Split it into parts first."
        )
    reader = {"PDF": _read_pdf, "Word": _read_docx, "HTML": _read_html}.get(kind, _read_text)
    document = reader(path, kind)
    if not any(s.text.strip() for s in document.sections):
        raise DocumentError(f"{path.name} contains no text")
    if (chars := sum(len(s.text) for s in document.sections)) > MAX_TEXT_CHARS:
        raise DocumentError(
            f"{path.name} holds {chars / 1e6:,.0f} million characters of text; at most "
            f"{MAX_TEXT_CHARS // 10**6} million are summarised at once. Split it into parts first."
        )
    return document


# --- PDF ---------------------------------------------------------------------------------------
def _read_pdf(path: Path, kind: str) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{path.name} is password-protected; open it, save an unprotected copy and try that")
        n_pages = len(reader.pages)
        if n_pages > MAX_PAGES:
            raise DocumentError(f"{path.name} has {n_pages:,} pages; at most {MAX_PAGES:,} are summarised at once")
        sections = tuple(
            Section(f"page {i}", _tidy(page.extract_text() or "")) for i, page in enumerate(reader.pages, 1)
        )
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        log.info("pypdf could not read %s: %s", path, exc)
        raise DocumentError(f"{path.name} is not a readable PDF (damaged, or not a PDF at all)") from None
    if n_pages and not any(s.text.strip() for s in sections):
        raise DocumentError(
            f"{path.name} has no text layer (a scanned document?); run it through OCR first, then summarise that"
        )
    return Document(path, kind, tuple(s for s in sections if s.text.strip()), pages=n_pages)


# --- Word --------------------------------------------------------------------------------------
def _check_unpacked_size(path: Path) -> None:
    """A .docx is a zip: a few MB can unpack to gigabytes (issue 17, item 7: 2.4 MB held a
    600 MB document.xml and took 3.8 GB of memory). The sizes are read from the zip's table,
    which also bounds what zipfile will ever unpack, before anything is extracted."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # python-docx then says it is not a .docx
    total = sum(m.file_size for m in members)
    largest = max(members, key=lambda m: m.file_size, default=None)
    if total > MAX_UNPACKED_BYTES:
        raise DocumentError(
            f"{path.name} unpacks to {total / 1e6:,.0f} MB ({largest.filename} alone is "
            f"{largest.file_size / 1e6:,.0f} MB); Word documents over {MAX_UNPACKED_BYTES // 10**6} MB "
            "unpacked are not summarised. Save it as a smaller document or as plain text."
        )


def _read_docx(path: Path, kind: str) -> Document:
    import docx

    _check_unpacked_size(path)
    try:
        word = docx.Document(str(path))
    except Exception as exc:  # zipfile, python-docx's PackageNotFoundError, lxml: all mean "not a .docx"
        log.info("python-docx could not read %s: %s", path, exc)
        raise DocumentError(f"{path.name} is not a readable Word document (.docx)") from None
    sections: list[Section] = []
    label, lines = "beginning", []
    for paragraph in word.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        if style.startswith(("Heading", "Title")) and paragraph.text.strip():
            if any(line.strip() for line in lines):
                sections.append(Section(label, _tidy("\n".join(lines))))
            label, lines = paragraph.text.strip(), [paragraph.text]
        else:
            lines.append(paragraph.text)
    if any(line.strip() for line in lines):
        sections.append(Section(label, _tidy("\n".join(lines))))
    return Document(path, kind, tuple(sections))


# --- text, Markdown ------------------------------------------------------------------------------
def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """(text, encoding) of `data`: a BOM, else UTF-8, else charset-normalizer's best guess."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding, errors="replace"), encoding
    if b"\x00" in data[:8192]:
        utf16 = _bomless_utf16(data[:8192])
        if utf16 is None:
            raise DocumentError(f"{name} looks like a binary file, not text")
        return data.decode(utf16, errors="replace"), utf16
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data[: 1 << 20]))
    if not matches:
        raise DocumentError(f"{name}: its text encoding could not be recognised; save it as UTF-8 and try again")
    encoding = matches[0].encoding
    # Single-byte Western text fits several code pages about equally well (é is 0xE9 in most);
    # where Windows-1252, the commonest, is nearly as good a fit, it wins.
    close = [m for m in matches if m.chaos <= matches[0].chaos + _CLOSE_CHAOS]
    if any(_WESTERN in m.could_be_from_charset for m in close):
        encoding = _WESTERN
    return data.decode(encoding, errors="replace"), encoding


def _bomless_utf16(sample: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' for UTF-16 text without a byte-order mark (Windows tools
    write it): most characters of Latin-script text have a zero high byte, so one of the two
    byte positions is nearly always zero and the other almost never is."""
    even, odd = sample[0::2], sample[1::2]
    if len(odd) < 8:
        return None
    zero_even, zero_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if zero_odd > 0.6 and zero_even < 0.05:
        encoding = "utf-16-le"
    elif zero_even > 0.6 and zero_odd < 0.05:
        encoding = "utf-16-be"
    else:
        return None
    text = sample[: len(sample) // 2 * 2].decode(encoding, errors="replace")
    return encoding if _control_share(text) <= 0.05 else None


def _read_text(path: Path, kind: str) -> Document:
    text, encoding = decode_text(path.read_bytes(), path.name)
    if _control_share(text) > 0.05:
        raise DocumentError(f"{path.name} looks like a binary file, not text")
    return Document(path, kind, _text_sections(text), encoding=encoding)


_HEADING = re.compile(r"^#{1,6}\s+(\S.*)$")


def _text_sections(text: str) -> tuple[Section, ...]:
    """Sections at Markdown headings; without headings, blocks of lines labelled by line numbers."""
    lines = text.splitlines()
    if any(_HEADING.match(line) for line in lines):
        sections, label, body = [], "beginning", []
        for line in lines:
            heading = _HEADING.match(line)
            if heading:
                if "".join(body).strip():
                    sections.append(Section(label, _tidy("\n".join(body))))
                label, body = heading.group(1).strip(), [line]
            else:
                body.append(line)
        if "".join(body).strip():
            sections.append(Section(label, _tidy("\n".join(body))))
        return tuple(sections)
    return tuple(
        Section(f"lines {start + 1}-{min(start + LINES_PER_SECTION, len(lines))}", _tidy("\n".join(block)))
        for start in range(0, len(lines), LINES_PER_SECTION)
        if "".join(block := lines[start : start + LINES_PER_SECTION]).strip()
    )


def _control_share(text: str) -> float:
    sample = text[:65536]
    if not sample:
        return 0.0
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f") + sample.count("\ufffd")
    return controls / len(sample)


# --- HTML --------------------------------------------------------------------------------------
class _HtmlText(HTMLParser):
    """Visible text, split into sections at h1-h3; scripts, styles and the head left out."""

    SKIP = {"script", "style", "head", "noscript", "template"}
    BREAKS = {"p", "div", "br", "li", "tr", "section", "article", "h4", "h5", "h6", "pre", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._label, self._parts, self._skipping = "beginning", [], 0
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in ("h1", "h2", "h3"):
            self._close_section()
            self._heading = []
        elif tag in self.BREAKS:
            self._parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self._label = " ".join("".join(self._heading).split()) or self._label
            self._parts.append(self._label + "\n")
            self._heading = None

    def handle_data(self, data):
        if self._skipping:
            return
        (self._heading if self._heading is not None else self._parts).append(data)

    def _close_section(self) -> None:
        text = _tidy("".join(self._parts))
        if text:
            self.sections.append(Section(self._label, text))
        self._parts = []

    def close(self) -> None:
        super().close()
        self._close_section()


def _read_html(path: Path, kind: str) -> Document:
    text, encoding = decode_text(path.read_bytes(), path.name)
    if _control_share(text) > 0.05:
        raise DocumentError(f"{path.name} looks like a binary file, not HTML")
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    return Document(path, kind, tuple(parser.sections), encoding=encoding)


def _tidy(text: str) -> str:
    """Collapse runs of spaces and of blank lines; keep paragraph breaks."""
    text = re.sub(r"[ \t\f\v]+", " ", text)
    return re.sub(r"\n\s*\n\s*(\n\s*)+", "\n\n", text).strip()
