"""The project's nginx renderer (scripts/render_nginx.py), loaded for tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_nginx", ROOT / "scripts" / "render_nginx.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
