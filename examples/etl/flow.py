"""The ETL example: orders.csv -> parse -> validate -> keep paid -> aggregate -> report.

    uv run routilux run examples/etl/flow.py:flow
    uv run routilux run examples/etl/flow.py:flow --param report=/tmp/report.json

The wiring lives in ``flow.yaml`` and uses the builtin routines by their registered names. A
flow file can only name routine types that are registered, and reading a CSV file or writing a
report needs code of our own, so this module defines the three custom routines (registered as
``etl.ReadCsv``, ``etl.Totals`` and ``etl.WriteReport`` when the classes are defined) and then
loads ``flow.yaml``. ``routilux run examples/etl/flow.py:flow`` imports this file because you
named it on the command line; the YAML file itself never causes an import.

Entry parameters: ``csv`` (default: the ``orders.csv`` shipped here) and ``report`` (default:
``routilux-examples/etl-report.json`` in the system's temporary directory).
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from routilux import Routine
from routilux.serialization import load_flow

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / "orders.csv"
DEFAULT_REPORT = Path(tempfile.gettempdir()) / "routilux-examples" / "etl-report.json"


class ReadCsv(Routine):
    """Emits one ``row`` per CSV line, every value as the text read (``line`` = line number)."""

    type_name = "etl.ReadCsv"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("input")
        self.add_event("row", ["line", "order_id", "customer", "country", "amount", "status"])
        self.set_logic(self._read)

    def _read(self, slot_data, policy_message, job_state):
        for params in slot_data["input"]:
            path = Path(params.get("csv") or DEFAULT_CSV)
            with path.open(newline="", encoding="utf-8") as fh:
                for line, row in enumerate(csv.DictReader(fh), start=2):
                    row.pop(None, None)  # extra columns of a malformed line
                    self.emit("row", line=line, **row)


class Totals(Routine):
    """Aggregates the collected orders: revenue and order count per customer and country."""

    type_name = "etl.Totals"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("orders")
        self.add_event("totals", ["orders", "revenue", "by_customer", "by_country"])
        self.set_logic(self._aggregate)

    def _aggregate(self, slot_data, policy_message, job_state):
        for collected in slot_data["orders"]:
            by_customer: dict[str, float] = defaultdict(float)
            by_country: dict[str, dict[str, float]] = {}
            for order in collected["items"]:
                by_customer[order["customer"]] += order["amount"]
                country = by_country.setdefault(order["country"], {"orders": 0, "revenue": 0.0})
                country["orders"] += 1
                country["revenue"] += order["amount"]
            self.emit(
                "totals",
                orders=collected["count"],
                revenue=round(sum(by_customer.values()), 2),
                by_customer={k: round(v, 2) for k, v in sorted(by_customer.items())},
                by_country={
                    k: {"orders": v["orders"], "revenue": round(v["revenue"], 2)}
                    for k, v in sorted(by_country.items())
                },
            )


class WriteReport(Routine):
    """Writes the totals, the rejected rows and the skipped lines to the report file."""

    type_name = "etl.WriteReport"

    def __init__(self) -> None:
        super().__init__()
        self.add_slot("totals")
        self.set_logic(self._write)

    def _write(self, slot_data, policy_message, job_state):
        params = job_state.entry_params or {}
        path = Path(params.get("report") or DEFAULT_REPORT)
        for totals in slot_data["totals"]:
            rejected = [
                {"line": d["payload"]["payload"]["line"], "reason": d["reason"]}
                for d in job_state.shared_data.get("rejected", [])
            ]
            report = {
                **totals,
                "rejected": sorted(rejected, key=lambda r: r["line"]),
                "not_paid": sorted(job_state.shared_data.get("not_paid", [])),
                "skipped_lines": sum(1 for r in job_state.history("parse")
                                     if r.status == "skipped"),
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            job_state.shared_data["report"] = str(path)
            self.send_output("report", path=str(path), orders=totals["orders"],
                             revenue=totals["revenue"])


flow = load_flow(HERE / "flow.yaml")
