// mqttproxy dashboard: a series' chart. Reads /api/timeseries/series/{id}/aggregate for the
// range and step picked and draws avg as a line inside a min-max band with uPlot (vendored beside
// this file, see VENDORED.md). Plain ES2020, no build step. Loaded by the series page only.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const REFRESH = { min: 5000, max: 60000 }; // ms between reads: the step, within these bounds

  const setText = (element, text) => {
    if (element && element.textContent !== text) element.textContent = text;
  };

  /** Up to 10 significant digits, like timeseries_pages.reading: 20.59, 1234567.5. */
  const reading = (value) => (value === null || value === undefined ? "—" : String(Number(Number(value).toPrecision(10))));

  const when = (seconds) => new Date(seconds * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });

  function toLogin() {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }

  /** The page's colours (light or dark), for the canvas. */
  function palette() {
    const style = getComputedStyle(document.documentElement);
    const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    return { line: read("--c-in", "#1d5fd6"), text: read("--muted", "#5b6776"), grid: read("--grid", "#e6e9ee") };
  }

  function alpha(hex, opacity) {
    const match = /^#([0-9a-f]{6})$/i.exec(hex);
    if (!match) return hex;
    const value = parseInt(match[1], 16);
    return `rgba(${value >> 16}, ${(value >> 8) & 255}, ${value & 255}, ${opacity})`;
  }

  function median(values) {
    if (!values.length) return 0;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  /**
   * uPlot's columns [time (s), avg, min, max] from the API's buckets (empty ones are left out).
   * Where buckets are missing for longer than twice the usual spacing a null breaks the line:
   * a gap in the data is a gap in the chart, while data sparser than the step stays one line.
   */
  function columns(body) {
    const buckets = body.buckets;
    const spacing = median(buckets.slice(1).map((bucket, index) => bucket.timestamp - buckets[index].timestamp));
    const gap = 2 * Math.max(body.step, spacing);
    const data = [[], [], [], []];
    buckets.forEach((bucket, index) => {
      const previous = buckets[index - 1];
      if (previous && bucket.timestamp - previous.timestamp > gap) {
        data[0].push((previous.timestamp + body.step) / 1000);
        for (const column of data.slice(1)) column.push(null);
      }
      data[0].push(bucket.timestamp / 1000);
      data[1].push(bucket.avg);
      data[2].push(bucket.min);
      data[3].push(bucket.max);
    });
    return data;
  }

  function chartHeight() {
    return window.matchMedia("(max-width: 760px)").matches ? 210 : 300;
  }

  function showNewest(u) {
    const values = u.data[1];
    let index = values.length - 1;
    while (index >= 0 && values[index] === null) index -= 1;
    if (index >= 0) u.setLegend({ idx: index }, false);
  }

  /** The uPlot chart in ``target``; ``view`` holds the range shown (seconds), read at every redraw. */
  function makePlot(target, view, unit) {
    const colors = palette();
    const value = (u, number) => (number === null || number === undefined ? "—" : `${reading(number)}${unit ? ` ${unit}` : ""}`);
    const axis = {
      stroke: colors.text,
      grid: { stroke: colors.grid, width: 1 },
      ticks: { stroke: colors.grid, width: 1 },
    };
    const sparse = (u) => u.data[1].filter((number) => number !== null).length * 10 < u.bbox.width / devicePixelRatio;
    const options = {
      width: target.clientWidth,
      height: chartHeight(),
      scales: {
        x: { time: true, range: () => [view.from, view.to] },
        y: { range: (u, min, max) => (min === null || max === null ? [0, 1] : uPlot.rangeNum(min, max, 0.1, true)) },
      },
      series: [
        { value: (u, seconds) => (seconds === null || seconds === undefined ? "—" : when(seconds)) },
        { label: "avg", stroke: colors.line, width: 2, value, points: { show: sparse, size: 6, fill: colors.line } },
        { label: "min", stroke: alpha(colors.line, 0.45), width: 1, value, points: { show: false } },
        { label: "max", stroke: alpha(colors.line, 0.45), width: 1, value, points: { show: false } },
      ],
      bands: [{ series: [3, 2], fill: alpha(colors.line, 0.14) }],
      axes: [
        axis,
        {
          ...axis,
          size: (u, labels) => (labels ? Math.max(3, ...labels.map((label) => String(label).length)) * 7 + 20 : 40),
        },
      ],
      legend: { live: true },
      // Away from the cursor the legend shows the newest bucket rather than dashes.
      hooks: { setLegend: [(u) => (u.cursor.idx === null || u.cursor.idx === undefined) && showNewest(u)] },
    };
    return new uPlot(options, [[], [], [], []], target);
  }

  function startChart() {
    const root = $("[data-ts-chart]");
    const picker = $("[data-ts-picker]");
    if (!root || !picker || !window.uPlot) return;
    const target = $("[data-ts-plot]", root);
    const empty = $("[data-ts-empty]", root);
    const summary = $("[data-ts-summary]");
    const status = $("[data-ts-status]");
    const ranges = picker.elements.namedItem("range");
    const steps = picker.elements.namedItem("step");
    const unit = root.dataset.unit;
    const maxBuckets = Number(root.dataset.maxBuckets);
    const view = { from: 0, to: 1 };
    const plot = makePlot(target, view, unit);
    root.uplot = plot; // for whoever inspects the page (the browser tests do)
    let timer = null;
    let asked = 0; // requests made: an answer to an older one is dropped

    const ms = (select) => Number(select.selectedOptions[0].dataset.ms);
    const span = () => ranges.value;
    const step = () => steps.value;

    /** Steps that would make more buckets than the API gives are not offered for the range. */
    const fitSteps = () => {
      for (const option of steps.options) {
        const length = Number(option.dataset.ms);
        option.disabled = length > 0 && Math.ceil(ms(ranges) / length) > maxBuckets;
      }
      if (steps.selectedOptions[0].disabled) steps.value = "auto";
    };

    /** The address and the CSV links follow the picks. */
    const remember = () => {
      const url = new URL(location.href);
      url.searchParams.set("range", span());
      url.searchParams.set("step", step());
      history.replaceState(history.state, "", url.pathname + url.search);
      for (const link of $$("[data-csv]")) {
        const href = new URL(link.href);
        href.searchParams.set("from", `now-${span()}`);
        if (link.dataset.csv === "aggregate") {
          if (step() === "auto") href.searchParams.delete("step");
          else href.searchParams.set("step", step());
        }
        link.href = href.pathname + href.search;
      }
    };

    const showEmpty = (body) => {
      const newest = Number(root.dataset.last) || 0;
      let text = "No data in this range.";
      if (newest && newest < body.from) text += ` The newest sample is from ${when(newest / 1000)}: pick a longer range.`;
      else if (!newest) text += " This series has no samples yet.";
      setText(empty, text);
      empty.hidden = false;
    };

    const showSummary = (body) => {
      const buckets = body.buckets;
      const newest = buckets[buckets.length - 1];
      const count = buckets.reduce((sum, bucket) => sum + bucket.count, 0);
      const low = Math.min(...buckets.map((bucket) => bucket.min));
      const high = Math.max(...buckets.map((bucket) => bucket.max));
      const withUnit = (number) => `${reading(number)}${unit ? ` ${unit}` : ""}`;
      summary.replaceChildren();
      const latest = document.createElement("strong");
      latest.dataset.tsLatest = "";
      latest.textContent = withUnit(newest.last);
      summary.append("Latest ", latest, ` · min ${withUnit(low)} · max ${withUnit(high)} · ${count.toLocaleString()} samples in range`);
      summary.hidden = false;
      root.dataset.latest = String(newest.last);
      // The newest sample is at least as new as its bucket: for the empty state of a later range.
      root.dataset.last = String(Math.max(Number(root.dataset.last) || 0, newest.timestamp));
    };

    const draw = (body) => {
      view.from = body.from / 1000;
      view.to = body.to / 1000;
      const data = columns(body);
      plot.setData(data);
      showNewest(plot);
      root.dataset.buckets = String(body.buckets.length);
      root.dataset.samples = String(body.buckets.reduce((sum, bucket) => sum + bucket.count, 0));
      root.dataset.step = String(body.step);
      if (body.buckets.length) {
        root.dataset.state = "ready";
        empty.hidden = true;
        showSummary(body);
      } else {
        root.dataset.state = "empty";
        summary.hidden = true;
        showEmpty(body);
      }
      const every = Math.min(REFRESH.max, Math.max(REFRESH.min, body.step));
      const stepText = body.step >= 60000 ? `${body.step / 60000} min` : `${body.step / 1000} s`;
      setText(status, `Step ${stepText}. Updated ${new Date().toLocaleTimeString()}; refreshes every ${every / 1000} s.`);
      return every;
    };

    const schedule = (every) => {
      clearTimeout(timer);
      timer = setTimeout(() => (document.hidden ? schedule(every) : load()), every);
    };

    const load = async () => {
      clearTimeout(timer);
      const ticket = ++asked;
      const query = new URLSearchParams({ from: `now-${span()}`, to: "now", agg: root.dataset.aggregates });
      if (step() !== "auto") query.set("step", step());
      let response;
      let body;
      try {
        response = await fetch(`${root.dataset.api}?${query}`, { headers: { Accept: "application/json" } });
        if (response.status === 401) return toLogin();
        body = await response.json().catch(() => null);
      } catch {
        if (ticket === asked) {
          setText(status, "The gateway does not answer; retrying…");
          schedule(REFRESH.min);
        }
        return undefined;
      }
      if (ticket !== asked) return undefined;
      if (!response.ok || !body) {
        root.dataset.state = "error";
        const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
        setText(status, `The chart could not be read: ${message}`);
        schedule(REFRESH.max);
        return undefined;
      }
      schedule(draw(body));
      return undefined;
    };

    $("[data-ts-show]", picker).hidden = true; // picks apply at once
    picker.addEventListener("change", () => {
      fitSteps();
      remember();
      load();
    });
    picker.addEventListener("submit", (event) => {
      event.preventDefault();
      load();
    });
    if (window.ResizeObserver) {
      new ResizeObserver(() => {
        const width = target.clientWidth;
        if (width && (width !== plot.width || chartHeight() !== plot.height)) plot.setSize({ width, height: chartHeight() });
      }).observe(target);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) load();
    });
    fitSteps();
    load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startChart);
  else startChart();
})();
