// mqttproxy dashboard: live figures from the event stream, the throughput chart,
// form helpers. Plain ES2020, no build step, no dependencies. Every page works
// without it; it only adds live updates and conveniences.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const SVG = "http://www.w3.org/2000/svg";

  /** The session's CSRF token: sent as X-CSRF-Token with every request that changes something. */
  const csrfToken = () => $('meta[name="csrf-token"]')?.content ?? "";

  const integers = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const format = {
    int: (value) => integers.format(Number(value) || 0),
    rate: (value) => (Number(value) || 0).toFixed(1),
    text: (value) => (value === null || value === undefined ? "" : String(value)),
  };

  const setText = (element, text) => {
    if (element && element.textContent !== text) element.textContent = text;
  };

  const lookup = (object, path) =>
    path.split(".").reduce((value, key) => (value === null || value === undefined ? undefined : value[key]), object);

  /** "45 s", "12 min", "3 h 5 min", "2 d 4 h": the same as pages.duration. */
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return `${seconds} s`;
    let minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min`;
    let hours = Math.floor(minutes / 60);
    minutes %= 60;
    if (hours < 24) return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
    const days = Math.floor(hours / 24);
    hours %= 24;
    return hours ? `${days} d ${hours} h` : `${days} d`;
  }

  function drops(status) {
    const entries = Object.entries(status.dropped || {}).filter(([, count]) => count);
    entries.sort(([a], [b]) => a.localeCompare(b));
    return {
      total: entries.reduce((sum, [, count]) => sum + count, 0),
      detail: entries.map(([reason, count]) => `${reason}: ${format.int(count)}`).join(", "),
    };
  }

  function toLogin() {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }

  // --- live status --------------------------------------------------------------------

  function updateBrokerRow(row, broker, rate) {
    const field = (name) => $(`[data-field="${name}"]`, row);
    const badge = field("state");
    if (badge) {
      badge.className = `badge badge-${broker.state}`;
      setText(badge, broker.state);
    }
    row.dataset.state = broker.state;
    setText(field("name"), broker.name);
    setText(field("id"), broker.id);
    if (broker.address) setText(field("address"), broker.address);
    setText(field("last_error"), broker.last_error || "");
    setText(field("forwarded"), format.int(broker.forwarded));
    setText(field("queue_depth"), format.int(broker.queue_depth));
    const dropped = drops(broker);
    const dropCell = field("drops");
    if (dropCell) {
      setText(dropCell, format.int(dropped.total));
      dropCell.title = dropped.detail;
    }
    if (rate) setText(field("rate"), format.rate(rate.forwarded));
    setText(field("toggle"), broker.enabled ? "Pause" : "Resume");
  }

  /** Brokers added or removed elsewhere appear and go; the rest are updated in place. */
  function syncBrokerRows(body, status) {
    const template = $("template[data-broker-template]", body.closest(".table-wrap") || document);
    const rates = (status.rates && status.rates.brokers) || {};
    const rows = new Map($$("tr[data-broker]", body).map((row) => [row.dataset.broker, row]));
    let previous = null;
    for (const broker of status.brokers || []) {
      let row = rows.get(broker.id);
      rows.delete(broker.id);
      if (!row && template) {
        row = template.content.firstElementChild.cloneNode(true);
        for (const element of [row, ...$$("*", row)]) {
          for (const attribute of Array.from(element.attributes)) {
            if (attribute.value.includes("__ID__")) {
              element.setAttribute(attribute.name, attribute.value.split("__ID__").join(broker.id));
            }
          }
        }
      }
      if (!row) continue;
      const anchor = previous ? previous.nextElementSibling : body.firstElementChild;
      if (row !== anchor) body.insertBefore(row, anchor);
      updateBrokerRow(row, broker, rates[broker.id]);
      previous = row;
    }
    for (const row of rows.values()) row.remove();
    const empty = $("[data-empty-row]", body);
    if (empty) empty.hidden = (status.brokers || []).length > 0;
  }

  function applyStatus(status) {
    const brokers = status.brokers || [];
    status.derived = {
      upstreams: brokers.length,
      upstreams_connected: brokers.filter((broker) => broker.state === "connected").length,
    };
    for (const element of $$("[data-live]")) {
      const value = lookup(status, element.dataset.live);
      if (value !== undefined) setText(element, (format[element.dataset.format] || format.text)(value));
    }
    const health = $("[data-live-health]");
    if (health) {
      health.className = `badge ${status.healthy ? "badge-connected" : "badge-error"}`;
      setText(health, status.healthy ? "serving" : "down");
    }
    for (const body of $$("[data-broker-rows]")) syncBrokerRows(body, status);
  }

  /** One EventSource per page that shows live figures (it has the indicator in its header). */
  function startLive() {
    const indicator = $("[data-live-indicator]");
    if (!indicator || !window.EventSource) return;
    const show = (state, text) => {
      indicator.dataset.state = state;
      setText($("[data-live-text]", indicator), text);
    };
    let source = null;
    let retry = null;
    const connect = () => {
      retry = null;
      source = new EventSource("/api/events");
      source.addEventListener("open", () => show("live", "live"));
      source.addEventListener("status", (event) => {
        let status;
        try {
          status = JSON.parse(event.data);
        } catch {
          return;
        }
        show("live", "live");
        applyStatus(status);
        document.dispatchEvent(new CustomEvent("mqttproxy:status", { detail: status }));
      });
      source.addEventListener("error", () => {
        if (source.readyState !== EventSource.CLOSED) {
          show("error", "reconnecting…");
          return;
        }
        // Refused (logged out?) or the gateway is gone: find out which, then try again.
        show("error", "offline");
        fetch("/api/status", { headers: { Accept: "application/json" } })
          .then((response) => {
            if (response.status === 401) toLogin();
          })
          .catch(() => {});
        retry = setTimeout(connect, 5000);
      });
    };
    connect();
    window.addEventListener("pagehide", () => {
      if (source) source.close();
      if (retry) clearTimeout(retry);
    });
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) connect();
    });
  }

  // --- the throughput chart ------------------------------------------------------------

  const SERIES = [
    { key: "in", label: "In" },
    { key: "out", label: "Out" },
    { key: "forwarded", label: "Forwarded" },
  ];

  /** 1, 2, 2.5 or 5 times a power of ten, at least ``value``. */
  function niceStep(value) {
    const power = 10 ** Math.floor(Math.log10(value));
    const fraction = value / power;
    const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5 : 10;
    return nice * power;
  }

  function axisLabel(value) {
    if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
    if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
    return `${+value.toFixed(2)}`;
  }

  function svg(name, attributes, parent) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    if (parent) parent.appendChild(element);
    return element;
  }

  /** Messages per second in, out and forwarded: /api/rates, then one sample per status event. */
  class ThroughputChart {
    constructor(root) {
      this.root = root;
      this.svg = $("svg", root);
      this.tip = $(".chart-tip", root);
      this.window = Number(root.dataset.window) || 300;
      this.samples = [];
      this.pointerX = null;
      this.layout = null;
      if (window.ResizeObserver) new ResizeObserver(() => this.render()).observe(this.svg);
      this.svg.addEventListener("pointermove", (event) => {
        this.pointerX = event.clientX - this.svg.getBoundingClientRect().left;
        this.renderCursor();
      });
      this.svg.addEventListener("pointerleave", () => {
        this.pointerX = null;
        this.renderCursor();
      });
    }

    async load() {
      try {
        const response = await fetch("/api/rates", { headers: { Accept: "application/json" } });
        if (response.status === 401) return toLogin();
        if (!response.ok) return undefined;
        const history = await response.json();
        const last = history.length ? history[history.length - 1].time : -Infinity;
        // Keep what the event stream delivered while the history was on its way.
        this.samples = history.concat(this.samples.filter((sample) => sample.time > last));
        this.trim();
      } catch {
        // The event stream fills the chart anyway.
      }
      this.render();
      return undefined;
    }

    push(sample) {
      if (!sample || typeof sample.time !== "number") return;
      const last = this.samples[this.samples.length - 1];
      if (last && sample.time <= last.time) return;
      this.samples.push(sample);
      this.trim();
      this.render();
    }

    trim() {
      if (!this.samples.length) return;
      const start = this.samples[this.samples.length - 1].time - this.window;
      const first = this.samples.findIndex((sample) => sample.time >= start);
      if (first > 0) this.samples.splice(0, first);
    }

    render() {
      const box = this.svg.getBoundingClientRect();
      const width = Math.round(box.width);
      const height = Math.round(box.height);
      if (!width || !height) return;
      this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      this.svg.replaceChildren();
      const samples = this.samples;
      this.root.dataset.points = String(samples.length);
      if (samples.length >= 2) this.root.dataset.hasPoints = "";
      else delete this.root.dataset.hasPoints;

      const maximum = Math.max(1, ...samples.flatMap((sample) => SERIES.map(({ key }) => sample[key] || 0)));
      const step = niceStep(maximum / 4);
      const top = Math.ceil(maximum / step) * step;
      const left = Math.max(28, 8 + 7 * axisLabel(top).length);
      const plot = { left, right: width - 10, top: 10, bottom: height - 24 };
      const end = samples.length ? samples[samples.length - 1].time : Date.now() / 1000;
      const start = end - this.window;
      const x = (time) => plot.left + ((time - start) / this.window) * (plot.right - plot.left);
      const y = (value) => plot.bottom - (value / top) * (plot.bottom - plot.top);
      this.layout = { plot, x, y, start, end };

      const axes = svg("g", { class: "axes" }, this.svg);
      for (let value = 0; value <= top + step / 2; value += step) {
        svg("line", { class: "grid-line", x1: plot.left, x2: plot.right, y1: y(value), y2: y(value) }, axes);
        const label = svg("text", { class: "axis-label", x: plot.left - 6, y: y(value) + 4, "text-anchor": "end" }, axes);
        label.textContent = axisLabel(value);
      }
      const minuteEvery = plot.right - plot.left < 320 ? 2 : 1;
      for (let minute = 0; minute <= this.window / 60; minute += minuteEvery) {
        const anchor = minute === 0 ? "end" : minute * 60 >= this.window ? "start" : "middle";
        const label = svg(
          "text",
          { class: "axis-label", x: x(end - minute * 60), y: height - 6, "text-anchor": anchor },
          axes,
        );
        label.textContent = minute === 0 ? "now" : `−${minute} min`;
      }

      if (samples.length >= 2) {
        // A gap in the samples (the stream was down) breaks the lines.
        const segments = [];
        let current = [];
        samples.forEach((sample, index) => {
          if (index && sample.time - samples[index - 1].time > 5) {
            segments.push(current);
            current = [];
          }
          current.push(sample);
        });
        segments.push(current);
        const path = (key) =>
          segments
            .map((segment) =>
              segment
                .map((sample, index) => `${index ? "L" : "M"}${x(sample.time).toFixed(1)},${y(sample[key] || 0).toFixed(1)}`)
                .join(""),
            )
            .join("");
        const area = segments
          .filter((segment) => segment.length > 1)
          .map((segment) => {
            const first = x(segment[0].time).toFixed(1);
            const last = x(segment[segment.length - 1].time).toFixed(1);
            const line = segment.map((sample) => `L${x(sample.time).toFixed(1)},${y(sample.in || 0).toFixed(1)}`).join("");
            return `M${first},${plot.bottom}${line}L${last},${plot.bottom}Z`;
          })
          .join("");
        svg("path", { class: "area-in", d: area }, this.svg);
        for (const { key } of [...SERIES].reverse()) {
          svg("path", { class: `series series-${key}`, d: path(key), "data-series": key }, this.svg);
        }
      }
      this.cursor = svg("line", { class: "cursor", y1: plot.top, y2: plot.bottom, visibility: "hidden" }, this.svg);
      this.renderCursor();
    }

    renderCursor() {
      const layout = this.layout;
      if (!layout || !this.cursor || !this.tip) return;
      if (this.pointerX === null || this.samples.length < 2) {
        this.cursor.setAttribute("visibility", "hidden");
        this.tip.hidden = true;
        return;
      }
      let nearest = this.samples[0];
      for (const sample of this.samples) {
        if (Math.abs(layout.x(sample.time) - this.pointerX) < Math.abs(layout.x(nearest.time) - this.pointerX)) {
          nearest = sample;
        }
      }
      const at = layout.x(nearest.time);
      this.cursor.setAttribute("x1", at);
      this.cursor.setAttribute("x2", at);
      this.cursor.setAttribute("visibility", "visible");
      this.tip.replaceChildren();
      const time = document.createElement("div");
      time.textContent = new Date(nearest.time * 1000).toLocaleTimeString();
      this.tip.appendChild(time);
      for (const { key, label } of SERIES) {
        const line = document.createElement("div");
        const name = document.createElement("b");
        name.textContent = label;
        line.append(name, `${format.rate(nearest[key])}/s`);
        this.tip.appendChild(line);
      }
      this.tip.hidden = false;
      const room = layout.plot.right - this.tip.offsetWidth - 4;
      this.tip.style.left = `${Math.max(0, at + 12 > room ? at - this.tip.offsetWidth - 12 : at + 12)}px`;
    }
  }

  function startChart() {
    const root = $("[data-chart]");
    if (!root) return;
    const chart = new ThroughputChart(root);
    document.addEventListener("mqttproxy:status", (event) => chart.push(event.detail.rates));
    chart.load();
  }

  // --- connected clients --------------------------------------------------------------

  function clientRow(client, now) {
    const row = document.createElement("tr");
    const cells = [
      ["Client id", client.client_id, "mono"],
      ["Address", client.address, "mono small"],
      ["User", client.user || "anonymous"],
      ["TLS", client.tls ? "yes" : "no"],
      ["Connected", null],
      ["Session", client.clean_session ? "clean" : "persistent"],
      ["Subscriptions", format.int(client.subscriptions), "num"],
      ["In flight", format.int(client.inflight), "num"],
      ["Queued", format.int(client.queued), "num"],
    ];
    for (const [label, text, className] of cells) {
      const cell = document.createElement("td");
      cell.dataset.label = label;
      if (className) cell.className = className;
      if (text === null) {
        const since = document.createElement("span");
        since.dataset.since = String(client.connected_since);
        since.title = new Date(client.connected_since * 1000).toLocaleString();
        since.textContent = duration(now - client.connected_since);
        cell.appendChild(since);
      } else {
        cell.textContent = text;
      }
      row.appendChild(cell);
    }
    return row;
  }

  function startClients() {
    const body = $("[data-clients-rows]");
    if (!body) return;
    const empty = $("[data-empty-row]", body);
    const refresh = async () => {
      if (document.hidden) return;
      let clients;
      try {
        const response = await fetch("/api/clients", { headers: { Accept: "application/json" } });
        if (response.status === 401) return toLogin();
        if (!response.ok) return undefined;
        clients = await response.json();
      } catch {
        setText($("[data-clients-updated]"), "The gateway does not answer; retrying…");
        return undefined;
      }
      clients.sort((a, b) => String(a.client_id).localeCompare(String(b.client_id)));
      const now = Date.now() / 1000;
      for (const row of $$("tr:not([data-empty-row])", body)) row.remove();
      for (const client of clients) body.insertBefore(clientRow(client, now), empty);
      if (empty) empty.hidden = clients.length > 0;
      setText($("[data-clients-count]"), String(clients.length));
      setText($("[data-clients-updated]"), `Updated ${new Date().toLocaleTimeString()}, every 5 seconds.`);
      return undefined;
    };
    setInterval(refresh, 5000);
    document.addEventListener("visibilitychange", refresh);
  }

  // --- devices ----------------------------------------------------------------------------

  const DEVICE_POLL = 3000; // ms between reads of the page's rows from /api/devices

  function localTime(seconds) {
    const when = new Date(seconds * 1000);
    const element = document.createElement("time");
    element.dateTime = when.toISOString();
    element.textContent = when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    return element;
  }

  /** One row from the device the API returned, or (``device`` undefined) no longer among the rows: offline. */
  function updateDeviceRow(row, device, now) {
    const field = (name) => $(`[data-field="${name}"]`, row);
    const online = Boolean(device && device.online);
    const wasOnline = row.dataset.online === "true";
    row.dataset.online = String(online);
    const badge = field("online");
    if (badge) {
      badge.className = `badge badge-${online ? "online" : "offline"}`;
      setText(badge, online ? "online" : "offline");
    }
    // Presence reaches the database every few seconds: the page's own view of "went offline" counts too.
    if (wasOnline && !online) row.dataset.offlineSince = String(now);
    const seen = field("last_seen");
    if (seen) {
      const last = Math.max((device && device.last_seen) || 0, Number(row.dataset.offlineSince) || 0);
      if (online) {
        setText(seen, "now");
        seen.dataset.shown = "";
      } else if (last && seen.dataset.shown !== String(last)) {
        seen.replaceChildren(localTime(last));
        seen.dataset.shown = String(last);
      }
    }
    if (!device) return;
    if (device.last_address) setText(field("last_address"), device.last_address);
    row.dataset.enabled = String(device.enabled);
    const enabled = field("enabled");
    if (enabled) {
      enabled.className = `badge badge-${device.enabled ? "enabled" : "disabled"}`;
      setText(enabled, device.enabled ? "enabled" : "disabled");
    }
    const toggle = field("toggle-form");
    if (toggle) toggle.setAttribute("action", `/devices/${encodeURIComponent(device.id)}/${device.enabled ? "disable" : "enable"}`);
    setText(field("toggle"), device.enabled ? "Disable" : "Enable");
  }

  /** The device list reads its own rows again every few seconds: online, last seen, enabled. */
  function startDevices() {
    const body = $("[data-device-rows]");
    if (!body || !body.dataset.poll || !$("tr[data-device]", body)) return;
    const status = $("[data-devices-updated]");
    const refresh = async () => {
      if (document.hidden) return undefined;
      let devices;
      try {
        const response = await fetch(body.dataset.poll, { headers: { Accept: "application/json" } });
        if (response.status === 401) return toLogin();
        if (!response.ok) return undefined;
        devices = await response.json();
      } catch {
        setText(status, "The gateway does not answer; retrying…");
        return undefined;
      }
      const byId = new Map(devices.map((device) => [device.id, device]));
      const now = Date.now() / 1000;
      for (const row of $$("tr[data-device]", body)) updateDeviceRow(row, byId.get(row.dataset.device), now);
      setText(status, `Updated ${new Date().toLocaleTimeString()}; online status refreshes every ${DEVICE_POLL / 1000} seconds.`);
      return undefined;
    };
    setInterval(refresh, DEVICE_POLL);
    document.addEventListener("visibilitychange", refresh);
  }

  // --- device shadows ---------------------------------------------------------------------

  const SHADOW_POLL = 3000; // ms between reads of the shown shadow from /api/things/{thing}/shadow

  const pretty = (value) => JSON.stringify(value, null, 2);

  /** Every leaf's time of a shadow's metadata, desired first: the same as shadow_pages.metadata_rows. */
  function metadataRows(metadata) {
    const rows = [];
    const walk = (section, node, path) => {
      if (!node || typeof node !== "object" || Array.isArray(node)) return;
      if (typeof node.timestamp === "number") {
        rows.push({ section, path: path.join("."), timestamp: node.timestamp });
        return;
      }
      for (const [key, child] of Object.entries(node)) walk(section, child, [...path, key]);
    };
    for (const section of ["desired", "reported"]) walk(section, (metadata || {})[section], []);
    return rows;
  }

  function leafRow(leaf) {
    const row = document.createElement("tr");
    const cells = [
      ["Value", leaf.path, "mono"],
      ["Section", leaf.section, ""],
      ["Set", null, ""],
    ];
    for (const [label, text, className] of cells) {
      const cell = document.createElement("td");
      cell.dataset.label = label;
      if (className) cell.className = className;
      if (text === null) cell.appendChild(localTime(leaf.timestamp));
      else cell.textContent = text;
      row.appendChild(cell);
    }
    return row;
  }

  /** The shadow page reads its shadow again every few seconds; the desired form's text is left alone once edited. */
  function startShadow() {
    const root = $("[data-shadow]");
    if (!root || !root.dataset.poll) return;
    const field = (name) => $(`[data-shadow-field="${name}"]`);
    const status = $("[data-shadow-updated]", root);
    const form = $("[data-desired-form]");
    const textarea = form && form.elements.namedItem("desired");
    const version = form && form.elements.namedItem("version");
    const note = form && $("[data-desired-note]", form);
    // What the form's text and version stand for: the desired state the page showed.
    let base = JSON.stringify(JSON.parse(root.dataset.desired || "null")); // as this script writes it
    let shownText = textarea && form.dataset.edited === undefined ? textarea.value : null;
    const edited = () => !textarea || shownText === null || textarea.value !== shownText || document.activeElement === textarea;

    const showPane = (name, value) => {
      const pre = field(name);
      const empty = $(`[data-shadow-empty="${name}"]`, root);
      const has = value !== undefined && value !== null && !(name === "delta" && Object.keys(value).length === 0);
      if (pre) {
        setText(pre, has ? pretty(value) : "");
        pre.hidden = !has;
      }
      if (empty) empty.hidden = has;
    };

    const showSync = (state) => {
      const badge = $("[data-shadow-sync]", root);
      if (!badge) return;
      const look = { "no shadow": "offline", delta: "backoff", "in sync": "online" }[state];
      badge.className = `badge badge-${look}`;
      setText(badge, state);
    };

    const showTime = (name, seconds) => {
      const element = field(name);
      if (!element) return;
      if (!seconds) setText(element, "—");
      else if (element.dataset.shown !== String(seconds)) element.replaceChildren(localTime(seconds));
      element.dataset.shown = seconds ? String(seconds) : "";
    };

    const followForm = (shadow) => {
      if (!form) return;
      const desired = shadow ? shadow.state.desired ?? null : null;
      const now = JSON.stringify(desired);
      const current = shadow ? String(shadow.version) : "";
      if (!edited()) {
        textarea.value = pretty(desired && typeof desired === "object" ? desired : {});
        shownText = textarea.value;
        base = now;
      }
      if (now === base) {
        // Only reported changed (or nothing): the operator's text still applies to this version.
        version.value = current;
        setText(field("expected"), current);
        if (note) note.hidden = true;
      } else if (note) {
        note.textContent = "Desired was changed elsewhere since this page showed it: saving is refused (Version conflict) and shows the shadow as it is now.";
        note.hidden = false;
      }
    };

    const show = (shadow) => {
      root.dataset.exists = String(Boolean(shadow));
      $("[data-shadow-missing]", root).hidden = Boolean(shadow);
      $("[data-shadow-panes]", root).hidden = !shadow;
      $("[data-shadow-metadata]", root).hidden = !shadow;
      const state = (shadow && shadow.state) || {};
      showPane("desired", state.desired);
      showPane("reported", state.reported);
      showPane("delta", state.delta);
      showSync(!shadow ? "no shadow" : state.delta && Object.keys(state.delta).length ? "delta" : "in sync");
      setText(field("version"), shadow ? String(shadow.version) : "—");
      const leaves = shadow ? metadataRows(shadow.metadata) : [];
      showTime("updated", leaves.reduce((latest, leaf) => Math.max(latest, leaf.timestamp), 0));
      showTime("timestamp", shadow ? shadow.timestamp : 0);
      setText(field("leaves"), String(leaves.length));
      const body = $("[data-shadow-leaves]", root);
      if (body) body.replaceChildren(...leaves.map(leafRow));
      followForm(shadow);
    };

    const refresh = async () => {
      if (document.hidden) return undefined;
      let shadow = null;
      try {
        const response = await fetch(root.dataset.poll, { headers: { Accept: "application/json" } });
        if (response.status === 401) return toLogin();
        if (response.ok) shadow = await response.json();
        else if (response.status !== 404) throw new Error(`HTTP ${response.status}`);
      } catch {
        setText(status, "The gateway does not answer; retrying…");
        return undefined;
      }
      show(shadow);
      setText(status, `Updated ${new Date().toLocaleTimeString()}; the shadow refreshes every ${SHADOW_POLL / 1000} seconds.`);
      return undefined;
    };
    setInterval(refresh, SHADOW_POLL);
    document.addEventListener("visibilitychange", refresh);
  }

  // --- forms ------------------------------------------------------------------------------

  /** Forms with data-confirm ask first; the answer is sent as confirmed=yes (without script, a page asks). */
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    if (!form.querySelector('input[name="confirmed"]')) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "confirmed";
      input.value = "yes";
      form.appendChild(input);
    }
  });

  /** GET forms with data-clean-query leave empty fields out of the address (the server reads them as unset). */
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.dataset.cleanQuery === undefined || event.defaultPrevented) return;
    const empty = Array.from(form.elements).filter((element) => element.name && element.value === "" && !element.disabled);
    for (const element of empty) element.disabled = true; // the entry list is built after this event
    setTimeout(() => {
      for (const element of empty) element.disabled = false;
    });
  });

  /** The broker form's values as BrokerSettings JSON (routes left out: a connection test ignores them). */
  function brokerSettings(form) {
    const element = (name) => form.elements.namedItem(name);
    const text = (name) => (element(name) ? element(name).value.trim() : "");
    const checked = (name) => Boolean(element(name) && element(name).checked);
    const number = (name) => {
      const value = text(name);
      return value !== "" && Number.isFinite(Number(value)) ? Number(value) : value;
    };
    const data = {
      name: text("name") || "connection test",
      address: text("address"),
      port: number("port"),
      failover: text("failover")
        .split(/[,\n]/)
        .map((entry) => entry.trim())
        .filter(Boolean),
      client_id_prefix: text("client_id_prefix") || "mqttproxy",
      username: text("username") || null,
      use_tls: checked("use_tls"),
      insecure_skip_verify: checked("insecure_skip_verify"),
      ca_cert_path: text("ca_cert_path") || null,
      client_cert_path: text("client_cert_path") || null,
      client_key_path: text("client_key_path") || null,
      mqtt_version: text("mqtt_version"),
      keepalive: number("keepalive"),
      clean_session: checked("clean_session"),
      max_qos: number("max_qos"),
      queue_max_messages: number("queue_max_messages"),
      queue_max_bytes: number("queue_max_bytes"),
      drop_policy: text("drop_policy"),
      max_inflight: number("max_inflight"),
      ack_timeout: number("ack_timeout"),
      reconnect_min_delay: number("reconnect_min_delay"),
      reconnect_max_delay: number("reconnect_max_delay"),
    };
    const password = element("password") ? element("password").value : "";
    if (password) data.password = password;
    // The API may use the stored password of this broker when none is typed.
    if (form.dataset.brokerId) data.id = form.dataset.brokerId;
    return data;
  }

  function startBrokerForm() {
    const form = $("[data-broker-form]");
    if (!form) return;

    // A new broker's id follows its name until the id is typed in.
    const id = $("[data-id-input]", form);
    const name = $("[data-name-input]", form);
    if (id && name) {
      let follow = id.value === "";
      id.addEventListener("input", () => {
        follow = id.value === "";
      });
      name.addEventListener("input", () => {
        if (!follow) return;
        id.value = name.value
          .toLowerCase()
          .normalize("NFKD")
          .replace(/[^a-z0-9_.-]+/g, "-")
          .replace(/^[^a-z0-9]+|-+$/g, "")
          .slice(0, 64);
      });
    }

    const button = $("[data-test-connection]", form);
    const result = $("[data-test-result]", form);
    if (!button || !result) return;
    const show = (state, message) => {
      result.hidden = false;
      result.dataset.result = state;
      result.textContent = message;
    };
    button.addEventListener("click", async () => {
      const settings = brokerSettings(form);
      const keptPassword =
        form.dataset.hasPassword !== undefined && !settings.password && !form.elements.namedItem("remove_password")?.checked;
      button.disabled = true;
      show("pending", `Connecting to ${settings.address || "…"}…`);
      try {
        const response = await fetch("/api/brokers/test", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
          body: JSON.stringify(settings),
        });
        const body = await response.json().catch(() => null);
        if (response.status === 401) {
          show("failed", "Your session has ended: log in again (the form is not saved).");
        } else if (!response.ok || !body) {
          const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
          show("failed", `Check the settings: ${message}`);
        } else if (body.ok) {
          show("ok", `✓ Connected to ${body.address} in ${body.seconds} s.`);
        } else {
          show("failed", `✗ Could not connect: ${body.message}`);
        }
        if (keptPassword && response.ok) {
          result.append(" (Tested without the stored password: type it in to test with it.)");
        }
      } catch (error) {
        show("failed", `The gateway did not answer: ${error.message}`);
      } finally {
        button.disabled = false;
      }
    });
  }

  /** The tenant form shows the CA box in certificate mode (and whenever it holds something). */
  function startTenantForm() {
    const form = $("[data-tenant-form]");
    const mode = form && form.elements.namedItem("auth_mode");
    const ca = form && $("[data-ca-cert]", form);
    const field = ca && ca.closest(".field");
    if (!mode || !field) return;
    const update = () => {
      field.hidden = mode.value !== "certificate" && ca.value.trim() === "" && !field.classList.contains("has-error");
    };
    mode.addEventListener("change", update);
    update();
  }

  /** The data config form: "Add another field" copies the template's empty row with the next row number. */
  function startFieldRows() {
    const form = $("[data-ts-config-form]");
    const rows = form && $("[data-field-rows]", form);
    const button = form && $("[data-add-field]", form);
    const template = form && $("template[data-field-template]", form);
    if (!rows || !button || !template) return;
    button.hidden = false;
    button.addEventListener("click", () => {
      const next = Math.max(-1, ...$$("[data-field-row]", rows).map((row) => Number(row.dataset.fieldRow))) + 1;
      const row = template.content.firstElementChild.cloneNode(true);
      for (const element of [row, ...$$("*", row)]) {
        for (const attribute of Array.from(element.attributes)) {
          if (attribute.value.includes("__N__")) element.setAttribute(attribute.name, attribute.value.split("__N__").join(String(next)));
        }
      }
      rows.appendChild(row);
      $("input", row).focus();
    });
  }

  function startCopyButtons() {
    for (const button of $$("[data-copy]")) {
      const input = $(button.dataset.copy);
      const status = $("[data-copy-status]");
      if (!input) continue;
      input.addEventListener("focus", () => input.select());
      button.addEventListener("click", async () => {
        input.focus();
        input.select();
        let copied = false;
        try {
          await navigator.clipboard.writeText(input.value);
          copied = true;
        } catch {
          try {
            copied = document.execCommand("copy");
          } catch {
            copied = false;
          }
        }
        setText(status, copied ? "Copied to the clipboard." : "Press Ctrl+C (⌘C on a Mac) to copy the selected token.");
      });
    }
  }

  /** Times rendered in UTC by the server, shown in the browser's time zone. */
  function localTimes() {
    for (const element of $$("time[data-local-time]")) {
      const when = new Date(element.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) continue;
      element.title = element.textContent;
      element.textContent = when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    }
  }

  function tickDurations() {
    const now = Date.now() / 1000;
    for (const element of $$("[data-since]")) {
      const since = Number(element.dataset.since);
      if (since) setText(element, duration(now - since));
    }
  }

  /** A flash message is said once: reloading or bookmarking the page does not repeat it. */
  function forgetFlash() {
    const url = new URL(location.href);
    if (!url.searchParams.has("flash")) return;
    url.searchParams.delete("flash");
    url.searchParams.delete("broker");
    url.searchParams.delete("id");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }

  function start() {
    forgetFlash();
    localTimes();
    startLive();
    startChart();
    startClients();
    startDevices();
    startShadow();
    startBrokerForm();
    startTenantForm();
    startFieldRows();
    startCopyButtons();
    if ($("[data-since]")) setInterval(tickDurations, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
