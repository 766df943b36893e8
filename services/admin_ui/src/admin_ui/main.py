"""``admin-ui``: runs the console with Streamlit under the /admin base path."""
from __future__ import annotations

import os
import sys
from pathlib import Path


def command() -> list[str]:
    app = Path(__file__).with_name("streamlit_app.py")
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.port", os.environ.get("ADMIN_UI_PORT", "8501"),
        "--server.address", os.environ.get("ADMIN_UI_HOST", "127.0.0.1"),
        "--server.baseUrlPath", "admin",
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",  # no "Deploy" or developer menu for operators
        # A table's own CSV download escapes no formula and ignores KST/KRW/names: exports go
        # through the console's export (admin API CSV) only.
        "--client.disableDataExport", "true",
    ]


def run() -> None:
    argv = command()
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process with streamlit, by design
