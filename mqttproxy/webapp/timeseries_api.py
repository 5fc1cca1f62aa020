"""The timeseries REST API: data configs, series, raw points, last values, bucketed aggregates.

Times are Unix milliseconds, RFC 3339 text (``2026-11-25T10:00:00Z``), ``now``
or ``now-<duration>``; durations are ``<n>ms|s|m|h|d|w`` (or bare
milliseconds). Points and aggregates come as JSON or, with ``format=csv``,
as a CSV download.
"""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mqttproxy.timeseries import DataConfig, Recorder, Series
from mqttproxy.timeseries.models import check_label_name
from mqttproxy.timeseries.query import AGGREGATES
from mqttproxy.webapp.api import Route, read_json
from mqttproxy.webapp.errors import ApiError
from mqttproxy.webapp.services import GATEWAY

MAX_BUCKETS = 11_000  # as Prometheus allows per query: more is not a chart, it is a dump
MAX_POINTS = 100_000
DEFAULT_POINTS = 10_000
DEFAULT_RANGE_MS = 3_600_000
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the end of RFC 3339 time
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)?$")


def _recorder(request: web.Request) -> Recorder:
    return request.app[GATEWAY].recorder


# --- parameters -------------------------------------------------------------------------------


def parse_duration(text: str, name: str) -> int:
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ApiError(400, f"{name}: expected a duration such as 500ms, 30s, 5m, 1h or 1d", field=name)
    duration = int(match.group(1)) * _UNITS[match.group(2) or "ms"]
    if duration > MAX_TIME_MS:
        raise ApiError(400, f"{name}: a duration is at most {MAX_TIME_MS} ms", field=name)
    return duration


def parse_time(text: str, name: str, now_ms: int) -> int:
    """Unix milliseconds from a query parameter; 400 naming it unless in 1970..9999."""
    text = text.strip()
    if text.isdigit():
        moment_ms = int(text)
    elif text == "now":
        moment_ms = now_ms
    elif text.startswith("now-"):
        moment_ms = now_ms - parse_duration(text[4:], name)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError(
                400, f"{name}: expected Unix milliseconds, RFC 3339 time, now or now-<duration>", field=name
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment_ms = int(moment.timestamp() * 1000)
    if not 0 <= moment_ms <= MAX_TIME_MS:
        raise ApiError(400, f"{name}: a time between 1970 and the end of 9999", field=name)
    return moment_ms


def _range(request: web.Request) -> tuple[int, int]:
    now_ms = int(time.time() * 1000)
    end = parse_time(request.query.get("to", "now"), "to", now_ms)
    start = (
        parse_time(request.query["from"], "from", now_ms)
        if "from" in request.query
        else end - DEFAULT_RANGE_MS
    )
    if start >= end:
        raise ApiError(400, "from: must be before to", field="from")
    return start, end


def _whole(request: web.Request, name: str, default: int, maximum: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise ApiError(400, f"{name}: expected a whole number from 1 to {maximum}", field=name)
    return int(text)


def _choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str:
    value = request.query.get(name, choices[0])
    if value not in choices:
        raise ApiError(400, f"{name}: expected one of {', '.join(choices)}", field=name)
    return value


async def _series(request: web.Request) -> Series:
    text = request.match_info["id"]
    series = await _recorder(request).one_series(int(text)) if text.isdigit() else None
    if series is None:
        raise ApiError(404, f"no series with id {text!r}")
    return series


def _iso(timestamp_ms: int) -> str:
    return (
        datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _csv(rows: list[list[Any]], header: list[str], filename: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- data configs -----------------------------------------------------------------------------


def _config(recorder: Recorder, config: DataConfig) -> dict[str, Any]:
    body = config.model_dump(mode="json")
    stats = recorder.stats.get(config.id)
    body["stats"] = stats.as_json() if stats is not None else None
    return body


async def list_configs(request: web.Request) -> web.Response:
    recorder = _recorder(request)
    return web.json_response([_config(recorder, config) for config in recorder.configs()])


async def create_config(request: web.Request) -> web.Response:
    recorder = _recorder(request)
    config = DataConfig.model_validate(await read_json(request))
    await recorder.add_config(config)
    return web.json_response(_config(recorder, config), status=201)


async def get_config(request: web.Request) -> web.Response:
    recorder = _recorder(request)
    return web.json_response(_config(recorder, recorder.config(request.match_info["id"])))


async def update_config(request: web.Request) -> web.Response:
    recorder = _recorder(request)
    data = await read_json(request)
    config_id = request.match_info["id"]
    if data.setdefault("id", config_id) != config_id:
        raise ApiError(400, "id: the id of a data config cannot change", field="id")
    data.pop("stats", None)  # what GET returned may be sent back as it is
    recorder.config(config_id)  # 404 before validation errors for an unknown id
    config = DataConfig.model_validate(data)
    await recorder.update_config(config)
    return web.json_response(_config(recorder, config))


async def delete_config(request: web.Request) -> web.Response:
    await _recorder(request).delete_config(request.match_info["id"])
    return web.Response(status=204)


# --- series and samples -----------------------------------------------------------------------


def _label_filter(request: web.Request) -> dict[str, str]:
    labels = {}
    for text in request.query.getall("label", []):
        name, separator, value = text.partition("=")
        if not separator or not name:
            raise ApiError(400, "label: expected name=value", field="label")
        try:
            check_label_name(name)
        except ValueError as exc:
            raise ApiError(400, f"label: {exc}", field="label") from None
        labels[name] = value
    return labels


async def list_series(request: web.Request) -> web.Response:
    found = await _recorder(request).series(
        metric=request.query.get("metric") or None,
        labels=_label_filter(request),
        limit=_whole(request, "limit", 1000, 10_000),
    )
    return web.json_response([series.as_json() for series in found])


async def get_series(request: web.Request) -> web.Response:
    series = await _series(request)
    span = await _recorder(request).store.span(series.id)
    body = series.as_json()
    body.update(
        dict(zip(("first", "last", "samples"), span, strict=True))
        if span
        else {"first": None, "last": None, "samples": 0}
    )
    return web.json_response(body)


async def get_points(request: web.Request) -> web.Response:
    series = await _series(request)
    start, end = _range(request)
    limit = _whole(request, "limit", DEFAULT_POINTS, MAX_POINTS)
    order = _choice(request, "order", ("asc", "desc"))
    output = _choice(request, "format", ("json", "csv"))
    found = await _recorder(request).samples(series.id, start, end)
    pairs = list(zip(found.timestamps, found.values, strict=True))
    if order == "desc":
        pairs.reverse()
    truncated = len(pairs) > limit
    pairs = pairs[:limit]
    if output == "csv":
        rows = [[timestamp, _iso(timestamp), value] for timestamp, value in pairs]
        return _csv(rows, ["timestamp_ms", "time", "value"], f"{series.metric}-{series.id}.csv")
    return web.json_response(
        {
            "series": series.as_json(),
            "from": start,
            "to": end,
            "points": [list(pair) for pair in pairs],
            "truncated": truncated,
        }
    )


async def get_last(request: web.Request) -> web.Response:
    series = await _series(request)
    last = await _recorder(request).store.last(series.id)
    if last is None:
        raise ApiError(404, f"series {series.id} has no samples")
    return web.json_response({"series": series.as_json(), "timestamp": last[0], "value": last[1]})


async def get_aggregate(request: web.Request) -> web.Response:
    series = await _series(request)
    start, end = _range(request)
    step = parse_duration(request.query["step"], "step") if "step" in request.query else None
    if step is None:
        step = max(1000, -(-(end - start) // 300))  # about 300 buckets: a chart's worth
    buckets = Recorder.bucket_count(start, end, step)
    if buckets > MAX_BUCKETS:
        raise ApiError(
            400,
            f"step: {buckets} buckets in the range, at most {MAX_BUCKETS}: choose a longer step",
            field="step",
        )
    functions = [name.strip() for name in request.query.get("agg", "avg").split(",") if name.strip()]
    unknown = [name for name in functions if name not in AGGREGATES]
    if unknown or not functions:
        raise ApiError(400, f"agg: expected some of {', '.join(AGGREGATES)}", field="agg")
    output = _choice(request, "format", ("json", "csv"))
    result = await _recorder(request).aggregate(
        series.id, start_ms=start, end_ms=end, step_ms=step, functions=functions
    )
    if output == "csv":
        rows = [[at, _iso(at), *(values[name] for name in functions)] for at, values in result]
        return _csv(rows, ["timestamp_ms", "time", *functions], f"{series.metric}-{series.id}-{step}ms.csv")
    return web.json_response(
        {
            "series": series.as_json(),
            "from": start,
            "to": end,
            "step": step,
            "aggregates": functions,
            "buckets": [{"timestamp": at, **values} for at, values in result],
        }
    )


TIMESERIES_ROUTES: list[Route] = [
    Route("GET", "/api/timeseries/configs", list_configs, "Data configs, with what each recorded"),
    Route("POST", "/api/timeseries/configs", create_config, "Add a data config", DataConfig, 201),
    Route("GET", "/api/timeseries/configs/{id}", get_config, "One data config"),
    Route("PUT", "/api/timeseries/configs/{id}", update_config, "Replace a data config", DataConfig),
    Route(
        "DELETE",
        "/api/timeseries/configs/{id}",
        delete_config,
        "Stop recording for a data config (its series stay until their retention)",
        status=204,
    ),
    Route("GET", "/api/timeseries/series", list_series, "Series (?metric=, ?label=name=value, ?limit=)"),
    Route("GET", "/api/timeseries/series/{id}", get_series, "One series, with its first and last sample"),
    Route(
        "GET",
        "/api/timeseries/series/{id}/points",
        get_points,
        "Raw samples (?from=&to=&limit=&order=asc|desc&format=json|csv)",
    ),
    Route("GET", "/api/timeseries/series/{id}/last", get_last, "The newest sample"),
    Route(
        "GET",
        "/api/timeseries/series/{id}/aggregate",
        get_aggregate,
        "Bucketed aggregates (?from=&to=&step=&agg=min,max,avg,sum,count,first,last&format=json|csv)",
    ),
]
