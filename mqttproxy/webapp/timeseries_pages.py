"""The timeseries recorder on the dashboard: data configs, the series browser and a series' chart.

``/timeseries`` lists the recorded series (filtered by metric and labels)
with their sample count and last value; ``/timeseries/series/{id}`` draws
one series with uPlot (vendored in ``web/static``; ``web/static/timeseries.js``
reads ``/api/timeseries/series/{id}/aggregate`` for the range and step
picked) and links its CSV exports; ``/timeseries/configs`` lists the data
configs with what each recorded since start, and their forms add, edit and
delete them. Like the other pages, every change is a POST carrying the CSRF
token, a success redirects (303) with a flash message, a form with errors
comes back with the errors next to its boxes and nothing saved, and delete
asks first (without script, a page asks). The forms' text is read by
``timeseries_forms``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from mqttproxy.timeseries import DataConfig, DataConfigExists, DataConfigNotFound, Recorder, Series
from mqttproxy.timeseries.query import AGGREGATES, bucket_count
from mqttproxy.webapp.auth import redirect, render
from mqttproxy.webapp.pages import error_page, moment
from mqttproxy.webapp.registry_forms import FieldError, Form
from mqttproxy.webapp.services import GATEWAY
from mqttproxy.webapp.timeseries_api import MAX_BUCKETS, MAX_POINTS
from mqttproxy.webapp.timeseries_forms import (
    SOURCES,
    TIMESTAMP_UNITS,
    TYPES,
    blank_row,
    config_values,
    format_label_filter,
    parse_label_filter,
    row_name,
    validate_config,
    values_from_post,
)

NEW_ROW = "__N__"  # the row number in the template the page's script copies for another field
SERIES_SHOWN = 100  # rows of the series browser; a filter narrows it
_FLASH = {
    "config-added": "Data config {id} added: matching messages are recorded from now on.",
    "config-saved": "Data config {id} saved.",
    "config-deleted": "Data config {id} deleted; the series it recorded stay until their retention.",
}
_CONFIG_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CONFIGS = ("/timeseries/configs", "Back to the data configs")
_SERIES = ("/timeseries", "Back to the series")


@dataclass(frozen=True, slots=True)
class Choice:
    """A range or step of the chart: its API duration, its text, and its length."""

    value: str
    text: str
    ms: int


RANGES = (
    Choice("15m", "15 min", 900_000),
    Choice("1h", "1 h", 3_600_000),
    Choice("6h", "6 h", 21_600_000),
    Choice("24h", "24 h", 86_400_000),
    Choice("7d", "7 d", 604_800_000),
)
STEPS = (
    Choice("auto", "auto", 0),
    Choice("10s", "10 s", 10_000),
    Choice("1m", "1 min", 60_000),
    Choice("5m", "5 min", 300_000),
    Choice("15m", "15 min", 900_000),
    Choice("1h", "1 h", 3_600_000),
    Choice("1d", "1 d", 86_400_000),
)
DEFAULT_RANGE = RANGES[1]
CHART_AGGREGATES = "min,max,avg,last,count"


def _recorder(request: web.Request) -> Recorder:
    return request.app[GATEWAY].recorder


def _flash(request: web.Request) -> str:
    template = _FLASH.get(request.query.get("flash", ""), "")
    item = request.query.get("id", "")
    return template.format(id=item if _CONFIG_ID.match(item) else "")


def _back(flash: str, config_id: str) -> web.Response:
    return redirect(f"/timeseries/configs?{urlencode({'flash': flash, 'id': config_id})}")


def _config_not_found(request: web.Request, config_id: str) -> web.Response:
    message = f"There is no data config with id {config_id!r}."
    return error_page(request, 404, "No such data config", message, back=_CONFIGS, page="timeseries")


def reading(value: float) -> str:
    """A sample's value for people: up to 10 significant digits (``20.59``, ``1234567.5``, ``1e+20``)."""
    return f"{value:.10g}"


def metric_units(recorder: Recorder) -> dict[str, str]:
    """The unit of each metric, as the first data config recording it declares."""
    units: dict[str, str] = {}
    for config in recorder.configs():
        for item in config.fields:
            units.setdefault(item.metric, item.unit)
    return units


# --- data configs ---------------------------------------------------------------------------


def _failures(failures: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted((reason, count) for reason, count in failures.items() if count)


async def configs_page(request: web.Request) -> web.Response:
    recorder = _recorder(request)
    rows = []
    for config in recorder.configs():
        stats = recorder.stats.get(config.id)
        failures = _failures(stats.failures) if stats is not None else []
        rows.append(
            {
                "config": config,
                "messages": stats.messages if stats is not None else 0,
                "points": stats.points if stats is not None else 0,
                "failures": failures,
                "failed": sum(count for _, count in failures),
            }
        )
    context: dict[str, object] = {
        "page": "timeseries",
        "rows": rows,
        "flash": _flash(request),
        "dropped": recorder.dropped,
        "max_queued": recorder.settings.max_queued_messages,
        "write_failures": recorder.write_failures,
        "lost_points": recorder.lost_points,
        "last_flush_error": recorder.last_flush_error,
    }
    return render(request, "ts_configs.html", context)


def _config_form(
    request: web.Request, form: Form, *, config: DataConfig | None = None, status: int = 200
) -> web.Response:
    """The add form (no ``config``) or the edit form of ``config``."""
    action = "/timeseries/configs/new" if config is None else f"/timeseries/configs/{config.id}/edit"
    context: dict[str, object] = {
        "page": "timeseries",
        "form": form,
        "config": config,
        "action": action,
        "row_name": row_name,
        "template_form": Form(blank_row(NEW_ROW)),
        "new_row": NEW_ROW,
        "sources": SOURCES,
        "types": TYPES,
        "timestamp_units": TIMESTAMP_UNITS,
    }
    return render(request, "ts_config_form.html", context, status=status)


async def new_config(request: web.Request) -> web.Response:
    return _config_form(request, Form(config_values()))


async def create_config(request: web.Request) -> web.Response:
    config, form = validate_config(values_from_post(await request.post()))
    if config is None:
        return _config_form(request, form, status=400)
    try:
        await _recorder(request).add_config(config)
    except DataConfigExists:
        form.add_error("id", "A data config with this id exists already.")
        return _config_form(request, form, status=409)
    return _back("config-added", config.id)


async def edit_config(request: web.Request) -> web.Response:
    config_id = request.match_info["id"]
    try:
        config = _recorder(request).config(config_id)
    except DataConfigNotFound:
        return _config_not_found(request, config_id)
    return _config_form(request, Form(config_values(config)), config=config)


async def save_config(request: web.Request) -> web.Response:
    config_id = request.match_info["id"]
    recorder = _recorder(request)
    try:
        current = recorder.config(config_id)
        config, form = validate_config(values_from_post(await request.post()), config_id=config_id)
        if config is None:
            return _config_form(request, form, config=current, status=400)
        await recorder.update_config(config)
    except DataConfigNotFound:
        return _config_not_found(request, config_id)
    return _back("config-saved", config_id)


async def delete_config(request: web.Request) -> web.Response:
    """GET, or a POST without ``confirmed=yes`` (no script to ask): the confirmation page."""
    config_id = request.match_info["id"]
    recorder = _recorder(request)
    try:
        config = recorder.config(config_id)
        if request.method != "POST" or (await request.post()).get("confirmed") != "yes":
            return render(request, "ts_config_delete.html", {"page": "timeseries", "config": config})
        await recorder.delete_config(config_id)
    except DataConfigNotFound:
        return _config_not_found(request, config_id)
    return _back("config-deleted", config_id)


# --- series ------------------------------------------------------------------------------------


def series_path(series: Series) -> str:
    return f"/timeseries/series/{series.id}"


def browse_path(metric: str = "", labels: Mapping[str, str] | None = None) -> str:
    """The series browser filtered by ``metric`` and ``labels``."""
    query = {"metric": metric, "labels": format_label_filter(labels or {})}
    text = urlencode({key: value for key, value in query.items() if value})
    return f"/timeseries?{text}" if text else "/timeseries"


async def _series_facts(recorder: Recorder, series: Series, units: Mapping[str, str]) -> dict[str, Any]:
    """What the pages show of a series: its span, sample count and last value."""
    span = await recorder.store.span(series.id)
    last = await recorder.store.last(series.id) if span is not None else None
    return {
        "series": series,
        "unit": units.get(series.metric, ""),
        "samples": span[2] if span is not None else 0,
        "first": moment(span[0] / 1000) if span is not None else None,
        "last": moment(last[0] / 1000) if last is not None else None,
        "last_ms": last[0] if last is not None else None,
        "value": reading(last[1]) if last is not None else None,
    }


async def series_page(request: web.Request) -> web.Response:
    """The series browser: ``?metric=`` and ``?labels=name=value ...`` filter it."""
    recorder = _recorder(request)
    metric = request.query.get("metric", "").strip()[:128]
    labels_text = request.query.get("labels", "").strip()[:1000]
    error = ""
    try:
        labels = parse_label_filter(labels_text)
    except FieldError as exc:
        labels, error = {}, str(exc)
    found = []
    if not error:
        found = await recorder.series(metric=metric or None, labels=labels, limit=SERIES_SHOWN + 1)
    units = metric_units(recorder)
    rows = [await _series_facts(recorder, series, units) for series in found[:SERIES_SHOWN]]
    context: dict[str, object] = {
        "page": "timeseries",
        "rows": rows,
        "more": len(found) > SERIES_SHOWN,
        "metric": metric,
        "labels": labels_text,
        "filtered": bool(metric or labels_text),
        "error": error,
        "metrics": sorted(units),
        "configs": len(recorder.configs()),
        "series_path": series_path,
        "browse_path": browse_path,
    }
    return render(request, "ts_series_list.html", context, status=400 if error else 200)


def _choice(
    request: web.Request, name: str, choices: tuple[Choice, ...], default: Choice
) -> tuple[Choice, str]:
    """The chosen ``name`` of the address, or ``default`` and a note saying why."""
    value = request.query.get(name)
    if value is None:
        return default, ""
    for choice in choices:
        if choice.value == value:
            return choice, ""
    allowed = ", ".join(choice.value for choice in choices)
    return default, f"Unknown {name} {value[:20]!r} (one of {allowed}): showing {default.text}."


def too_fine(step: Choice, span: Choice) -> bool:
    """Whether ``step`` cuts ``span`` into more buckets than the API answers with."""
    return bool(step.ms) and bucket_count(0, span.ms, step.ms) > MAX_BUCKETS


def _csv_links(series_id: int, span: Choice, step: Choice) -> dict[str, str]:
    base = f"/api/timeseries/series/{series_id}"
    window = {"from": f"now-{span.value}", "to": "now"}
    points = window | {"limit": str(MAX_POINTS), "format": "csv"}
    steps = {"step": step.value} if step.ms else {}
    aggregates = window | steps | {"agg": ",".join(AGGREGATES), "format": "csv"}
    return {
        "points": f"{base}/points?{urlencode(points)}",
        "aggregate": f"{base}/aggregate?{urlencode(aggregates)}",
    }


async def chart_page(request: web.Request) -> web.Response:
    """One series: its facts, the chart with range and step pickers, and CSV exports."""
    recorder = _recorder(request)
    text = request.match_info["id"]
    series = await recorder.one_series(int(text)) if text.isdigit() and len(text) < 19 else None
    if series is None:
        message = f"There is no series with id {text!r}."
        return error_page(request, 404, "No such series", message, back=_SERIES, page="timeseries")
    span, range_note = _choice(request, "range", RANGES, DEFAULT_RANGE)
    step, step_note = _choice(request, "step", STEPS, STEPS[0])
    if too_fine(step, span):
        step_note = f"{step.text} steps over {span.text} are more than {MAX_BUCKETS:,} points: showing auto."
        step = STEPS[0]
    facts = await _series_facts(recorder, series, metric_units(recorder))
    recording = [
        config for config in recorder.configs() if series.metric in {f.metric for f in config.fields}
    ]
    context: dict[str, object] = {
        "page": "timeseries",
        **facts,
        "configs": recording,
        "ranges": RANGES,
        "steps": [(choice, too_fine(choice, span)) for choice in STEPS],
        "range": span,
        "step": step,
        "notes": [note for note in (range_note, step_note) if note],
        "csv": _csv_links(series.id, span, step),
        "aggregate_url": f"/api/timeseries/series/{series.id}/aggregate",
        "aggregates": CHART_AGGREGATES,
        "max_buckets": MAX_BUCKETS,
        "browse_path": browse_path,
    }
    return render(request, "ts_series.html", context, status=400 if context["notes"] else 200)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/timeseries", series_page)
    router.add_get("/timeseries/series/{id}", chart_page)
    router.add_get("/timeseries/configs", configs_page)
    router.add_get("/timeseries/configs/new", new_config)
    router.add_post("/timeseries/configs/new", create_config)
    router.add_get("/timeseries/configs/{id}/edit", edit_config)
    router.add_post("/timeseries/configs/{id}/edit", save_config)
    router.add_get("/timeseries/configs/{id}/delete", delete_config)
    router.add_post("/timeseries/configs/{id}/delete", delete_config)
