"""Hostile XML documents: entity expansion bombs, external entities and DTDs (OWASP XXE cases).

Each is built around a real 2030.5 document (the root and the element that carries the entity
reference are the ones the parser under test expects), so a parser that let the DTD through
would otherwise accept the document: refusal must come from the DTD, not from the shape.
"""

from __future__ import annotations

from dataclasses import dataclass

NS = "urn:ieee:std:2030.5:ns"
SECRET_FILE = "/etc/passwd"
SECRET_MARK = "root:"  # the first line of /etc/passwd on every Linux system


@dataclass(frozen=True)
class Attack:
    name: str
    dtd: str  # the DOCTYPE (and anything before it)
    ref: str  # what goes where a text value is expected


def attacks(root: str, fetch_url: str) -> list[Attack]:
    """The documents, for a document element named ``root``; ``fetch_url`` is a listener that
    records any connection (an external entity or DTD the parser tried to fetch)."""
    laughs = '<!ENTITY lol0 "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    return [
        Attack("billion-laughs", f"<!DOCTYPE {root} [{laughs}]>", "&lol9;"),
        Attack("quadratic-blowup", f'<!DOCTYPE {root} [<!ENTITY a "{"A" * 50_000}">]>', "&a;" * 10_000),
        Attack(
            "external-entity-file", f'<!DOCTYPE {root} [<!ENTITY x SYSTEM "file://{SECRET_FILE}">]>', "&x;"
        ),
        Attack("external-entity-http", f'<!DOCTYPE {root} [<!ENTITY x SYSTEM "{fetch_url}/entity">]>', "&x;"),
        Attack(
            "parameter-entity-http",
            f'<!DOCTYPE {root} [<!ENTITY % p SYSTEM "{fetch_url}/param"> %p;]>',
            "1",
        ),
        Attack("external-dtd-http", f'<!DOCTYPE {root} SYSTEM "{fetch_url}/dtd">', "1"),
        Attack("external-dtd-file", f'<!DOCTYPE {root} SYSTEM "file://{SECRET_FILE}">', "1"),
        Attack("internal-dtd-only", f"<!DOCTYPE {root} [<!ELEMENT {root} ANY>]>", "1"),
        # A DOCTYPE placed after 4 kB of comment: a check that only looks at the first bytes misses it.
        Attack(
            "dtd-after-long-comment",
            f'<!--{"c" * 4096}--><!DOCTYPE {root} [<!ENTITY x SYSTEM "file://{SECRET_FILE}">]>',
            "&x;",
        ),
        Attack(
            "external-dtd-after-long-comment",
            f'<!--{"c" * 4096}--><!DOCTYPE {root} SYSTEM "{fetch_url}/dtd">',
            "1",
        ),
    ]


def document(attack: Attack, body: str) -> bytes:
    """``body`` (an XML element text with ``{ref}`` where a value goes) after the attack's DTD."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>' + attack.dtd + body.replace("{ref}", attack.ref)
    ).encode()
