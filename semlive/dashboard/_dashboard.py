"""The live dashboard: the run's status (``semlive.pipeline``'s snapshot) drawn with rich.

It only reads: the pipeline hands it each new status, and rich redraws the latest one at a
steady rate on its own thread, so drawing never slows the pipeline. Below 100×30 characters it
draws a compact view of the essentials instead of the panels.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from semlive.pipeline import TILE_STATES

__all__ = ["Dashboard", "render"]

_COLOURS = {
    ".": "grey42",
    "s": "blue",
    "e": "magenta",
    "o": "green",
    "O": "bold bright_green",
    "x": "bold red",
}
_LEGEND = [
    (".", "planned"),
    ("s", "stitched"),
    ("e", "EDS"),
    ("o", "segmented"),
    ("O", "segm.+EDS"),
    ("x", "quarantined"),
]
_BARS = " ▁▂▃▄▅▆▇█"
_STATE_OF = {ch: state for state, ch in TILE_STATES.items()}


class Dashboard:
    """``with Dashboard() as d: ... d.update(status)``: a rich Live view of the latest status."""

    def __init__(self, console: Console | None = None, refresh_per_second: float = 2.0) -> None:
        self.console = console or Console()
        self._status: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._live = Live(
            get_renderable=self._renderable,
            console=self.console,
            refresh_per_second=refresh_per_second,
            screen=False,
            transient=False,
        )

    def update(self, status: dict[str, Any]) -> None:
        if status:
            with self._lock:
                self._status = status

    def _renderable(self) -> RenderableType:
        with self._lock:
            status = self._status
        size = self.console.size
        return render(status, size.width, size.height)

    def __enter__(self) -> Dashboard:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)


def _fmt(value: Any, spec: str = "", none: str = "–") -> str:
    if value is None:
        return none
    return format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(status: dict[str, Any], width: int = 120, height: int = 40) -> RenderableType:
    """The dashboard for one status, for a terminal of ``width`` × ``height``."""
    if not status:
        return Text("semlive: starting…")
    if width < 100 or height < 30:
        return _compact(status, width)
    layout = Layout()
    layout.split_column(Layout(_header(status), size=3), Layout(name="body"))
    layout["body"].split_row(
        Layout(name="left", ratio=4), Layout(name="middle", ratio=4), Layout(name="right", ratio=4)
    )
    grid = status["tiles"]
    map_rows = min(grid["rows"], max(height - 22, 4)) + 4
    layout["left"].split_column(
        Layout(_minimap(status, width // 3 - 4, map_rows - 4), size=map_rows),
        Layout(_ingest(status)),
    )
    layout["middle"].split_column(Layout(_stitching_drift(status)), Layout(_segmentation(status)))
    layout["right"].split_column(Layout(_catalogue(status)), Layout(_recent(status)))
    return layout


def _header(s: dict[str, Any]) -> Panel:
    session, system = s["session"], s["system"]
    state = (
        "finished"
        if session["finished"]
        else "finalising"
        if session["finalising"]
        else "SEM done"
        if session["sem_done"]
        else "scanning"
    )
    text = Text.assemble(
        ("semlive ", "bold"),
        (f"{session.get('sample') or ''}  ", "cyan"),
        (f"{state}  ", "bold green" if session["finished"] else "bold yellow"),
        f"elapsed {_duration(session['elapsed_s'])}  ETA {_duration(session['eta_s'])}  ",
        f"CPU {system['cpu_percent']:.0f}% of {system['cores']:.0f} cores  "
        f"memory {system['rss_gb']:.2f} GB (peak {system['peak_rss_gb']:.2f})",
    )
    return Panel(text, title="session", title_align="left")


def _minimap(s: dict[str, Any], width: int, height: int) -> Panel:
    grid = s["tiles"]
    rows, cols = grid["rows"], grid["cols"]
    step = max(1, -(-cols // max(width, 1)), -(-rows // max(height, 1)))  # fit the panel
    text = Text()
    for r in range(0, rows, step):
        line = grid["cells"][r][::step]
        for ch in line:
            text.append(ch, style=_COLOURS.get(ch, ""))
        text.append("\n")
    legend = Text()
    for ch, name in _LEGEND:
        legend.append(f"{ch}", style=_COLOURS[ch])
        legend.append(f" {name} {grid['counts'].get(_STATE_OF[ch], 0)}  ")
    scale = "" if step == 1 else f" (1 char = {step}×{step} tiles)"
    return Panel(Group(text, legend), title=f"tile plan {rows}×{cols}{scale}", title_align="left")


def _ingest(s: dict[str, Any]) -> Panel:
    i, seg = s["ingest"], s["segmentation"]
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("tiles", f"{i['tiles']} ({_fmt(i['tiles_per_min'], '.1f')}/min)")
    t.add_row("files", ", ".join(f"{n} {k}" for k, n in i["files"].items()) or "–")
    t.add_row("standards", f"{i['standards']}   spectra batches {i['spectra']}")
    t.add_row("quarantined", str(i["quarantined"]))
    t.add_row("backlog", f"{i['backlog']['events']} events, {i['backlog']['jobs']} jobs")
    lat, reg = seg["tile_latency_s"], seg["region_latency_s"]
    t.add_row("tile latency", f"p50 {_fmt(lat['p50'], '.1f')} s, p95 {_fmt(lat['p95'], '.1f')} s")
    t.add_row("region latency", f"p95 {_fmt(reg['p95'], '.1f')} s (n {reg['n']})")
    for name, lane in s["lanes"].items():
        running = lane["running"]
        busy = "idle" if running is None else f"{running['kind']} {running['seconds']:.0f} s"
        t.add_row(f"  {name}", f"{busy}, {lane['pending']} waiting")
    return Panel(t, title="ingest and jobs", title_align="left")


def _stitching_drift(s: dict[str, Any]) -> Panel:
    parts: list[RenderableType] = []
    st = s.get("stitching")
    if st:
        parts.append(
            Text(
                f"{st['tiles_placed']} tiles placed ({st['tiles_from_stage_model']} from the stage "
                f"model); pairs {st['pairs_accepted']} accepted, {st['pairs_rejected']} rejected; "
                f"worst residual {st['worst_residual_px']:.2f} px"
            )
        )
    else:
        parts.append(Text("stitching: no tiles yet", style="grey50"))
    d = s.get("drift")
    if d:
        alerts = d["alerts"]
        parts.append(
            Text.assemble(
                "drift: ",
                d["mode"],
                f"; {d['standards_measured']} standards, ",
                (f"{alerts} alerts", "bold red" if alerts else "green"),
            )
        )
        rounds = [r for r in d.get("rounds", []) if not r.get("failed")]
        if rounds:
            gains = [float(r["gain"]) for r in rounds][-24:]
            parts.append(Text(f"gain {_spark(gains)} last {gains[-1]:.4f}"))
    return Panel(Group(*parts), title="stitching QC and drift", title_align="left")


def _segmentation(s: dict[str, Any]) -> Panel:
    seg, advice = s["segmentation"], s.get("advice")
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold")
    t.add_column()
    model = seg.get("model")
    if model:
        t.add_row(
            "model",
            f"{model['eds_tiles']} EDS tiles, val IoU {model['val_iou']:.3f}, dlth "
            f"{model['dlth']:.2f}",
        )
    else:
        t.add_row("model", "waiting for EDS tiles to train on")
    t.add_row("regions", f"{seg['regions_segmented']} of {seg['regions_complete']} segmented")
    t.add_row(
        "olivine",
        f"{_fmt(seg.get('olivine_share'), '.1%')} of scanned; uncertain "
        f"{_fmt(seg.get('uncertain_share'), '.2%')}",
    )
    g = s.get("gdls") or {}
    t.add_row("GDLS", f"{g.get('fields', 0)} fields, {g.get('segments', 0)} segments")
    if advice:
        t.add_row("advice", Text(advice.get("message", ""), style="bold yellow"))
        curve = advice.get("curve") or []
        if curve:
            ordered = sorted(curve, key=lambda p: p["labelled_px"])  # IoU against area
            t.add_row("curve", _spark([p["iou"] for p in ordered]))
    else:
        t.add_row("advice", "after the first model")
    return Panel(t, title="segmentation QA and EDS advice", title_align="left")


def _catalogue(s: dict[str, Any]) -> Panel:
    c = s.get("catalogue")
    if not c:
        return Panel(Text("no crystals counted yet", style="grey50"), title="catalogue")
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("crystals", str(c["crystals"]))
    for name, n in c["size_classes"].items():
        t.add_row(f"  {name}", str(n))
    t.add_row("zoning", ", ".join(f"{k} {n}" for k, n in c["phenocryst_zoning"].items()))
    hist = c.get("mg_histogram") or {}
    counts = hist.get("counts") or []
    if counts and sum(counts):
        edges = hist["edges"]
        t.add_row("mg#", f"{edges[0]:.2f} {_spark([float(v) for v in counts])} {edges[-1]:.2f}")
    export = s.get("export")
    if export:
        t.add_row("report", str(export["report"]))
    return Panel(t, title="live catalogue", title_align="left")


def _recent(s: dict[str, Any]) -> Panel:
    lines = s.get("recent", [])[-10:]
    failures = s.get("failures", [])
    text = Text("\n".join(lines))
    for f in failures[-2:]:
        text.append(f"\nfailed {f['kind']} {f['key']}: {f['error']}", style="red")
    return Panel(text, title="recent events", title_align="left")


def _spark(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(_BARS[1 + round((v - low) / span * (len(_BARS) - 2))] for v in values)


def _compact(s: dict[str, Any], width: int) -> RenderableType:
    """A small terminal: one line per part."""
    session, i, seg = s["session"], s["ingest"], s["segmentation"]
    state = "finished" if session["finished"] else "SEM done" if session["sem_done"] else "scanning"
    counts = s["tiles"]["counts"]
    c = s.get("catalogue") or {}
    advice = (s.get("advice") or {}).get("message", "–")
    model = seg.get("model")
    lines = [
        f"semlive {state} {_duration(session['elapsed_s'])} ETA {_duration(session['eta_s'])}",
        f"tiles {i['tiles']} segm {counts.get('segmented', 0) + counts.get('segmented_eds', 0)}"
        f" quar {i['quarantined']} backlog {i['backlog']['jobs']}",
        f"model IoU {_fmt(model and model['val_iou'], '.3f')} p95 latency "
        f"{_fmt(seg['tile_latency_s']['p95'], '.1f')} s",
        f"crystals {c.get('crystals', '–')}  advice: {advice}",
    ]
    recent = s.get("recent", [])
    if recent:
        lines.append(recent[-1])
    return Text("\n".join(line[: max(width - 1, 10)] for line in lines))
