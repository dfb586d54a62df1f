// A flow drawn as SVG: a small layered layout (longest-path layers, barycentre ordering)
// computed here, so nothing is fetched from elsewhere.

import { s } from "./dom.js";

const NODE_W = 196;
const GAP_X = 56;
const GAP_Y = 28;
const HEAD = 62;
const ROW = 18;
const STATS = 34;
const MIN_SCALE = 0.7;
const PAD = 16;

/** Layers and order of the nodes. nodes: ids; edges: [source, target] pairs. */
export function layout(nodes, edges) {
  const out = new Map(nodes.map((n) => [n, []]));
  const inc = new Map(nodes.map((n) => [n, []]));
  // drop back edges (found by a depth-first search in declaration order) so layers exist
  const state = new Map();
  const forward = [];
  const adj = new Map(nodes.map((n) => [n, []]));
  for (const [a, b] of edges) if (adj.has(a) && adj.has(b)) adj.get(a).push(b);
  const back = new Set();
  const visit = (n) => {
    state.set(n, 1);
    for (const m of adj.get(n)) {
      if (state.get(m) === 1) back.add(`${n}\u0000${m}`);
      else if (!state.get(m)) visit(m);
    }
    state.set(n, 2);
  };
  for (const n of nodes) if (!state.get(n)) visit(n);
  for (const [a, b] of edges) {
    if (!adj.has(a) || !adj.has(b) || a === b || back.has(`${a}\u0000${b}`)) continue;
    forward.push([a, b]);
    out.get(a).push(b);
    inc.get(b).push(a);
  }
  // longest path from the sources
  const layer = new Map();
  const indeg = new Map(nodes.map((n) => [n, inc.get(n).length]));
  const queue = nodes.filter((n) => indeg.get(n) === 0);
  for (const n of queue) layer.set(n, 0);
  while (queue.length) {
    const n = queue.shift();
    for (const m of out.get(n)) {
      layer.set(m, Math.max(layer.get(m) ?? 0, layer.get(n) + 1));
      indeg.set(m, indeg.get(m) - 1);
      if (indeg.get(m) === 0) queue.push(m);
    }
  }
  const layers = [];
  for (const n of nodes) {
    const l = layer.get(n) ?? 0;
    (layers[l] ||= []).push(n);
  }
  // a few barycentre sweeps to reduce crossings
  const pos = new Map();
  const index = () => layers.forEach((ns) => ns.forEach((n, i) => pos.set(n, i)));
  index();
  const bary = (n, nbrs) => {
    const ps = nbrs.filter((m) => pos.has(m)).map((m) => pos.get(m));
    return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : pos.get(n);
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? layers.keys() : [...layers.keys()].reverse();
    for (const l of order) {
      const ns = layers[l] || [];
      const key = new Map(ns.map((n) => [n, bary(n, down ? inc.get(n) : out.get(n))]));
      ns.sort((a, b) => key.get(a) - key.get(b));
      ns.forEach((n, i) => pos.set(n, i));
    }
  }
  return layers.map((ns) => ns || []);
}

function nodeHeight(r, withStats) {
  const rows = Math.max(r.slots.length, Object.keys(r.events).length, 1);
  return HEAD + rows * ROW + 8 + (withStats ? STATS : 0);
}

function policyText(r) {
  const params = Object.entries(r.policy_params || {});
  if (!params.length) return r.policy;
  return `${r.policy}(${params.map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")})`;
}

function handlerText(eh) {
  if (!eh) return null;
  if (eh.strategy === "retry") return `on error: retry ×${eh.max_retries}, then ${eh.fallback}`;
  return `on error: ${eh.strategy}`;
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/**
 * Draw a flow (GET /api/flows/{name}) as an <svg>. With `stats`, each node has a counters
 * line and a status; `update(statuses)` recolours it later.
 */
export function drawFlow(flow, { stats = false, title } = {}) {
  const ids = Object.keys(flow.routines);
  const ENTRY = "\u0000entry";
  const nodes = flow.entry ? [ENTRY, ...ids] : ids;
  const edges = flow.connections.map((c) => [c.source, c.target]);
  if (flow.entry) edges.unshift([ENTRY, flow.entry.routine]);
  const layers = layout(nodes, edges);
  const box = new Map();
  let width = 0;
  let height = 0;
  layers.forEach((ns, l) => {
    let y = PAD;
    for (const n of ns) {
      const h = n === ENTRY ? 40 : nodeHeight(flow.routines[n], stats);
      const w = n === ENTRY ? 70 : NODE_W;
      box.set(n, { x: PAD + l * (NODE_W + GAP_X) + (n === ENTRY ? NODE_W - 70 : 0), y, w, h });
      y += h + GAP_Y;
    }
    height = Math.max(height, y - GAP_Y + PAD);
    width = Math.max(width, PAD + (l + 1) * (NODE_W + GAP_X) - GAP_X + PAD);
  });
  // centre each layer vertically
  layers.forEach((ns) => {
    if (!ns.length) return;
    const last = box.get(ns[ns.length - 1]);
    const shift = (height - PAD - (last.y + last.h)) / 2;
    for (const n of ns) box.get(n).y += shift;
  });

  const slotY = (n, slot) => {
    const b = box.get(n);
    if (n === ENTRY) return b.y + b.h / 2;
    const i = Math.max(0, flow.routines[n].slots.indexOf(slot));
    return b.y + HEAD + i * ROW + ROW / 2;
  };
  const eventY = (n, event) => {
    const b = box.get(n);
    if (n === ENTRY) return b.y + b.h / 2;
    const i = Math.max(0, Object.keys(flow.routines[n].events).indexOf(event));
    return b.y + HEAD + i * ROW + ROW / 2;
  };

  const svg = s("svg", {
    class: "flow-graph",
    xmlns: "http://www.w3.org/2000/svg",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": title || `Graph of flow ${flow.name}: ${ids.length} routines, ${flow.connections.length} connections`,
  });
  // as wide as the room it has, down to MIN_SCALE of its natural size; then it scrolls
  svg.style.width = "100%";
  svg.style.maxWidth = `${width}px`;
  svg.style.minWidth = `${Math.round(width * MIN_SCALE)}px`;
  svg.style.height = "auto";
  svg.append(s("defs", null,
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }))));
  const edgeLayer = s("g", { class: "edges" });
  svg.append(edgeLayer);

  const curve = (x1, y1, x2, y2) => {
    if (x2 > x1 + 10) {
      const dx = Math.max(40, (x2 - x1) / 2);
      return `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
    }
    // back edge (a loop): go out right, around below, and in from the left
    const low = Math.max(y1, y2) + 50;
    return `M${x1},${y1} C${x1 + 80},${y1} ${x1 + 80},${low} ${(x1 + x2) / 2},${low} S${x2 - 80},${y2} ${x2},${y2}`;
  };
  const addEdge = (a, b, y1, y2, label) => {
    const ba = box.get(a);
    const bb = box.get(b);
    edgeLayer.append(s("path", { class: "edge", d: curve(ba.x + ba.w, y1, bb.x, y2), "marker-end": "url(#arrow)" },
      s("title", null, label)));
  };
  if (flow.entry) {
    addEdge(ENTRY, flow.entry.routine, slotY(ENTRY), slotY(flow.entry.routine, flow.entry.slot), `entry → ${flow.entry.routine}.${flow.entry.slot}`);
  }
  for (const c of flow.connections) {
    addEdge(c.source, c.target, eventY(c.source, c.event), slotY(c.target, c.slot), `${c.source}.${c.event} → ${c.target}.${c.slot}`);
  }

  const nodeEls = new Map();
  for (const n of nodes) {
    const b = box.get(n);
    if (n === ENTRY) {
      svg.append(s("g", { class: "node entry" },
        s("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 20 }),
        s("text", { x: b.x + b.w / 2, y: b.y + b.h / 2 + 5, "text-anchor": "middle" }, "entry")));
      continue;
    }
    const r = flow.routines[n];
    const g = s("g", { class: "node status-idle", dataset: { routine: n, status: "idle" } });
    const tip = [`${n} (${r.type})`, `policy: ${policyText(r)}`];
    if (r.error_handler) tip.push(handlerText(r.error_handler));
    g.append(s("title", null, tip.join("\n")));
    g.append(s("rect", { class: "node-box", x: b.x, y: b.y, width: b.w, height: b.h, rx: 6 }));
    g.append(s("text", { class: "node-id", x: b.x + 10, y: b.y + 18 }, clip(n, 20)));
    const statusText = s("text", { class: "node-status", x: b.x + b.w - 10, y: b.y + 18, "text-anchor": "end" }, stats ? "idle" : "");
    g.append(statusText);
    g.append(s("text", { class: "node-type", x: b.x + 10, y: b.y + 34 }, clip(r.type, 28)));
    g.append(s("text", { class: "node-policy", x: b.x + 10, y: b.y + 50 }, clip(`${policyText(r)}${r.error_handler ? ` · ${handlerText(r.error_handler).replace("on error: ", "err: ")}` : ""}`, 29)));
    g.append(s("line", { class: "node-sep", x1: b.x, x2: b.x + b.w, y1: b.y + HEAD - 6, y2: b.y + HEAD - 6 }));
    r.slots.forEach((slot, i) => {
      const y = b.y + HEAD + i * ROW + ROW / 2;
      g.append(s("circle", { class: "port slot", cx: b.x, cy: y, r: 4 }));
      g.append(s("text", { class: "port-label", x: b.x + 9, y: y + 4 }, clip(slot, 13)));
    });
    Object.keys(r.events).forEach((ev, i) => {
      const y = b.y + HEAD + i * ROW + ROW / 2;
      g.append(s("circle", { class: "port event", cx: b.x + b.w, cy: y, r: 4 }));
      g.append(s("text", { class: "port-label", x: b.x + b.w - 9, y: y + 4, "text-anchor": "end" }, clip(ev, 13)));
    });
    let statsText = null;
    if (stats) {
      statsText = [
        s("text", { class: "node-stats", x: b.x + 10, y: b.y + b.h - 22 }, ""),
        s("text", { class: "node-stats", x: b.x + 10, y: b.y + b.h - 8 }, ""),
      ];
      g.append(...statsText);
    }
    svg.append(g);
    nodeEls.set(n, { g, statusText, statsText });
  }

  /** statuses: {routine: {status, queued, running, completed, errors, skipped, retries}} */
  function update(statuses) {
    for (const [rid, st] of Object.entries(statuses)) {
      const el = nodeEls.get(rid);
      if (!el) continue;
      el.g.setAttribute("class", `node status-${st.status}`);
      el.g.dataset.status = st.status;
      el.statusText.textContent = st.status;
      if (el.statsText) {
        el.statsText[0].textContent = `queued ${st.queued} · run ${st.running} · ok ${st.completed}`;
        el.statsText[1].textContent = `err ${st.errors} · skip ${st.skipped} · retry ${st.retries}`;
      }
    }
  }
  return { svg, update };
}
