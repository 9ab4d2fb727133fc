"""Reading untrusted XML (the 2030.5 bodies a hub or the GDSC receives) safely with lxml.

IEEE 2030.5 documents are defined by an XSD and never carry a DTD, so any DTD is refused:
that closes entity expansion (billion laughs, quadratic blowup), external entities and
external DTDs (file and network reads) at once, whatever the libxml2 defaults. The parser
options are belt and braces behind that refusal (defusedxml's guarantees, with lxml).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

Element = etree._Element


class XmlRefused(ValueError):
    """An untrusted XML body that is refused: malformed, or carrying a DTD / entity declarations."""


UNTRUSTED_PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,  # never substitute an entity, internal or external
    "no_network": True,  # never fetch anything
    "load_dtd": False,  # never load an external DTD
    "dtd_validation": False,
    "huge_tree": False,  # keep libxml2's depth, text-size and amplification limits
    "remove_comments": True,
    "remove_pis": True,
}
_UNTRUSTED = etree.XMLParser(**UNTRUSTED_PARSER_OPTIONS)
DTD_REFUSED = "XML with a DTD or entity declarations is refused"


_WIDE = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)


def wide_encoding(data: bytes) -> str | None:
    """The UTF-16/32 codec a document's first bytes announce (XML 1.0 Appendix F), or None."""
    for prefix, codec in _WIDE:
        if data.startswith(prefix):
            return codec
    return None


def refuse_dtd_bytes(data: bytes) -> None:
    """Refuse a body whose text declares a DTD or an entity, before any parser sees it (a
    UTF-16 or UTF-32 body is decoded first: its markers are not these bytes)."""
    codec = wide_encoding(data)
    if codec is not None:
        text = data.decode(codec, errors="ignore")
        if "<!DOCTYPE" in text or "<!ENTITY" in text:
            raise XmlRefused(DTD_REFUSED)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise XmlRefused(DTD_REFUSED)


def refuse_dtd_tree(element: Element) -> None:
    """Refuse a parsed document that had a DTD (catches encodings the byte check cannot read,
    such as UTF-16)."""
    docinfo = element.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.system_url:
        raise XmlRefused(DTD_REFUSED)


def parse_untrusted(body: bytes) -> Element:
    """The root element of an untrusted 2030.5 body; :class:`XmlRefused` saying why not."""
    refuse_dtd_bytes(body)
    try:
        root = etree.fromstring(body, _UNTRUSTED)
    except etree.XMLSyntaxError as err:
        raise XmlRefused(f"malformed XML: {err}") from None
    refuse_dtd_tree(root)
    return root
