"""CSV exports that match the screen and reach only the signed-in operator.

The admin API writes the CSV (newest first, KST and UTC times, key names, USD and KRW as
plain numbers, a UTF-8 BOM, formulas neutralised). The console fetches it when asked, with
the filters on screen, and keeps it only while those filters stay the same. The file goes to
the browser inside the session's own connection — a same-origin component frame turns it into
a download — so no URL serves it (Streamlit's media URLs answer without a session).
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime

from admin_ui import formatting

PART_ROWS = 20_000  # per file; the rest comes as the next part (older rows)


def part_rows() -> int:
    """Rows per part: CONSOLE_EXPORT_PART_ROWS (a smaller file per download), else PART_ROWS."""
    value = os.environ.get("CONSOLE_EXPORT_PART_ROWS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else PART_ROWS


@dataclass(frozen=True)
class Prepared:
    signature: tuple[object, ...]
    body: bytes
    rows: int
    filename: str
    oldest: str | None  # created_at (UTC ISO) of the last (oldest) row
    oldest_id: int | None  # and its row_id: the next part starts after (oldest, oldest_id)
    limit: int  # the part's size: a part this full was cut

    @property
    def truncated(self) -> bool:
        return self.rows >= self.limit


def prepare(signature: tuple[object, ...], body: bytes, name: str, since: str | None, until: str | None,
            limit: int) -> Prepared:
    text = body.decode("utf-8-sig")
    lines = text.splitlines()
    rows = max(0, len(lines) - 1)
    oldest, oldest_id = None, None
    if rows:
        last = list(csv.DictReader(io.StringIO(text)))[-1]
        oldest = last.get("created_at") or None
        row_id = (last.get("row_id") or "").strip()
        oldest_id = int(row_id) if row_id.isdigit() else None
    return Prepared(signature, body, rows, filename(name, since, until), oldest, oldest_id, limit)


def filename(name: str, since: str | None, until: str | None) -> str:
    """'requests_20261101-0000_20261130-1805_KST.csv' (the range in the display zone)."""
    def stamp(value: str | None, default: str) -> str:
        parsed = formatting.parse_time(value)
        return default if parsed is None else parsed.astimezone(formatting.display_tz()).strftime("%Y%m%d-%H%M")

    now = datetime.now(formatting.display_tz()).strftime("%Y%m%d-%H%M")
    return f"{name}_{stamp(since, 'start')}_{stamp(until, now)}_KST.csv"


def download_frame(prepared: Prepared, label: str) -> str:
    """The component document: a button that saves the CSV from memory (a Blob)."""
    payload = base64.b64encode(prepared.body).decode()
    return f"""<button id="dl" style="font:14px sans-serif;padding:6px 14px;border-radius:8px;
border:1px solid #bbb;background:#fff;cursor:pointer">{html.escape(label)}</button>
<script>
document.getElementById("dl").addEventListener("click", function () {{
  var bytes = Uint8Array.from(atob({json.dumps(payload)}), function (c) {{ return c.charCodeAt(0); }});
  var url = URL.createObjectURL(new Blob([bytes], {{type: "text/csv;charset=utf-8"}}));
  var a = document.createElement("a");
  a.href = url; a.download = {json.dumps(prepared.filename)};
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(function () {{ URL.revokeObjectURL(url); }}, 1000);
}});
</script>"""
