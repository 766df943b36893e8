"""Host: CPU, memory, disk and network from the monitor, and each service's health probe,
refreshed in place every few seconds."""
from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from admin_ui import api, widgets
from admin_ui import formatting as fmt
from admin_ui.i18n import t

REFRESH_SECONDS = 5
st.title(t("host.title"))


def _gib(value: object) -> str:
    return f"{float(fmt.decimal(value)) / 1024**3:,.1f} GiB"


def _bytes(value: object) -> str:
    n = float(fmt.decimal(value))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def _percent(value: object) -> float:
    return max(0.0, min(1.0, float(fmt.decimal(value)) / 100))


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    monitor = api.monitor_api()
    try:
        info = monitor.system("info")
    except api.ApiError:
        st.error(t("error.monitor"))
        info = None
    if info is not None:
        cpu, mem, disk, net = (info.get(k) or {} for k in ("cpu", "memory", "disk", "network"))
        c1, c2, c3, c4 = st.columns(4)
        with c1:
            usage = cpu.get("total_cpu_usage", 0)
            st.metric(t("host.cpu"), f"{float(fmt.decimal(usage)):.1f}%",
                      t("common.cores", n=cpu.get("total_cores", "?")), delta_color="off", delta_arrow="off")
            st.progress(_percent(usage))
        with c2:
            st.metric(t("host.memory"), f'{float(fmt.decimal(mem.get("percentage"))):.1f}%',
                      f'{_gib(mem.get("used_bytes"))} / {_gib(mem.get("total_bytes"))}', delta_color="off",
                      delta_arrow="off")
            st.progress(_percent(mem.get("percentage")))
        with c3:
            st.metric(t("host.disk"), f'{float(fmt.decimal(disk.get("percentage"))):.1f}%',
                      f'{_gib(disk.get("used_bytes"))} / {_gib(disk.get("total_bytes"))}', delta_color="off",
                      delta_arrow="off")
            st.progress(_percent(disk.get("percentage")))
        with c4:
            st.metric(t("host.network"), f'↑ {_bytes(net.get("bytes_sent"))}', f'↓ {_bytes(net.get("bytes_recv"))}',
                      delta_color="off", delta_arrow="off")
        per_core = cpu.get("cpu_usage_per_core") or []
        if per_core:
            st.bar_chart(pd.DataFrame({"core": [str(i) for i in range(len(per_core))], "%": per_core}),
                         x="core", y="%", height=160)
    st.subheader(t("host.services"))
    widgets.health_lines(monitor.health())
    upstreams()
    st.caption(t("host.updated", seconds=REFRESH_SECONDS,
                 time=fmt.when(datetime.now(UTC).isoformat(), seconds=True)))


def upstreams() -> None:
    """Each upstream's circuit as one chat-api replica sees it (the admin API's view)."""
    try:
        items = api.admin_api().upstreams()["items"]
    except api.ApiError as exc:
        if exc.code == "unreachable":  # said as on every other page; an older chat-api: nothing
            st.error(t("error.unreachable"))
        return
    st.subheader(t("host.upstreams"))
    state_col = t("keys.status")
    ok_text = t("host.ok")
    # coloured text, not emoji (they render as empty boxes on servers without an emoji font)
    table = pd.DataFrame([{
        t("host.upstream"): u["name"], t("host.kind"): u["kind"], t("host.priority"): u["priority"],
        t("host.weight"): u["weight"],
        state_col: ok_text if u["circuit"] == "closed" else t("host.cooling", seconds=u["cooldown_seconds"]),
        t("host.failures"): u["consecutive_failures"],
    } for u in items])
    st.dataframe(table.style.map(lambda v: "color: #0f5132; font-weight: 600" if v == ok_text
                                 else "color: #842029; font-weight: 600", subset=[state_col]),
                 hide_index=True, width="stretch")

live()
