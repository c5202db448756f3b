"""A report letter (``documents.letter``'s JSON) as plain text and as PDF, for an e-mailed report.

The PDF uses the PDF core fonts (Latin-1): any other character is written as a ``\\uXXXX`` escape, so
nothing is lost or guessed; the JSON attached with it is the exact record."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fpdf import FPDF
from fpdf.enums import WrapMode

TITLE = "Report of files confirmed as child sexual abuse material"


def load(document: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(document)
    return data


def lines(doc: dict[str, Any], reference: str) -> list[str]:
    """The letter, line by line (the text body and the PDF say the same)."""
    r, i, files = doc["reporter"], doc["incident"], doc["files"]
    out = [
        f"{TITLE}",
        f"Reference: {reference}",
        f"Prepared: {doc['prepared_at']}",
        "",
        f"From: {r['organisation'] or r['name'] or r['email']}",
        f"Contact: {', '.join(v for v in (r['name'], r['email'], r['phone']) if v)}",
        "",
        "Incident",
        f"  First seen: {i['first_seen']}",
        f"  Hosted by a third party: {'yes' if i['third_party_hosted'] else 'no'}",
    ]
    out += [f"  URL: {url}" for url in i["urls"]] or ["  URL: none recorded"]
    if i["user_id"] or i["screen_name"]:
        out.append(f"  Account: {i['user_id']} {('(' + i['screen_name'] + ')') if i['screen_name'] else ''}")
    out += [_ip(ip) for ip in i["ips"]]
    out += ["", f"Files ({len(files)}), each confirmed by human review after a hash match"]
    for n, f in enumerate(files, 1):
        out += [
            f"  {n}. evidence {f['evidence_id']}, matched {f['matched_at']}",
            f"     SHA-256: {f['sha256']}",
            f"     MD5: {f['md5'] or '-'}",
            f"     PDQ: {f['pdq'] or '-'}",
            f"     Classification: {f['classification'] or '-'}; hash lists: {', '.join(f['banks']) or '-'}",
        ]
        if f["location"]:
            out.append(f"     Location: {f['location']}")
        if f.get("original_file_name"):
            out.append(f"     Uploaded as: {f['original_file_name']}")
        out.append(f"     Preserved: {'yes' if f['media_preserved'] else 'no'}")
    out += [
        "",
        "The files are preserved in our evidence vault. They are not attached: ask us for a signed",
        "evidence bundle through a secure channel, quoting the reference above.",
    ]
    if r["notes"]:
        out += ["", r["notes"]]
    return out


def _ip(ip: dict[str, Any]) -> str:
    """An IP address with what the user did from it and when, as the platform said (letters written
    before events were kept say only a time)."""
    event = ip.get("event") or ""
    said = f" ({event})" if event and event != "Unknown" else ""
    return f"  IP address: {ip['address']}{said}" + (
        f" at {ip['at']}" if ip.get("at") else ", time not known"
    )


def text(document: bytes, reference: str) -> str:
    return "\n".join(lines(load(document), reference)) + "\n"


def _latin1(line: str) -> str:
    return line.encode("latin-1", "backslashreplace").decode("latin-1")


def pdf(document: bytes, reference: str) -> bytes:
    doc = FPDF(format="A4")
    doc.set_title(f"{TITLE} ({reference})")
    doc.set_creator("childshield")
    doc.set_creation_date(dt.datetime.fromisoformat(load(document)["prepared_at"]))  # same letter, same bytes
    doc.add_page()
    doc.set_font("Helvetica", "B", 13)
    all_lines = lines(load(document), reference)
    doc.multi_cell(0, 7, _latin1(all_lines[0]), new_x="LMARGIN", new_y="NEXT")
    doc.set_font("Courier", size=8.5)
    for line in all_lines[1:]:
        doc.multi_cell(0, 4.5, _latin1(line) or " ", new_x="LMARGIN", new_y="NEXT", wrapmode=WrapMode.CHAR)
    return bytes(doc.output())
