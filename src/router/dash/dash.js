// The router's dashboard: polls data (GET /dashboard/data, built by the router from the
// edges' /metrics, its health checks and its invalidation log) every second and redraws
// plain SVG. Nothing is loaded from anywhere but the router.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TIERS = ["L1", "L2", "REDIS", "PARENT", "ORIGIN"];
const STATE_COLOR = { up: "#2a9d4b", down: "#d62828", unknown: "#8a939c", draining: "#e07b00" };
const Q_COLOR = ["#4c8bf5", "#e07b00", "#d62828"];
const POLL_MS = 1000;

// Rough land outlines (longitude, latitude), enough to place the edges on a world map.
const LAND = [
  // North America
  [[-168,66],[-162,70],[-140,70],[-125,70],[-95,72],[-80,73],[-62,66],[-56,52],[-66,44],
   [-70,42],[-76,35],[-81,31],[-80,25],[-82,29],[-90,30],[-97,27],[-97,21],[-92,18],[-87,21],
   [-88,16],[-83,10],[-79,9],[-86,12],[-92,14],[-105,20],[-112,30],[-117,32],[-124,40],
   [-124,48],[-130,55],[-140,60],[-152,58],[-165,60]],
  // Greenland
  [[-55,60],[-42,60],[-20,70],[-18,80],[-40,83],[-60,82],[-72,78],[-55,70]],
  // South America
  [[-80,9],[-75,11],[-62,11],[-50,0],[-35,-5],[-39,-15],[-41,-22],[-48,-28],[-58,-38],
   [-65,-42],[-68,-52],[-72,-54],[-75,-48],[-73,-38],[-71,-25],[-70,-18],[-76,-14],[-81,-6],
   [-80,0],[-78,7]],
  // Eurasia
  [[-10,36],[-9,43],[-1,46],[-4,48],[2,51],[8,54],[10,57],[5,62],[14,67],[20,70],[30,71],
   [42,67],[60,69],[70,73],[80,73],[100,77],[112,74],[130,71],[150,71],[170,70],[180,66],
   [175,62],[162,58],[156,51],[142,59],[135,55],[140,48],[132,43],[128,39],[126,35],[122,40],
   [118,38],[122,31],[120,24],[110,20],[108,12],[104,9],[100,13],[99,8],[103,1],[98,8],
   [94,16],[90,22],[86,20],[80,15],[77,8],[73,16],[70,22],[66,25],[57,26],[56,24],[52,24],
   [48,30],[50,26],[56,22],[58,20],[52,16],[44,12],[42,16],[35,28],[33,31],[35,36],[30,37],
   [27,37],[26,40],[24,38],[22,37],[20,40],[19,42],[13,45],[16,41],[18,40],[15,38],[12,42],
   [8,44],[3,43],[0,40],[-2,37],[-6,36]],
  // Africa
  [[-17,21],[-16,12],[-8,4],[6,4],[9,4],[9,-1],[13,-6],[12,-17],[15,-27],[18,-34],[26,-34],
   [33,-26],[35,-20],[40,-15],[40,-10],[39,-4],[43,1],[51,11],[43,12],[38,18],[33,27],[32,31],
   [25,32],[20,31],[10,33],[10,37],[0,36],[-6,36],[-10,31],[-13,27]],
  [[44,-25],[47,-25],[50,-15],[49,-12],[44,-17]],                       // Madagascar
  [[114,-22],[114,-34],[118,-35],[124,-33],[131,-31],[138,-35],[141,-38],[147,-38],[150,-37],
   [153,-28],[153,-25],[146,-19],[142,-11],[141,-17],[136,-12],[132,-11],[129,-15],[122,-18]],
  [[130,31],[131,34],[135,34],[140,35],[141,38],[142,41],[140,41],[139,38],[136,37],[133,35]],
  [[-6,50],[1,51],[2,53],[-1,55],[-2,57],[-4,59],[-6,58],[-5,55],[-3,54],[-4,52],[-5,52]],
  [[-24,65],[-18,66],[-13,65],[-18,63],[-22,64]],                        // Iceland
  [[109,2],[117,7],[119,5],[118,1],[116,-4],[110,-3]],                   // Borneo
  [[95,5],[98,4],[104,-2],[106,-6],[101,-3],[96,3]],                     // Sumatra
  [[131,-1],[138,-2],[150,-10],[143,-9],[138,-8]],                       // New Guinea
  [[172,-34],[178,-38],[174,-41],[167,-46],[172,-41]],                   // New Zealand
];

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function text(parent, x, y, s, attrs) {
  const t = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
  t.textContent = s;
  return t;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function fmtSecs(s) {
  if (s === null || s === undefined || isNaN(s)) return "-";
  if (s < 1e-3) return (s * 1e6).toFixed(0) + "us";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 1 : 0) + "ms";
  return s.toFixed(2) + "s";
}

function fmtBytes(b) {
  if (b === null || b === undefined || isNaN(b)) return "-";
  const u = ["B", "K", "M", "G", "T", "P"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i && b < 10 ? b.toFixed(1) : b.toFixed(0)) + u[i];
}

function fmtNum(v, digits) {
  return v === null || v === undefined || isNaN(v) ? "-" : v.toFixed(digits);
}

function fmtPct(v) {
  return v === null || v === undefined || isNaN(v) ? "-" : (100 * v).toFixed(1) + "%";
}

// ---- the map: equirectangular, 1000 x 500 for 360 x 180 degrees; the page's viewBox
// shows latitudes 85 to -60, where people and edges are.

function project(lon, lat) {
  return [(lon + 180) / 360 * 1000, (90 - lat) / 180 * 500];
}

function drawMapBase(svg) {
  el("rect", { class: "sea", x: 0, y: 0, width: 1000, height: 500 }, svg);
  for (let lon = -150; lon <= 150; lon += 30) {
    const x = project(lon, 0)[0];
    el("line", { class: "grat", x1: x, y1: 0, x2: x, y2: 500 }, svg);
  }
  for (let lat = -60; lat <= 60; lat += 30) {
    const y = project(0, lat)[1];
    el("line", { class: "grat", x1: 0, y1: y, x2: 1000, y2: y }, svg);
  }
  for (const poly of LAND) {
    const pts = poly.map(p => project(p[0], p[1]).map(v => v.toFixed(1)).join(",")).join(" ");
    el("polygon", { class: "land", points: pts }, svg);
  }
  return el("g", { id: "map-edges" }, svg);
}

let mapEdges = null;

function stateOf(e) {
  return e.state === "up" && e.draining ? "draining" : e.state;
}

function drawMap(edges) {
  if (!mapEdges) mapEdges = drawMapBase(document.getElementById("map"));
  clear(mapEdges);
  const maxRps = Math.max(1, ...edges.map(e => e.requests_per_s || 0));
  for (const e of edges) {
    const [x, y] = project(e.longitude, e.latitude);
    const st = stateOf(e);
    const r = 7 + 13 * Math.sqrt((e.requests_per_s || 0) / maxRps);
    const g = el("g", { class: "edge-mark" }, mapEdges);
    el("circle", { class: "edge", cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1),
                   fill: STATE_COLOR[st] || STATE_COLOR.unknown, "data-name": e.name,
                   "data-state": st }, g);
    // Labels go left of the edges of the eastern end, so that they stay on the map.
    const left = x > 820, lx = left ? x - r - 3 : x + r + 3;
    const anchor = { "text-anchor": left ? "end" : "start" };
    text(g, lx, y - 2, e.name, Object.assign({ class: "edge-label" }, anchor));
    text(g, lx, y + 10, st === "down" ? "DOWN" :
         fmtNum(e.requests_per_s, 1) + " req/s, hit " + fmtPct(e.hit_ratio), anchor);
  }
}

function drawEdgeTable(edges) {
  const tb = document.querySelector("#edges tbody");
  clear(tb);
  for (const e of edges) {
    const st = stateOf(e);
    const tr = document.createElement("tr");
    const note = st === "down" ? e.health_error : (e.metrics_error || "");
    const cells = [e.name, st, fmtNum(e.requests_per_s, 1), fmtPct(e.hit_ratio), fmtSecs(e.p50),
                   fmtSecs(e.p99), fmtBytes(e.bytes_served_per_s), fmtBytes(e.bytes_saved_per_s),
                   note || ""];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = c;
      if (i === 1) td.className = st;
      tr.appendChild(td);
    });
    tr.dataset.name = e.name;
    tr.dataset.state = st;
    tb.appendChild(tr);
  }
}

// ---- latency histograms: one per tier, bars over a logarithmic time axis (10us .. 10s)

const H_W = 300, H_H = 130, H_PAD = 22, LO = Math.log10(1e-5), HI = Math.log10(10);

function hx(secs) {
  const v = Math.min(HI, Math.max(LO, Math.log10(secs)));
  return H_PAD + (v - LO) / (HI - LO) * (H_W - 2 * H_PAD);
}

function timeAxis(svg, w, h) {
  for (let d = LO; d <= HI; d++) {
    const x = hx(Math.pow(10, d));
    el("line", { class: "grat", x1: x, y1: 14, x2: x, y2: h - 14 }, svg);
    text(svg, x, h - 3, fmtSecs(Math.pow(10, d)), { "text-anchor": "middle" });
  }
}

function drawHists(tiers) {
  const box = document.getElementById("hists");
  clear(box);
  for (const name of TIERS) {
    const t = tiers && tiers[name];
    if (!t || !t.requests) continue;
    const svg = el("svg", { class: "hist", "data-tier": name, width: H_W, height: H_H }, box);
    text(svg, 4, 11, name + "  n=" + t.requests.toFixed(0) + "  p50 " + fmtSecs(t.p50) +
         "  p95 " + fmtSecs(t.p95) + "  p99 " + fmtSecs(t.p99), { style: "font-weight:600" });
    timeAxis(svg, H_W, H_H);
    const max = Math.max(...t.buckets.map(b => b[1]));
    let prev = null;
    for (const [le, n] of t.buckets) {
      const hi = le === null ? (prev || 1e-5) * 2 : le;
      const lo = prev === null ? hi / 2 : prev;
      prev = hi;
      if (!n || !max) continue;
      const x0 = hx(lo), x1 = hx(hi), h = (H_H - 32) * n / max;
      el("rect", { class: "bar", x: x0.toFixed(1), width: Math.max(1, x1 - x0 - 0.5).toFixed(1),
                   y: (H_H - 16 - h).toFixed(1), height: h.toFixed(1),
                   fill: name === "ORIGIN" ? "#d62828" : "#4c8bf5",
                   "data-count": n }, svg);
    }
  }
  if (!box.firstChild) box.textContent = "no requests yet";
}

// ---- time series

function lineChart(svg, series, opts) {
  clear(svg);
  const w = +svg.getAttribute("width"), h = +svg.getAttribute("height");
  const L = 52, R = 8, T = 14, B = 18;
  const all = series.flatMap(s => s.pts);
  if (!all.length) {
    text(svg, L, h / 2, "no data yet");
    return;
  }
  const t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(...all.map(p => p[0]), t0 + 1);
  const f = opts.log ? v => Math.log10(Math.max(v, 1e-6)) : v => v;
  let lo = opts.log ? Math.min(...all.map(p => f(p[1]))) : 0;
  let hi = Math.max(...all.map(p => f(p[1])));
  if (opts.log) { lo = Math.floor(lo); hi = Math.ceil(hi + 1e-9); }
  if (hi <= lo) hi = lo + 1;
  const X = t => L + (t - t0) / (t1 - t0) * (w - L - R);
  const Y = v => h - B - (f(v) - lo) / (hi - lo) * (h - T - B);
  const ticks = opts.log ? [...Array(hi - lo + 1).keys()].map(k => Math.pow(10, lo + k))
                         : [0, 0.5, 1].map(k => k * hi);
  for (const v of ticks) {
    const y = Y(v);
    el("line", { class: "grat", x1: L, y1: y, x2: w - R, y2: y }, svg);
    text(svg, L - 4, y + 3, opts.fmt(v), { "text-anchor": "end" });
  }
  text(svg, L, h - 4, new Date(t0).toISOString().substr(11, 8));
  text(svg, w - R, h - 4, new Date(t1).toISOString().substr(11, 8), { "text-anchor": "end" });
  series.forEach((s, i) => {
    if (!s.pts.length) return;
    const pts = s.pts.map(p => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ");
    el("polyline", { points: pts, fill: "none", stroke: s.color, "stroke-width": 1.5,
                     "data-series": s.name }, svg);
    text(svg, w - R - 4, T + 10 * i, s.name, { "text-anchor": "end", fill: s.color,
                                                style: "fill:" + s.color });
  });
}

function drawQuantiles(history) {
  const box = document.getElementById("quants");
  const seen = TIERS.filter(t => history.some(p => p.quantiles[t]));
  // Keep the tiers' charts in place between refreshes.
  for (const svg of [...box.querySelectorAll("svg")])
    if (!seen.includes(svg.dataset.tier)) box.removeChild(svg);
  if (!seen.length) {
    if (!box.firstChild) box.textContent = "no requests yet";
    return;
  }
  if (box.firstChild && box.firstChild.nodeType === 3) clear(box);
  for (const tier of seen) {
    let svg = box.querySelector('svg[data-tier="' + tier + '"]');
    if (!svg) svg = el("svg", { class: "quant", "data-tier": tier, width: 300, height: 140 }, box);
    const series = ["p50", "p95", "p99"].map((q, i) => ({
      name: tier + " " + q, color: Q_COLOR[i],
      pts: history.filter(p => p.quantiles[tier] && p.quantiles[tier][i] !== null)
                  .map(p => [p.t, p.quantiles[tier][i]]) }));
    lineChart(svg, series, { log: true, fmt: fmtSecs });
    series.forEach((s, i) => {
      const pl = svg.querySelectorAll("polyline")[i];
      if (pl) pl.setAttribute("data-q", ["p50", "p95", "p99"][i]);
    });
  }
}

function drawSeries(history) {
  lineChart(document.getElementById("traffic"), [
    { name: "requests/s", color: "#4c8bf5", pts: history.map(p => [p.t, p.requests_per_s]) },
    { name: "hit ratio x 100", color: "#2a9d4b",
      pts: history.filter(p => p.hit_ratio !== null).map(p => [p.t, 100 * p.hit_ratio]) },
  ], { fmt: v => v.toFixed(v < 10 ? 1 : 0) });
  lineChart(document.getElementById("bandwidth"), [
    { name: "served", color: "#4c8bf5", pts: history.map(p => [p.t, p.bytes_served_per_s]) },
    { name: "saved", color: "#2a9d4b", pts: history.map(p => [p.t, p.bytes_saved_per_s]) },
  ], { fmt: fmtBytes });
}

function rows(tbody, list, cells) {
  clear(tbody);
  for (const item of list) {
    const tr = document.createElement("tr");
    for (const c of cells(item)) {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

function drawModels(models) {
  rows(document.querySelector("#models tbody"), models, m => [
    m.model, String(m.version), String(m.edges_loaded), m.predictions.toFixed(0),
    fmtNum(m.predictions_per_s, 1)]);
}

// Per-edge acknowledgement times of one invalidation as small bars.
function propBars(inv) {
  const w = 120, h = 6 * Math.max(1, inv.edges.length) + 2;
  const svg = el("svg", { width: w, height: h, class: "prop" });
  const max = Math.max(1, ...inv.edges.map(e => e.ms || 0));
  inv.edges.forEach((e, i) => {
    const t = el("rect", { x: 0, y: 1 + 6 * i, height: 4, width: Math.max(1, (w - 2) * (e.ms || 0) / max),
                           fill: e.status === 200 ? "#2a9d4b" : "#d62828" }, svg);
    el("title", {}, t).textContent = e.edge + ": " + (e.status === 200 ? "" : "status " + e.status + ", ") +
                                      (e.ms || 0).toFixed(1) + " ms";
  });
  return svg;
}

function drawInvalidations(list) {
  rows(document.querySelector("#invals tbody"), list, v => [
    v.id, new Date(v.time_ms).toISOString().substr(11, 8), (v.what || []).join(", "),
    v.acknowledged + "/" + v.total, (v.propagation_ms || 0).toFixed(1) + " ms", propBars(v)]);
}

function drawHeader(d) {
  const up = d.edges.filter(e => e.state === "up").length;
  const last = d.history.length ? d.history[d.history.length - 1] : null;
  document.getElementById("k-up").textContent = up + "/" + d.edges.length;
  document.getElementById("k-rps").textContent = last ? fmtNum(last.requests_per_s, 1) : "-";
  document.getElementById("k-hit").textContent = last ? fmtPct(last.hit_ratio) : "-";
  document.getElementById("k-saved").textContent = fmtBytes(d.bytes_saved);
  document.getElementById("k-saved-rate").textContent = last ? fmtBytes(last.bytes_saved_per_s) : "-";
  document.getElementById("updated").textContent = d.starting ? "reading the edges..." :
      "updated " + new Date(d.time_ms).toISOString().substr(11, 8) + " UTC";
}

function draw(d) {
  drawHeader(d);
  drawMap(d.edges);
  drawEdgeTable(d.edges);
  if (d.starting) return;
  drawHists(d.tiers);
  drawQuantiles(d.history);
  drawSeries(d.history);
  drawModels(d.models);
  drawInvalidations(d.invalidations);
}

function poll() {
  fetch("data", { cache: "no-store" })
    .then(r => r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)))
    .then(draw)
    .catch(err => { document.getElementById("updated").textContent = "router: " + err.message; })
    .finally(() => setTimeout(poll, POLL_MS));
}

poll();
