// pktlab live view: draws the mesh as hand-written SVG and keeps it current from the server's event stream
// (/api/stream, server-sent events). No libraries, no network but this server.
"use strict";

const W = 1000, H = 640, PAD = 46;
const SVGNS = "http://www.w3.org/2000/svg";
const ISP_COLOURS = ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#b45309"];
const $ = (id) => document.getElementById(id);

let topo = null;            // {run, nodes: [...], links: [...], isps, fault_kinds}
let byName = {};            // node name -> topology node
let linkEls = {};           // link id -> {line, halo, mark}
let nodeEls = {};           // node name -> <g>
let selected = null;        // node whose panel is shown
let source = null;          // the EventSource
let eventCount = 0;

function el(tag, attrs, parent) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function h(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }
function px(n) { return [PAD + n.x * (W - 2 * PAD), PAD + n.y * (H - 2 * PAD)]; }
function rate(bps) {
  if (bps == null) return "unshaped";
  if (bps >= 1e9) return (bps / 1e9).toFixed(bps % 1e9 ? 1 : 0) + " Gbit/s";
  if (bps >= 1e6) return (bps / 1e6).toFixed(bps % 1e6 ? 1 : 0) + " Mbit/s";
  if (bps >= 1e3) return (bps / 1e3).toFixed(0) + " kbit/s";
  return bps + " bit/s";
}
function ispColour(isp) {
  if (!isp) return "#64748b";
  const i = topo.isps.indexOf(isp);
  return ISP_COLOURS[(i < 0 ? 0 : i) % ISP_COLOURS.length];
}
// idle grey -> sky -> indigo -> magenta as a link fills up (red is kept for down links)
function loadColour(f) {
  const stops = [[0, [184, 196, 210]], [0.25, [56, 189, 248]], [0.6, [99, 102, 241]], [1, [192, 38, 211]]];
  for (let i = 1; i < stops.length; i++) {
    if (f <= stops[i][0]) {
      const [a, ca] = stops[i - 1], [b, cb] = stops[i], t = (f - a) / (b - a);
      return `rgb(${ca.map((v, k) => Math.round(v + t * (cb[k] - v))).join(",")})`;
    }
  }
  return "rgb(192,38,211)";
}
function linkWidth(l) {
  const r = Math.max(l.rate_ab || 1e8, l.rate_ba || 1e8);
  return Math.max(2.5, Math.min(7, 1.2 * Math.log10(r / 1e5) + 2.5));
}

// -- the map ------------------------------------------------------------------------------------------------
function drawTopology(t) {
  topo = t;
  byName = Object.fromEntries(t.nodes.map((n) => [n.name, n]));
  $("runinfo").innerHTML = `run <b>${esc(t.run)}</b> · ${t.nodes.length} nodes · ${t.links.length} links · ` +
    `routing ${esc(t.routing || "?")} · ${esc(t.source || "")}`;
  const links = $("links"), marks = $("marks"), nodes = $("nodes");
  links.replaceChildren(); marks.replaceChildren(); nodes.replaceChildren();
  linkEls = {}; nodeEls = {};
  const r = t.nodes.length > 60 ? 7 : t.nodes.length > 25 ? 11 : 16;
  for (const l of t.links) {
    const [x1, y1] = px(byName[l.a]), [x2, y2] = px(byName[l.b]);
    const halo = el("line", { x1, y1, x2, y2, class: "linkhalo", "stroke-width": linkWidth(l) + 9, visibility: "hidden" }, links);
    const line = el("line", { x1, y1, x2, y2, class: "link", id: `link-${l.id}`, "data-link": l.name,
      "data-state": "up", stroke: loadColour(0), "stroke-width": linkWidth(l) }, links);
    const mark = el("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2, class: "downmark", visibility: "hidden" }, marks);
    mark.textContent = "✕";
    line.addEventListener("mousemove", (ev) => tip(ev, linkTip(l)));
    line.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
    line.addEventListener("click", () => { $("fault-target").value = l.name; });
    linkEls[l.id] = { line, halo, mark, link: l, state: null };
  }
  for (const n of t.nodes) {
    const [x, y] = px(n);
    const g = el("g", { class: "node", id: `node-${n.name}`, "data-node": n.name, transform: `translate(${x},${y})` }, nodes);
    if (n.roles.includes("route_server")) el("circle", { r: r + 5, class: "rs" }, g);
    el("circle", { r, class: "body", fill: ispColour(n.isp) }, g);
    const tag = roleTag(n.roles);
    if (tag && r >= 11) { const s = el("text", { class: "role", y: 0 }, g); s.textContent = tag; }
    const label = el("text", { y: r + 15 }, g);
    label.textContent = n.name;
    g.addEventListener("click", () => select(n.name));
    g.addEventListener("mousemove", (ev) => tip(ev, `${n.name}${n.isp ? "  (" + n.isp + ")" : ""}\n${n.ip6 || ""}\n${n.roles.join(", ")}`));
    g.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
    nodeEls[n.name] = g;
  }
  drawLegend(t);
  fillActions(t);
}
function roleTag(roles) {
  if (roles.includes("route_server")) return "RS";
  if (roles.includes("pool")) return "P";
  if (roles.includes("miner")) return "M";
  if (roles.includes("chain")) return "C";
  return "";
}
function drawLegend(t) {
  const isps = t.isps.map((i) => `<span><span class="sw" style="border-color:${ispColour(i)}"></span>${esc(i)}</span>`).join("");
  $("legend").innerHTML = `<span>load</span><span class="ramp"></span><span>idle → full</span>` +
    `<span><span class="sw" style="border-color:var(--down);border-top-style:dashed"></span>down</span>` +
    `<span><span class="sw" style="border-color:var(--fault);opacity:.5;border-top-width:7px"></span>fault</span>` +
    `<span>◎ route server</span>` + isps;
}
function linkTip(l) {
  const s = linkEls[l.id].state || {};
  const lines = [`${l.name}   (${l.a_if} ↔ ${l.b_if})`,
    `${l.a}→${l.b}: ${rate(l.rate_ab)}, sending ${rate(s.bps_ab || 0)}`,
    `${l.b}→${l.a}: ${rate(l.rate_ba)}, sending ${rate(s.bps_ba || 0)}`];
  if (s.rtt_ms != null) lines.push(`link rtt ${s.rtt_ms.toFixed(2)} ms`);
  if (s.down) lines.push(s.by_fault ? "DOWN (fault)" : "DOWN (no answer to link pings)");
  if (s.faults && s.faults.length) lines.push("faults: " + s.faults.join(", "));
  return lines.join("\n");
}
function tip(ev, text) {
  const t = $("tooltip"), box = $("mapcard").getBoundingClientRect();
  t.textContent = text; t.hidden = false;
  t.style.left = (ev.clientX - box.left + 14) + "px"; t.style.top = (ev.clientY - box.top + 10) + "px";
}

function applyTick(s) {
  for (const l of s.links) {
    const e = linkEls[l.id];
    if (!e) continue;
    e.state = l;
    e.line.classList.toggle("down", l.down);
    e.line.setAttribute("data-state", l.down ? "down" : "up");
    e.line.setAttribute("stroke", loadColour(l.load));
    e.mark.setAttribute("visibility", l.down ? "visible" : "hidden");
    e.halo.setAttribute("visibility", l.faults.length ? "visible" : "hidden");
  }
  for (const [name, n] of Object.entries(s.nodes)) {
    const g = nodeEls[name];
    if (!g) continue;
    g.classList.toggle("down", !n.up);
    g.setAttribute("data-state", n.up ? "up" : "down");
  }
  drawFaults(s.faults);
  addEvents(s.events);
  if (s.panel && s.panel.node === selected) drawPanel(s.panel);
}

// -- the node panel -----------------------------------------------------------------------------------------
function select(name) {
  selected = name;
  for (const [n, g] of Object.entries(nodeEls)) g.classList.toggle("selected", n === name);
  $("panel-title").textContent = name;
  $("panel-body").innerHTML = '<span class="muted">loading…</span>';
  if (!$("ping-a").dataset.touched) $("ping-a").value = name;
  connect();        // the stream carries the selected node's panel
}
function kv(pairs) {
  return "<dl class='kv'>" + pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("") + "</dl>";
}
function table(headers, rows) {
  return `<table><tr>${headers.map((x) => `<th>${esc(x)}</th>`).join("")}</tr>` +
    rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("") + "</table>";
}
function value(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "object") return `<span class="mono">${esc(JSON.stringify(v))}</span>`;
  return esc(v);
}
function drawPanel(p) {
  $("panel-sub").innerHTML = (p.roles || []).map((r) => `<span class="chip">${esc(r)}</span>`).join("") +
    (p.isp ? `<span class="chip isp">${esc(p.isp)}</span>` : "");
  let html = kv([["address", `<span class="mono">${esc(p.ip6 || "")}</span>`],
    ["public key", p.status ? `<span class="mono">${esc(p.status.public_key)}</span>` : ""],
    ["uptime", p.status ? `${p.status.uptime_s.toFixed(0)} s` : ""],
    ["peer links", p.status ? `${p.status.peers_up} of ${p.status.peers} up` : ""],
    ["clock offset", p.status && p.status.clock_offset_s ? `${p.status.clock_offset_s} s` : ""]]);
  if (p.error) html += `<p class="error">${esc(p.error)}</p>`;
  const extra = Object.entries(p.extra || {});
  if (extra.length) html += "<h3>Reported by the agent</h3>" + kv(extra.map(([k, v]) => [k, value(v)]));
  if (p.peers) {
    html += "<h3>Peers</h3>" + table(["", "interface", "peer", "label", "rtt"], p.peers.map((x) => [
      `<span class="dot ${x.up ? "" : "off"}"></span>`, esc(x.ifname), esc(x.peer || "?"),
      `<span class="mono">${esc(x.label)}</span>`, x.rtt_ms == null ? "–" : x.rtt_ms.toFixed(2) + " ms"]));
  }
  if (p.paths && p.paths.length) {
    html += "<h3>Paths (label decoded hop by hop)</h3>" + table(["to", "label", "hops"], p.paths.map((x) => [
      esc(x.dst), `<span class="mono">${esc(x.label || "none")}</span>`, esc(x.hops.join(" → ") || "no path")]));
  }
  if (p.route_server) {
    const rs = p.route_server;
    html += "<h3>Route server</h3>" + kv([["uses", esc(rs.server || "none found yet")],
      ["via label", `<span class="mono">${esc(rs.label || "")}</span>`],
      ["candidates", esc(Object.entries(rs.candidates || {}).map(([n, c]) => n + (c.failed ? " (failed)" : "")).join(", "))],
      ["clock skew", rs.skew_ms == null ? "" : `${rs.skew_ms} ms`],
      ["counters", value(rs.counters)]]);
  }
  if (p.serves_routes) {
    const s = p.serves_routes;
    html += "<h3>Serves routes</h3>" + kv([["graph", `${s.nodes} nodes, ${s.edges} links`],
      ["accepted", value(s.announcements_accepted)], ["rejected", value(s.rejected)],
      ["federation", value(s.federation || s.federation_peers)]]);
  }
  if (p.leases) {
    html += "<h3>Leases</h3>" + table(["link", "lease", "guarantee", "max prio bw", "clear cust", "P", "expires"],
      p.leases.leases.map((l) => [esc(l.link), esc(l.id), rate(l.guarantee_bps), value(l.max_priority_bandwidth),
        l.clear_customer_bit ? "yes" : "no", value(l.deprioritize_non_customer),
        l.expired ? "expired" : l.expires_in_s == null ? "never" : `${l.expires_in_s.toFixed(0)} s`]));
    const meters = Object.entries(p.leases.meters);
    if (meters.length) html += "<h3>Meters</h3>" + table(["lease", "packets", "prio×kB/s", "scale"],
      meters.map(([k, m]) => [esc(k), value(m.packets), m.meter_priority_kBps == null ? "–" : m.meter_priority_kBps.toFixed(1),
        m.scale == null ? "–" : m.scale.toFixed(3)]));
  }
  $("panel-body").innerHTML = html;
}

// -- actions ------------------------------------------------------------------------------------------------
function fillActions(t) {
  const kinds = $("fault-kind");
  kinds.replaceChildren(...t.fault_kinds.map((k) => h("option", { value: k.kind, textContent: k.kind })));
  kinds.value = "link-down";
  kinds.onchange = () => {
    const k = t.fault_kinds.find((x) => x.kind === kinds.value);
    $("fault-target").placeholder = k.target === "node" ? "node" : k.target === "groups" ? "a,b|c,d" : "a--b";
    $("fault-value").placeholder = k.main || "";
    $("fault-value").disabled = !k.main;
  };
  kinds.onchange();
  for (const id of ["ping-a", "ping-b"]) {
    $(id).replaceChildren(...t.nodes.map((n) => h("option", { value: n.name, textContent: n.name })));
    $(id).onchange = () => { $(id).dataset.touched = "1"; };
  }
  if (t.nodes.length > 1) $("ping-b").value = t.nodes[t.nodes.length - 1].name;
}
async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  let data;
  try { data = await r.json(); } catch (e) { data = { ok: false, error: `HTTP ${r.status}` }; }
  return data;
}
function result(text, ok) {
  const r = $("action-result");
  r.textContent = text; r.className = "result " + (ok ? "ok" : "bad");
}
async function busy(button, fn) {
  button.disabled = true;
  try { await fn(); } finally { button.disabled = false; }
}
$("fault-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const spec = [$("fault-kind").value, $("fault-target").value.trim(), $("fault-value").disabled ? "" : $("fault-value").value.trim()]
    .filter(Boolean).join(" ");
  result(`applying ${spec} …`, true);
  busy($("fault-inject"), async () => {
    const r = await post("/api/fault", { fault: spec });
    r.ok ? result(`${r.id} ${r.description}: ${r.effect}`, true) : result(r.error, false);
  });
});
$("ping-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const a = $("ping-a").value, b = $("ping-b").value;
  result(`ping ${a} → ${b} …`, true);
  busy($("ping-go"), async () => {
    const r = await post("/api/ping", { a, b });
    if (!r.ok) return result(r.error, false);
    r.rtt_ms == null ? result(`${a} → ${b}: no reply`, false) : result(`${a} → ${b}: rtt ${r.rtt_ms.toFixed(2)} ms`, true);
  });
});
function drawFaults(list) {
  const box = $("fault-list");
  const key = JSON.stringify(list.map((f) => f.id));
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren();
  if (!list.length) return;
  for (const f of list) {
    const b = h("button", { className: "heal", textContent: "heal" });
    b.onclick = () => busy(b, async () => {
      result(`healing ${f.id} …`, true);
      const r = await post("/api/heal", { id: f.id });
      r.ok ? result(`healed ${f.id}: ${r.healed.map((x) => x.measured).join("; ")}`, true) : result(r.error, false);
    });
    box.append(h("div", { className: "fault", id: `fault-${f.id}` }, h("b", {}, f.id), h("span", { className: "desc" }, f.description), b));
  }
  if (list.length > 1) {
    const all = h("button", { className: "heal", textContent: "heal all" });
    all.onclick = () => busy(all, async () => {
      const r = await post("/api/heal", {});
      r.ok ? result(`healed ${r.healed.length} fault(s)`, true) : result(r.error, false);
    });
    box.append(h("div", { className: "fault" }, h("span", { className: "desc" }), all));
  }
}

// -- the timeline -------------------------------------------------------------------------------------------
function describe(e) {
  const d = e.details || {};
  switch (e.kind) {
    case "fault": return `${d.id || ""} ${d.description || d.type || ""}`;
    case "heal": return `${d.id || "all"} ${d.type || ""}${d.instant ? " (instant fault done)" : ""}`;
    case "ping": return `${d.src} → ${d.dst}: ${d.reachable ? (d.rtt_ms != null ? d.rtt_ms.toFixed(2) + " ms" : "reply") : "no reply"}`;
    case "up": return `${d.nodes} nodes, ${d.links} links from ${d.source} (seed ${d.seed})`;
    case "agent_restart": return `${e.node}: agent restarted`;
    case "assertion": return `${d.ok ? "✓" : "✗"} ${d.name || ""} ${d.message || ""}`;
    default: return Object.entries(d).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  }
}
function addEvents(events) {
  const list = $("events");
  for (const e of events) {
    const t = new Date(e.ts * 1000).toTimeString().slice(0, 8);
    const where = e.kind === "ping" ? "" : [e.node, e.link].filter(Boolean).join(" ");
    list.prepend(h("li", {}, h("span", { className: "t" }, t), h("span", { className: `kind ${e.kind}` }, e.kind),
      h("span", {}, (where ? where + ": " : "") + describe(e))));
    eventCount++;
  }
  while (list.children.length > 300) list.lastChild.remove();
  $("event-count").textContent = `${eventCount} events`;
}

// -- the stream ---------------------------------------------------------------------------------------------
function connect() {
  if (source) source.close();
  source = new EventSource("/api/stream" + (selected ? "?node=" + encodeURIComponent(selected) : ""));
  let first = true;
  source.addEventListener("topology", (m) => { if (!topo) drawTopology(JSON.parse(m.data)); });
  source.addEventListener("backlog", (m) => {
    if (first && eventCount === 0) addEvents(JSON.parse(m.data));
    first = false;
  });
  source.addEventListener("tick", (m) => { $("conn").className = "conn live"; applyTick(JSON.parse(m.data)); });
  source.addEventListener("error", (m) => {
    $("conn").className = "conn lost";
    if (m.data) result(JSON.parse(m.data).error, false);
  });
}
connect();
