"""A tenant's heating and water cost bill as a PDF (issue 21 item 4), beside ``bills.csv``.

The bill shows the figures that produce it, as the Heating Costs Ordinance asks of a bill
(HeizkostenV §6(1): the consumption recorded, the shares and the keys): the building's costs
for the period, the fixed (area) share, the flat's heated area and days, its allocator units,
its hot- and cold-water volumes, each part of the charge and the total. Laid out with fpdf2
(pure Python, LGPL) rather than written by hand; the text uses the PDF core font Helvetica, so
it is limited to Latin-1 (a name outside it is written with ``?`` for the characters it
cannot show, never dropped silently: the CSV keeps the exact text).

Uncompressed by default: a bill is a few kilobytes, and its text stays searchable and testable
without a PDF reader.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from fpdf import FPDF

from smarthub.gdsc.readings.heat_costs import BuildingCosts, FlatBill


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _money(value: Decimal) -> str:
    return f"EUR {value:,.2f}"


def _rows(pdf: FPDF, rows: list[tuple[str, str]], label_width: float) -> None:
    """Label and value pairs, one line each."""
    for label, value in rows:
        pdf.cell(label_width, 6, label)
        pdf.cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")


def bill_pdf(building: str, costs: BuildingCosts, bill: FlatBill, *, compress: bool = False) -> bytes:
    """One tenant's bill for one flat and period, as PDF bytes."""
    pdf = FPDF(format="A4")
    pdf.set_compression(compress)
    pdf.set_title(_latin1(f"Heating and water costs {building} flat {bill.flat}"))
    pdf.set_creator("smarthub heat-bill")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 9, _latin1(f"Heating and water costs: {building}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    head = [
        ("Flat", bill.flat),
        ("Tenant", bill.tenant),
        ("Billing period", f"{bill.start.isoformat()} to {bill.end.isoformat()}"),
        ("Building period", f"{costs.period_start.isoformat()} to {costs.period_end.isoformat()}"),
    ]
    _rows(pdf, head, 45)
    pdf.ln(3)

    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, "The building's costs and keys", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    keys = [
        ("Fuel (space heating and hot water)", _money(costs.fuel_cost)),
        ("Fuel energy", f"{costs.fuel_kwh} kWh"),
        ("Cold water and sewerage", _money(costs.water_cost)),
        ("Fixed share by heated area", f"{costs.fixed_share * 100:.0f} %"),
        ("Hot water heated to", f"{costs.hot_water_temperature_c} C (HeizkostenV 9(2))"),
    ]
    _rows(pdf, keys, 80)
    pdf.ln(3)

    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, "This flat's consumption", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    used = [
        ("Heated area", f"{bill.heated_area_m2} m2"),
        ("Heat-cost allocator units", f"{bill.units}" + (" (estimated)" if bill.estimated else "")),
        ("Hot water", f"{bill.hot_water_m3} m3"),
        ("Cold water", f"{bill.cold_water_m3} m3"),
    ]
    _rows(pdf, used, 80)
    pdf.ln(3)

    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, "Charges", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    parts = [
        ("Space heating, by area", bill.heating_area),
        ("Space heating, by consumption", bill.heating_consumption),
        ("Hot water, by area", bill.hot_water_area),
        ("Hot water, by consumption", bill.hot_water_consumption),
        ("Water, by metered cold and hot water", bill.cold_water),
    ]
    for label, amount in parts:
        pdf.cell(110, 6, label)
        pdf.cell(40, 6, _money(amount), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(110, 7, "Total")
    pdf.cell(40, 7, _money(bill.total), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    notes = list(bill.notes)
    if bill.estimated:
        notes.insert(0, "Units estimated (HeizkostenV 9a): the allocator's reading was missing or failed.")
    for note in notes:
        pdf.ln(1)
        pdf.multi_cell(0, 5, _latin1(note), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def bill_file_name(bill: FlatBill) -> str:
    """``<flat>-<tenant>-<start>.pdf``, with anything but letters, digits, ``-`` and ``_`` as ``_``."""
    raw = f"{bill.flat}-{bill.tenant}-{bill.start.isoformat()}"
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in raw) + ".pdf"


def write_bill_pdfs(building: str, costs: BuildingCosts, bills: Iterable[FlatBill]) -> dict[str, bytes]:
    """Every bill's PDF by file name (one per flat and tenancy)."""
    return {bill_file_name(b): bill_pdf(building, costs, b) for b in bills}
