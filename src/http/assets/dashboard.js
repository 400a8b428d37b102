// rdebug's dashboard: charts rdebug's JSON records, live from /debug/rdebug/history or from a
// log captured with RDEBUG=...,format=json. One parser and one chart table serve both.
"use strict";
(function () {
  /** Seconds of live history kept in the page. */
  const KEEP_S = 600;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  const sum = (a) => a.reduce((x, y) => x + y, 0);

  // Each series: the record type it is read from, its value, and how records of one instant
  // combine (several runtimes: "sum"; the process's figure repeated per runtime: "max").
  // Series with `points` are marks at allocator cycles. A series with `marks` is also drawn as a
  // vertical dashed line across the chart at each of its points (the stalls: a tick whose
  // `stalls`, the STALL lines of that second, is not 0; the point's height is their number).
  const CHARTS = [
    { id: "workers", title: "Workers", unit: "count", series: [
      { label: "busy, mean over 1 s", type: "tick", value: (r) => r.busy_workers },
      { label: "busy at the sample", type: "sched", value: (r) => r.workers - r.idle_workers, agg: "sum" },
      { label: "workers", type: "sched", value: (r) => r.workers, agg: "sum" },
      { label: "stalls in the second", type: "tick", value: (r) => (r.stalls > 0 ? r.stalls : null),
        points: true, marks: true, color: "#e6007e" },
      // A captured log has no ticks but a record per STALL line, at the moment it was printed
      // (the live history has ticks only, so no stall is marked twice).
      { label: "STALL lines", type: "stall", value: () => 1, agg: "sum",
        points: true, marks: true, color: "#e6007e" },
    ] },
    // How long each stall held its worker, once its poll ended (its STALL-END line).
    { id: "stalls", title: "Stall lengths", unit: "ms", series: [
      { label: "longest stall ended in the second", type: "tick", value: (r) => r.stall_ms ?? null,
        points: true, color: "#e6007e" },
      { label: "STALL-END lines", type: "stall_end", value: (r) => r.lasted_ms, points: true,
        color: "#e6007e" },
    ] },
    { id: "tasks", title: "Tasks alive", unit: "count", series: [
      { label: "tasks", type: "sched", value: (r) => r.tasks, agg: "sum" },
    ] },
    { id: "queues", title: "Run queues", unit: "count", series: [
      { label: "global queue", type: "sched", value: (r) => r.global_queue_depth, agg: "sum" },
      { label: "local queues (sum)", type: "sched", agg: "sum",
        value: (r) => (r.per_worker ? sum(r.per_worker.map((w) => w.local_queue_depth || 0)) : null) },
    ] },
    { id: "threads", title: "Threads", unit: "count", series: [
      { label: "OS threads", type: "sched", value: (r) => r.threads, agg: "max" },
      { label: "blocking pool", type: "sched", value: (r) => r.blocking_threads, agg: "sum" },
    ] },
    { id: "heap", title: "Heap", unit: "bytes", series: [
      { label: "live", type: "tick", value: (r) => r.heap_alloc },
      { label: "footprint", type: "tick", value: (r) => r.footprint },
      { label: "goal", type: "tick", value: (r) => r.next_gc },
      { label: "gc: live", type: "gc", value: (r) => r.live, points: true },
      { label: "gc: footprint after", type: "gc", value: (r) => r.after, points: true },
      { label: "gc: goal", type: "gc", value: (r) => r.goal || null, points: true },
    ] },
    { id: "cpu", title: "CPU, % of one core", unit: "percent", series: [
      { label: "allocator", type: "tick", value: (r) => r.alloc_cpu },
      { label: "process", type: "tick", value: (r) => r.process_cpu },
      { label: "gc: allocator, mean since start", type: "gc", points: true,
        value: (r) => r.cpu_fraction * (r.procs || 1) * 100 },
    ] },
    { id: "rss", title: "Resident set size", unit: "bytes", series: [
      { label: "RSS", type: "tick", value: (r) => r.rss },
      { label: "gcdetail: RSS", type: "gcdetail", value: (r) => r.rss, points: true },
    ] },
  ];

  const $ = (id) => document.getElementById(id);
  const statusLine = $("status");
  const main = $("charts");
  const plots = new Map();
  /** What the page shows, for people reading the DOM (and rdebug's browser test); `marks`: per
   * chart, the vertical marks its last drawing put on the canvas (absent until it drew). */
  const state = { mode: "live", updates: 0, newest_ms: [], records: 0, charts: {}, marks: {} };

  function say(text, error) {
    statusLine.textContent = text;
    statusLine.className = error ? "error" : "";
  }

  /** rdebug's JSON records in `text`; other lines (the program's own output) are skipped. */
  function parse(text) {
    const out = [];
    for (const line of text.split("\n")) {
      const at = line.indexOf("{");
      if (at < 0) continue;
      try {
        const r = JSON.parse(line.slice(at));
        if (r && typeof r.type === "string") out.push(r);
      } catch (e) { /* not a record */ }
    }
    return out;
  }

  /** When a record was taken, ms since init. */
  function msOf(r) {
    if (typeof r.ms === "number") return r.ms;
    if (typeof r.at_ms === "number") return r.at_ms;
    return null;
  }

  /** uPlot's columns for one chart: x (s) and one array per series, null where absent. */
  function columns(chart, records, gcAt) {
    const rows = new Map();
    chart.series.forEach((s, i) => {
      for (const r of records) {
        if (r.type !== s.type) continue;
        const ms = r.type === "gcdetail" ? gcAt.get(r.num) : msOf(r);
        const v = s.value(r);
        if (ms == null || v == null || !Number.isFinite(v)) continue;
        let row = rows.get(ms);
        if (!row) {
          row = new Array(chart.series.length).fill(null);
          rows.set(ms, row);
        }
        const old = row[i];
        row[i] = old == null ? v : s.agg === "sum" ? old + v : Math.max(old, v);
      }
    });
    const xs = [...rows.keys()].sort((a, b) => a - b);
    return [xs.map((ms) => ms / 1000), ...chart.series.map((_, i) => xs.map((ms) => rows.get(ms)[i]))];
  }

  function formatValue(unit, v) {
    if (v == null) return "";
    if (unit === "bytes") {
      const mib = v / 1048576;
      return mib >= 10 ? mib.toFixed(0) + " MiB" : mib.toFixed(1) + " MiB";
    }
    if (unit === "percent") return v.toFixed(1) + "%";
    if (unit === "ms") return Math.round(v) + " ms";
    return Number.isInteger(v) ? String(v) : v.toFixed(2);
  }

  /** uPlot's draw hook: the vertical marks of the chart's `marks` series, counted in `state`. */
  function drawMarks(chart, u) {
    let drawn = 0;
    const { left, top, width, height } = u.bbox;
    const ctx = u.ctx;
    chart.series.forEach((s, i) => {
      if (!s.marks) return;
      ctx.save();
      ctx.strokeStyle = s.color || COLORS[i % COLORS.length];
      ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      u.data[0].forEach((x, k) => {
        if (u.data[i + 1][k] == null) return;
        const px = Math.round(u.valToPos(x, "x", true));
        if (px < left || px > left + width) return;
        ctx.moveTo(px, top);
        ctx.lineTo(px, top + height);
        drawn += 1;
      });
      ctx.stroke();
      ctx.restore();
    });
    state.marks[chart.id] = drawn;
    document.body.dataset.state = JSON.stringify(state);
  }

  function options(chart, width) {
    return {
      title: chart.title,
      width,
      height: 260,
      scales: { x: { time: false } },
      axes: [
        { label: "s since start" },
        { size: 70, values: (u, splits) => splits.map((v) => formatValue(chart.unit, v)) },
      ],
      series: [
        { label: "s" },
        ...chart.series.map((s, i) => {
          const color = s.color || COLORS[i % COLORS.length];
          const base = { label: s.label, stroke: color, value: (u, v) => formatValue(chart.unit, v) };
          return s.points
            ? { ...base, paths: () => null, points: { show: true, size: 7, fill: color } }
            : { ...base, width: 1.5, spanGaps: true, points: { show: false } };
        }),
      ],
      hooks: chart.series.some((s) => s.marks) ? { draw: [(u) => drawMarks(chart, u)] } : {},
    };
  }

  function chartWidth(section) {
    return Math.max(320, section.clientWidth - 16);
  }

  function summary(data, chart) {
    const series = {};
    let points = 0;
    chart.series.forEach((s, i) => {
      const vals = data[i + 1].filter((v) => v != null);
      points += vals.length;
      series[s.label] = {
        n: vals.length,
        distinct: new Set(vals).size,
        min: vals.length ? Math.min(...vals) : null,
        max: vals.length ? Math.max(...vals) : null,
        last: vals.length ? vals[vals.length - 1] : null,
      };
    });
    return { points, xs: data[0].length, first_s: data[0][0] ?? null, last_s: data[0][data[0].length - 1] ?? null, series };
  }

  function draw(records) {
    const gcAt = new Map();
    for (const r of records) if (r.type === "gc") gcAt.set(r.num, r.at_ms);
    for (const chart of CHARTS) {
      const data = columns(chart, records, gcAt);
      let section = document.querySelector(`section[data-chart="${chart.id}"]`);
      if (!section) {
        section = document.createElement("section");
        section.className = "chart";
        section.dataset.chart = chart.id;
        main.appendChild(section);
      }
      const has = data.slice(1).some((col) => col.some((v) => v != null));
      let plot = plots.get(chart.id);
      if (!has) {
        if (plot) { plot.destroy(); plots.delete(chart.id); }
        delete state.marks[chart.id];
        section.innerHTML = "";
        const p = document.createElement("p");
        p.className = "none";
        p.textContent = `${chart.title}: no records with these figures yet.`;
        section.appendChild(p);
      } else if (plot) {
        plot.setData(data);
      } else {
        section.innerHTML = "";
        plot = new uPlot(options(chart, chartWidth(section)), data, section);
        plots.set(chart.id, plot);
      }
      const s = summary(data, chart);
      section.dataset.points = String(s.points);
      state.charts[chart.id] = s;
    }
    state.records = records.length;
    document.body.dataset.state = JSON.stringify(state);
  }

  // Live: the whole history first, then each new tick (the server holds the request until one
  // comes, up to 2 s).
  let live = true;
  let since = null;
  // With RDEBUG_HTTP_TOKEN set, the page is opened as /debug/rdebug?token=... and passes it on.
  const token = new URLSearchParams(location.search).get("token");
  let records = [];

  async function poll() {
    if (!live) return;
    let wait = 200;
    try {
      const query = new URLSearchParams();
      if (since != null) query.set("since", since);
      if (token) query.set("token", token);
      const q = query.toString();
      const url = "/debug/rdebug/history" + (q ? `?${q}` : "");
      const res = await fetch(url, { cache: "no-store" });
      const text = await res.text();
      if (!res.ok) throw new Error(`${res.status}: ${text.trim()}`);
      const fresh = parse(text);
      if (live && fresh.length) {
        for (const r of fresh) {
          if (r.type === "tick" && (since == null || r.ms > since)) since = r.ms;
        }
        records = records.concat(fresh);
        const oldest = since - KEEP_S * 1000;
        records = records.filter((r) => (msOf(r) ?? since) >= oldest);
        state.updates += 1;
        state.newest_ms.push(since);
        if (state.newest_ms.length > 30) state.newest_ms.shift();
        draw(records);
      }
      say(`live: ${(since / 1000).toFixed(0)} s since start, ${records.length} records`);
    } catch (e) {
      say(`cannot read /debug/rdebug/history (${e.message}); retrying`, true);
      wait = 2000;
    }
    if (live) setTimeout(poll, wait);
  }

  /** Charts a captured log instead of the live history. */
  function openLog(name, text) {
    live = false;
    state.mode = "log";
    const recs = parse(text);
    draw(recs);
    $("live").hidden = false;
    say(`${name}: ${recs.length} records` + (recs.length ? "" : " (no rdebug JSON lines: was it RDEBUG=...,format=json?)"), !recs.length);
  }

  $("log").addEventListener("change", (ev) => {
    const file = ev.target.files && ev.target.files[0];
    if (file) file.text().then((text) => openLog(file.name, text));
  });

  $("live").addEventListener("click", () => {
    $("live").hidden = true;
    $("log").value = "";
    state.mode = "live";
    live = true;
    draw(records);
    poll();
  });

  window.addEventListener("resize", () => {
    for (const chart of CHARTS) {
      const plot = plots.get(chart.id);
      const section = document.querySelector(`section[data-chart="${chart.id}"]`);
      if (plot && section) plot.setSize({ width: chartWidth(section), height: 260 });
    }
  });

  draw([]);
  // A small log can also travel in the address: /debug/rdebug#log=<the lines, URL-encoded>
  // (the fragment never leaves the browser).
  if (location.hash.startsWith("#log=")) {
    let text = "";
    try { text = decodeURIComponent(location.hash.slice(5)); } catch (e) { /* charted as empty */ }
    openLog("the log in the address", text);
  } else {
    poll();
  }
})();
