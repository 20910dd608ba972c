"""The live status page (``GET /``): one HTML document with its script and styles
inline, drawing from ``api/status`` every two seconds.

Nothing is fetched from anywhere else (no CDN, no fonts): the page works on a machine
without internet access and tells nobody else it was opened.  The charts are SVG
polylines the script draws; values go into the page as text, never as HTML.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>trigear status</title>
<style>
:root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ee; --bg: #f7f8fb;
        --a: #2f6fde; --b: #1fa37a; --c: #d9485f; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg);
       background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: baseline;
         padding: .8em 1.2em; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.2em; margin: 0; }
header span { color: var(--muted); }
#state.bad { color: var(--c); font-weight: 600; }
main { padding: 1em 1.2em; display: grid; gap: 1em;
       grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
          padding: .6em .9em; overflow: auto; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1em; margin: .2em 0 .5em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .2em .6em .2em 0; border-bottom: 1px solid var(--line);
         white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.totals { display: flex; flex-wrap: wrap; gap: 1.4em; }
.totals b { display: block; font-size: 1.4em; font-variant-numeric: tabular-nums; }
.totals span { color: var(--muted); }
svg { width: 100%; height: 140px; display: block; }
svg text { font-size: 10px; fill: var(--muted); }
.legend { font-size: .9em; color: var(--muted); }
.legend i { display: inline-block; width: .8em; height: .25em; margin: 0 .3em .2em 1em;
            vertical-align: middle; }
.more { color: var(--muted); font-size: .9em; }
.draining { color: var(--c); font-weight: 600; }
</style>
</head>
<body>
<header>
  <h1>trigear</h1>
  <span id="version"></span><span id="store"></span><span id="uptime"></span>
  <span id="connections"></span><span id="draining" class="draining"></span>
  <span id="state">loading...</span>
</header>
<main>
  <section class="wide"><div class="totals" id="totals"></div></section>
  <section><h2>Queue depth and running jobs</h2>
    <svg id="chart-depth" viewBox="0 0 400 140" preserveAspectRatio="none"></svg>
    <div class="legend"><i style="background:var(--a)"></i>queued
      <i style="background:var(--b)"></i>running</div></section>
  <section><h2>Throughput (jobs per second)</h2>
    <svg id="chart-rate" viewBox="0 0 400 140" preserveAspectRatio="none"></svg>
    <div class="legend"><i style="background:var(--a)"></i>submitted
      <i style="background:var(--b)"></i>completed
      <i style="background:var(--c)"></i>failed</div></section>
  <section class="wide"><h2>Functions</h2>
    <table id="functions"><thead><tr><th>function</th><th class="n">queued</th>
      <th class="n">high</th><th class="n">normal</th><th class="n">low</th>
      <th class="n">running</th><th class="n">workers</th><th class="n">completed</th>
      <th class="n">failed</th></tr></thead><tbody></tbody></table>
    <div class="more" id="functions-more"></div></section>
  <section><h2>Workers</h2>
    <table id="workers"><thead><tr><th>address</th><th>client id</th>
      <th>functions</th><th class="n">running</th><th>state</th></tr></thead>
      <tbody></tbody></table>
    <div class="more" id="workers-more"></div></section>
  <section><h2>Running jobs</h2>
    <table id="running"><thead><tr><th>handle</th><th>function</th><th>worker</th>
      <th class="n">seconds</th><th class="n">progress</th></tr></thead>
      <tbody></tbody></table>
    <div class="more" id="running-more"></div></section>
  <section class="wide"><h2>Recent failures</h2>
    <table id="failures"><thead><tr><th>time</th><th>function</th><th>handle</th>
      <th>kind</th><th>text</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";

function rows(id, items, cells, key) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const item of items) {
    const tr = document.createElement("tr");
    if (key) tr.dataset.name = item[key];
    for (const [value, cls] of cells(item)) {
      const td = document.createElement("td");
      td.textContent = value;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function more(id, n, what) {
  $(id).textContent = n > 0 ? "and " + n + " more " + what : "";
}

function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }

function chart(id, history, keys, colors) {
  const svg = $(id);
  svg.replaceChildren();
  const W = 400, H = 140, top = 12, bottom = 128;
  let max = 1;
  for (const h of history) for (const k of keys) max = Math.max(max, h[k]);
  const t0 = history.length ? history[0].t : 0;
  const t1 = history.length ? history[history.length - 1].t : 1;
  const span = Math.max(t1 - t0, 1);
  const grid = document.createElementNS(NS, "line");
  for (const [y, label] of [[top, max], [bottom, 0]]) {
    const g = grid.cloneNode();
    g.setAttribute("x1", 0); g.setAttribute("x2", W);
    g.setAttribute("y1", y); g.setAttribute("y2", y);
    g.setAttribute("stroke", "#e3e6ee");
    svg.appendChild(g);
    const text = document.createElementNS(NS, "text");
    text.setAttribute("x", 2); text.setAttribute("y", y - 2);
    text.textContent = Number.isInteger(label) ? label : label.toFixed(1);
    svg.appendChild(text);
  }
  keys.forEach((k, i) => {
    const line = document.createElementNS(NS, "polyline");
    const points = history.map((h) =>
      ((h.t - t0) / span * W).toFixed(1) + "," +
      (bottom - h[k] / max * (bottom - top)).toFixed(1));
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colors[i]);
    line.setAttribute("stroke-width", 1.5);
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.dataset.series = k;
    svg.appendChild(line);
  });
}

function show(s) {
  $("version").textContent = "version " + s.server.version;
  $("store").textContent = "store: " + s.server.store;
  $("uptime").textContent = "up " + Math.round(s.server.uptime) + " s";
  $("connections").textContent = s.server.connections + " connections";
  $("draining").textContent = s.server.draining ? "draining" : "";
  const totals = $("totals");
  totals.replaceChildren();
  for (const [k, v] of Object.entries(s.totals)) {
    const div = document.createElement("div");
    const b = document.createElement("b");
    b.id = "total-" + k;
    b.textContent = v;
    const span = document.createElement("span");
    span.textContent = k.replace("_", " ");
    div.append(b, span);
    totals.appendChild(div);
  }
  rows("functions", s.functions, (f) => [[f.name], [f.queued, "n queued"],
    [f.high, "n"], [f.normal, "n"], [f.low, "n"], [f.running, "n running"],
    [f.workers, "n workers"], [f.completed, "n completed"], [f.failed, "n failed"]], "name");
  more("functions-more", s.more_functions, "functions");
  rows("workers", s.workers, (w) => [[w.ip], [w.client_id],
    [w.functions.join(", ") + (w.more_functions ? " +" + w.more_functions : "")],
    [w.running, "n"], [w.sleeping ? "sleeping" : "awake"]]);
  more("workers-more", s.more_workers, "workers");
  rows("running", s.running, (r) => [[r.handle], [r.function], [r.worker],
    [r.seconds.toFixed(1), "n"],
    [r.progress[1] ? r.progress[0] + "/" + r.progress[1] : "", "n"]], "handle");
  more("running-more", s.more_running, "running jobs");
  rows("failures", s.failures, (f) => [[clock(f.at)], [f.function], [f.handle],
    [f.kind], [f.text]]);
  chart("chart-depth", s.history, ["queued", "running"], ["#2f6fde", "#1fa37a"]);
  chart("chart-rate", s.history, ["submitted", "completed", "failed"],
    ["#2f6fde", "#1fa37a", "#d9485f"]);
  $("state").textContent = "updated " + clock(Date.now() / 1000);
  $("state").className = "";
  document.body.dataset.updates = (Number(document.body.dataset.updates || 0) + 1);
}

async function refresh() {
  try {
    const response = await fetch("api/status", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    show(await response.json());
  } catch (error) {
    $("state").textContent = "not updating: " + error.message;
    $("state").className = "bad";
  }
  setTimeout(refresh, 2000);
}
refresh();
</script>
</body>
</html>
"""
