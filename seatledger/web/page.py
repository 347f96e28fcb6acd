"""The dashboard's one page: plain HTML, a little CSS, and a script that polls
``/api/status`` every second and redraws (the grace countdowns tick between polls)."""

from __future__ import annotations

IN_USE_COLOUR = "#2563eb"  # seats in use: the pools' bars and the usage charts
LIMIT_COLOUR = "#dc2626"
GRACE_COLOUR = "#f59e0b"

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>seatledger</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #111; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; } td, th { padding: .2em .8em .2em 0; text-align: left; }
th { border-bottom: 1px solid #999; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { width: 220px; height: 14px; background: #e5e7eb; position: relative; }
.bar > div { position: absolute; top: 0; left: 0; height: 14px; background: IN_USE; }
.open { color: GRACE; font-weight: bold; } .spent { color: LIMIT; font-weight: bold; }
.muted { color: #666; } .warn { color: LIMIT; font-weight: bold; }
.charts { display: flex; gap: 2em; flex-wrap: wrap; }
</style></head>
<body>
<h1>seatledger</h1>
<div id="licence" class="muted">loading&hellip;</div>
<div id="notice" class="warn"></div>
<h2>Pools</h2>
<table id="pools"><thead><tr><th>pool</th><th class="num">in use</th><th class="num">limit</th>
<th></th><th>grace</th><th>deadline</th></tr></thead><tbody></tbody></table>
<h2>Sites</h2>
<table id="sites"><thead><tr><th>site</th><th>status</th><th class="num">seats</th>
<th>by class</th><th>local limits</th><th>last seen</th></tr></thead><tbody></tbody></table>
<h2>Usage</h2>
<div class="charts">
<div><div class="muted">agent-hours per hour, last 24 hours</div><svg id="hours" width="560" height="160"></svg></div>
<div><div class="muted">agent-hours per day, last 30 days</div><svg id="days" width="560" height="160"></svg></div>
</div>
<h2>Audit export</h2><div id="export"></div>
<h2>Recent notices and refusals</h2>
<table id="recent"><thead><tr><th>at</th><th>what</th><th>where</th><th>detail</th></tr></thead><tbody></tbody></table>
<p class="muted" id="updated"></p>
<script>
"use strict";
let offset = 0, pools = [];
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
const when = s => s ? s.replace("T", " ").slice(0, 19) : "";
const kv = o => Object.entries(o || {}).map(([k, v]) => esc(k) + "=" + esc(v)).join(", ");
function left(deadline) {
  let s = Math.max(0, Math.floor((Date.parse(deadline) - (Date.now() + offset)) / 1000));
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60); s %= 60;
  return h + "h " + String(m).padStart(2, "0") + "m " + String(s).padStart(2, "0") + "s left";
}
function tick() {
  for (const p of pools) {
    const cell = document.getElementById("countdown-" + p.pool);
    if (cell && p.deadline && p.state === "open") cell.textContent = left(p.deadline);
  }
}
function chart(id, rows, label) {
  const svg = document.getElementById(id), w = 560, h = 160, pad = 20;
  const top = Math.max(1, ...rows.map(r => r.agent_hours));
  const bw = (w - pad) / Math.max(1, rows.length);
  let out = `<line x1="${pad}" y1="${h - pad}" x2="${w}" y2="${h - pad}" stroke="#999"/>`;
  rows.forEach((r, i) => {
    const bh = (h - 2 * pad) * r.agent_hours / top;
    out += `<rect x="${pad + i * bw + 1}" y="${h - pad - bh}" width="${Math.max(1, bw - 2)}" height="${bh}" fill="IN_USE"><title>${esc(when(r.period))}: ${r.agent_hours} agent-hours, peak ${r.peak}</title></rect>`;
  });
  out += `<text x="${pad}" y="12" font-size="11" fill="#666">max ${top.toFixed(1)} ${label}</text>`;
  svg.innerHTML = out;
}
function draw(d) {
  offset = Date.parse(d.as_of) - Date.now();
  pools = d.pools;
  const l = d.licence;
  document.getElementById("licence").innerHTML = l
    ? `${esc(l.customer)} &middot; licence ${esc(l.licence_id)} (${esc(l.mode)}, serial ${esc(l.serial)})`
      + ` &middot; expires ${esc(when(l.expires_at))}` + (l.days_left != null ? ` (${l.days_left} days left)` : "")
    : "no licence yet";
  document.getElementById("notice").textContent = d.notice || "";
  document.querySelector("#pools tbody").innerHTML = d.pools.map(p => {
    const pct = p.limit ? Math.min(100, 100 * p.in_use / p.limit) : 0;
    return `<tr><td>${esc(p.pool)}</td><td class="num" id="in-use-${esc(p.pool)}">${p.in_use}</td>`
      + `<td class="num">${p.limit}</td><td><div class="bar"><div style="width:${pct}%"></div></div></td>`
      + `<td class="${esc(p.state)}">${esc(p.state)}${p.enforced ? " (enforced)" : ""}</td>`
      + `<td id="countdown-${esc(p.pool)}">${p.deadline ? esc(when(p.deadline)) : ""}</td></tr>`;
  }).join("");
  document.querySelector("#sites tbody").innerHTML = d.sites.map(s =>
    `<tr><td>${esc(s.site)}</td><td>${esc(s.status)}</td><td class="num" id="site-seats-${esc(s.site)}">${s.seats}</td>`
    + `<td>${kv(s.seats_by_class)}</td><td>${kv(s.local_limits)}</td><td>${esc(when(s.last_seen))}</td></tr>`).join("");
  chart("hours", d.usage.hours, "agent-hours");
  chart("days", d.usage.days, "agent-hours");
  const e = d.export;
  document.getElementById("export").innerHTML = (e.last_day
    ? `last delivered: ${esc(e.last_day)} (at ${esc(when(e.last_at))})` : "no export delivered yet")
    + (e.overdue ? ` &middot; <span class="warn">overdue: over-use grace withdrawn</span>` : "");
  document.querySelector("#recent tbody").innerHTML = d.recent.map(r =>
    `<tr><td>${esc(when(r.at))}</td><td>${esc(r.kind === "refusal" ? "refused: " + r.reason : "notice: " + r.severity)}</td>`
    + `<td>${esc(r.kind === "refusal" ? r.site + " / " + r.user : r.pool)}</td><td>${esc(r.detail)}</td></tr>`).join("");
  document.getElementById("updated").textContent = "as of " + when(d.as_of) + " UTC"
    + (d.master.lag ? ` · read models ${d.master.lag} records behind` : "");
  tick();
}
async function poll() {
  try {
    const r = await fetch("api/status", {cache: "no-store", credentials: "same-origin"});
    if (r.ok) draw(await r.json());
  } finally { setTimeout(poll, 1000); }
}
setInterval(tick, 250);
poll();
</script></body></html>
""".replace("IN_USE", IN_USE_COLOUR).replace("LIMIT", LIMIT_COLOUR).replace("GRACE", GRACE_COLOUR)
