// The Sluice console: one page, hash-routed; every figure comes from the /admin/* JSON endpoints,
// which apply the signed-in key's role. No library: DOM built with textContent (never innerHTML of
// data), charts drawn as inline SVG.
"use strict";

const state = { me: null, page: "overview" };
const PAGES = {
  overview: { title: "Overview", render: renderOverview, period: true },
  reliability: { title: "Reliability", render: renderReliability, period: true },
  requests: { title: "Requests", render: renderRequests, period: false },
  keys: { title: "Keys", render: renderKeys, period: false },
  teams: { title: "Teams", render: renderTeams, period: true },
  policy: { title: "Policy", render: renderPolicy, period: false },
  audit: { title: "Audit", render: renderAudit, period: false },
};
const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && state.me) headers["x-csrf-token"] = state.me.csrf;
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error((data.error && data.error.message) || `${resp.status} ${resp.statusText}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// -- formatting -----------------------------------------------------------------------------------
const usd = (v) => v === null || v === undefined ? "-" :
  "$" + (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3));
const num = (v) => v === null || v === undefined ? "-" : Number(v).toLocaleString("en-US");
const ms = (v) => v === null || v === undefined ? "-" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(1) + " ms";
const pct = (v) => (100 * v).toFixed(1) + "%";
const when = (ts) => new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19);

function bucketLabel(b) {
  return /^\d+$/.test(String(b)) ? when(Number(b)).slice(5, 16) : String(b);
}

function table(columns, rows, onRow, empty = "none") {
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)));
  const body = rows.map((r) => h("tr", {
    class: onRow ? "clickable" : null, onclick: onRow ? () => onRow(r) : null,
  }, columns.map((c) => {
    const v = c.get(r);
    return h("td", { class: c.num ? "num" : null }, v instanceof Node ? v : v === null || v === undefined ? "-" : String(v));
  })));
  if (!rows.length) body.push(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body));
}

function panel(title, ...children) { return h("div", { class: "panel" }, h("h2", {}, title), ...children); }
function card(label, value, id) { return h("div", { class: "card", id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value)); }

function bar(used, limit) {
  const frac = limit > 0 ? used / limit : 0;
  return h("div", { class: "bar" + (frac >= 1 ? " over" : ""), title: pct(frac) },
    h("span", { style: null, "data-w": Math.min(100, frac * 100).toFixed(1) }));
}

// -- charts: inline SVG ------------------------------------------------------------------------------
const COLORS = ["#2563eb", "#f59e0b", "#dc2626", "#7c3aed", "#059669"];

function lineChart(labels, series, fmt) {
  const W = 600, H = 180, L = 72, B = 22, T = 8;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const max = Math.max(1e-12, ...all);
  const x = (i) => L + (labels.length <= 1 ? 0 : (i * (W - L - 8)) / (labels.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  add("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  add("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmt(max));
  add("text", { x: L - 4, y: H - B, "text-anchor": "end" }, fmt(0));
  if (labels.length) {
    add("text", { x: L, y: H - 6 }, bucketLabel(labels[0]));
    add("text", { x: W - 4, y: H - 6, "text-anchor": "end" }, bucketLabel(labels[labels.length - 1]));
  }
  series.forEach((s, si) => {
    const pts = s.values.map((v, i) => v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`).filter(Boolean);
    add("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[si % COLORS.length], "stroke-width": 2 });
    s.values.forEach((v, i) => {
      if (v === null) return;
      const dot = add("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: COLORS[si % COLORS.length] });
      const tip = document.createElementNS("http://www.w3.org/2000/svg", "title");
      tip.textContent = `${s.name} ${bucketLabel(labels[i])}: ${fmt(v)}`;
      dot.append(tip);
    });
  });
  const legend = h("div", { class: "legend" }, series.map((s, si) =>
    h("span", {}, h("i", { "data-color": COLORS[si % COLORS.length] }), s.name)));
  return h("div", {}, svg, legend);
}

function paint(root) {
  // Widths and colours set from data-* (the page's CSP allows no inline style attributes).
  root.querySelectorAll("[data-w]").forEach((el) => { el.style.width = el.dataset.w + "%"; });
  root.querySelectorAll("[data-color]").forEach((el) => { el.style.background = el.dataset.color; });
}

// -- pages ---------------------------------------------------------------------------------------------
const period = () => $("period").value;

async function renderOverview(root) {
  const d = await api("GET", `/admin/overview?since=${period()}`);
  const t = d.totals;
  root.append(h("div", { class: "cards" },
    card("Spend", usd(t.cost_usd), "kpi-spend"), card("Requests", num(t.requests), "kpi-requests"),
    card("Tokens in / out", `${num(t.prompt_tokens)} / ${num(t.completion_tokens)}`, "kpi-tokens"),
    card("Error rate", pct(t.error_rate), "kpi-errors"), card("Unpriced requests", num(t.unpriced))));
  const labels = d.series.map((r) => r.bucket);
  root.append(h("div", { class: "grid2" },
    panel(`Spend per ${d.step}`, lineChart(labels, [{ name: "spend", values: d.series.map((r) => r.cost_usd) }], usd)),
    panel(`Requests per ${d.step}`, lineChart(labels, [
      { name: "requests", values: d.series.map((r) => r.requests) },
      { name: "errors", values: d.series.map((r) => r.errors) }], num))));
  const tops = [["team", "Top teams"], ["app", "Top apps (key names)"], ["user", "Top users"], ["tag", "Top features (tags)"], ["model", "Top models"]];
  root.append(h("div", { class: "grid2" }, tops.map(([dim, title]) => panel(title, table([
    { label: dim, get: (r) => r[dim] === null ? "(none)" : r[dim] },
    { label: "requests", num: true, get: (r) => num(r.requests) },
    { label: "tokens", num: true, get: (r) => num(r.prompt_tokens + r.completion_tokens) },
    { label: "spend", num: true, get: (r) => usd(r.cost_usd) }], d.top[dim])))));
  root.append(panel("Budget use per team", table([
    { label: "team", get: (r) => r.name }, { label: "period", get: (r) => r.period },
    { label: "spent", num: true, get: (r) => usd(Number(r.spent_usd)) },
    { label: "limit", num: true, get: (r) => usd(Number(r.limit_usd)) },
    { label: "use", get: (r) => bar(Number(r.spent_usd) + Number(r.reserved_usd), Number(r.limit_usd)) },
    { label: "resets", get: (r) => r.resets_at.slice(0, 16) }], d.budgets)));
}

async function renderReliability(root) {
  const d = await api("GET", `/admin/reliability?since=${period()}`);
  const lat = d.over_time.filter((r) => r.metric === "latency");
  const ttft = d.over_time.filter((r) => r.metric === "ttft");
  const chart = (rows) => lineChart(rows.map((r) => r.bucket), ["p50", "p95", "p99"].map((p) => ({ name: p, values: rows.map((r) => r[p]) })), ms);
  root.append(h("div", { class: "grid2" },
    panel(`Latency per ${d.step} (all models)`, chart(lat)),
    panel(`Time to first token per ${d.step} (streams)`, chart(ttft)),
    panel("Errors by source and kind", table([
      { label: "source", get: (r) => r.source }, { label: "kind", get: (r) => r.kind },
      { label: "requests", num: true, get: (r) => num(r.requests) }], d.errors, null, "no errors"))));
  const pcols = ["p50", "p95", "p99", "p999"].map((p) => ({ label: p, num: true, get: (r) => ms(r[p]) }));
  root.append(panel("Latency and time to first token by model and provider", table([
    { label: "model", get: (r) => r.model }, { label: "provider", get: (r) => r.provider },
    { label: "metric", get: (r) => r.metric === "ttft" ? "time to first token" : "latency" },
    { label: "answers", num: true, get: (r) => num(r.count) }, ...pcols], d.latency)));
  root.append(panel("Retries and fallbacks", table([
    { label: "model", get: (r) => r.model }, { label: "provider", get: (r) => r.provider },
    { label: "requests", num: true, get: (r) => num(r.requests) }, { label: "errors", num: true, get: (r) => num(r.errors) },
    { label: "retried", num: true, get: (r) => num(r.retried) }, { label: "extra attempts", num: true, get: (r) => num(r.extra_attempts) },
    { label: "fallbacks", num: true, get: (r) => num(r.fallbacks) }, { label: "mean latency", num: true, get: (r) => ms(r.mean_latency_ms) }], d.attempts)));
  root.append(panel("Breakers now (this replica)", table([
    { label: "provider", get: (r) => r.provider }, { label: "model", get: (r) => r.model },
    { label: "state", get: (r) => h("span", { class: "state-" + r.state }, r.state) },
    { label: "failures in a row", num: true, get: (r) => num(r.consecutive_failures) },
    { label: "in flight", num: true, get: (r) => num(r.in_flight) },
    { label: "latency (avg)", num: true, get: (r) => ms(r.latency_ms) }, { label: "last error", get: (r) => r.last_error }],
  d.breakers.targets || [])));
}

const FILTERS = ["since", "until", "team", "key", "user", "model", "status", "route", "tag", "id"];

async function renderRequests(root) {
  const form = h("form", { class: "inline", id: "req-filter" }, FILTERS.map((f) =>
    h("label", {}, f, h("input", { name: f, id: `f-${f}`, size: f === "id" ? 22 : 10,
      placeholder: f === "since" || f === "until" ? "24h / 2026-11-01" : f === "status" ? "429 / 5xx / error" : "" }))),
  h("button", { type: "submit", class: "primary", id: "req-apply" }, "Filter"));
  const out = h("div", { id: "req-table" });
  const detail = h("div", { id: "req-detail" });
  root.append(panel("Filter", form), out, detail);
  const cursors = [];
  const load = async (before) => {
    const q = new URLSearchParams();
    for (const f of FILTERS) { const v = form.elements[f].value.trim(); if (v) q.set(f, v); }
    if (before) q.set("before", before);
    q.set("limit", "50");
    const d = await api("GET", `/admin/requests?${q}`);
    out.replaceChildren(panel(`Requests (newest first, ${d.data.length} shown)`, table([
      { label: "time", get: (r) => when(r.ts) }, { label: "id", get: (r) => r.id },
      { label: "team", get: (r) => r.team }, { label: "user", get: (r) => r.user },
      { label: "model", get: (r) => r.served_model && r.served_model !== r.requested_model ? `${r.requested_model} → ${r.served_model}` : r.requested_model },
      { label: "provider", get: (r) => r.provider }, { label: "route", get: (r) => r.route },
      { label: "status", num: true, get: (r) => r.status }, { label: "tokens", num: true, get: (r) => num(r.prompt_tokens + r.completion_tokens) },
      { label: "cost", num: true, get: (r) => costOf(r) },
      { label: "latency", num: true, get: (r) => ms(r.latency_ms) }, { label: "attempts", num: true, get: (r) => r.attempts },
      { label: "tags", get: (r) => h("span", {}, r.tags.map((t) => h("span", { class: "tag" }, t))) }],
    d.data, (r) => showRequest(detail, r.id)),
    h("div", { class: "toolbar" },
      h("button", { type: "button", disabled: cursors.length === 0, onclick: () => { cursors.pop(); load(cursors[cursors.length - 1]); } }, "Newer"),
      h("button", { type: "button", id: "req-older", disabled: !d.next_before, onclick: () => { cursors.push(d.next_before); load(d.next_before); } }, "Older"))));
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); cursors.length = 0; load().catch(showError); });
  await load();
}

async function showRequest(where, id) {
  const r = await api("GET", `/admin/requests/${encodeURIComponent(id)}`);
  where.replaceChildren(panel(`Request ${r.id}`,
    table([{ label: "field", get: (x) => x[0] }, { label: "value", get: (x) => x[1] }], [
      ["time", when(r.ts)], ["team / key / user", `${r.team || "-"} / ${r.key_id || "-"} / ${r.user || "-"}`],
      ["model asked / served", `${r.requested_model || "-"} / ${r.served_model || "-"}`],
      ["status", `${r.status}${r.error_kind ? ` (${r.error_source} ${r.error_kind}: ${r.error_message || ""})` : ""}`],
      ["route reason", r.route_reason || "-"],
      ["tokens in / out / cached / reasoning", `${r.prompt_tokens} / ${r.completion_tokens} / ${r.cached_tokens} / ${r.reasoning_tokens}`],
      ["cost", r.cost_usd === null ? costOf(r) : `${usd(r.cost_usd)} (${num(r.cost_nusd)} nano-USD${r.cost_estimated ? ", estimated" : ""})`],
      ["latency / first token", `${ms(r.latency_ms)} / ${ms(r.ttft_ms)}`],
      ["payload", r.payload === null ? "not stored" : r.payload]]),
    h("h2", {}, "Attempts"),
    table([{ label: "#", get: (a) => a.i }, { label: "provider", get: (a) => a.provider }, { label: "model", get: (a) => a.model },
      { label: "status", get: (a) => a.status }, { label: "error", get: (a) => a.error_kind }, { label: "latency", num: true, get: (a) => ms(a.latency_ms) }],
    r.attempts_detail.map((a, i) => ({ ...a, i: i + 1 })))));
}

function costOf(r) {
  if (r.cost_usd !== null) return usd(r.cost_usd);
  return r.prompt_tokens + r.completion_tokens > 0 ? "unpriced" : "-";
}

function teamsOf() { return state.me.teams || state.teamNames || []; }

async function renderKeys(root) {
  const d = await api("GET", "/admin/keys");
  if (!state.me.teams && !state.teamNames) state.teamNames = (await api("GET", "/admin/teams")).data.map((t) => t.team);
  const msg = h("div", { id: "key-secret" });
  if (state.me.can_write) {
    const form = h("form", { class: "inline", id: "key-create" },
      h("label", {}, "team", h("select", { name: "team", id: "new-team" }, teamsOf().map((t) => h("option", { value: t }, t)))),
      h("label", {}, "name", h("input", { name: "name", id: "new-name", size: 14 })),
      h("label", {}, "user", h("input", { name: "user", size: 10 })),
      h("label", {}, "rpm", h("input", { name: "rpm", type: "number", min: 1, size: 6 })),
      h("label", {}, "budget USD", h("input", { name: "budget_usd", type: "number", min: 0, step: "any", size: 8 })),
      h("label", {}, "period", h("select", { name: "budget_period" }, ["monthly", "weekly", "daily"].map((p) => h("option", {}, p)))),
      h("button", { type: "submit", class: "primary", id: "new-create" }, "Create key"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { team: form.elements.team.value };
      for (const f of ["name", "user"]) if (form.elements[f].value.trim()) body[f] = form.elements[f].value.trim();
      if (form.elements.rpm.value) body.rpm = Number(form.elements.rpm.value);
      if (form.elements.budget_usd.value) { body.budget_usd = Number(form.elements.budget_usd.value); body.budget_period = form.elements.budget_period.value; }
      try {
        const made = await api("POST", "/admin/keys", body);
        await show("keys");
        $("key-secret").replaceChildren(h("p", { class: "secret" }, "New key (shown only this once, store it now): ",
          h("code", { id: "new-secret" }, made.key)));
      } catch (err) { showError(err); }
    });
    root.append(panel("Create a key", form), msg);
  }
  root.append(panel("Keys", table([
    { label: "id", get: (k) => k.id }, { label: "prefix", get: (k) => k.prefix + "…" }, { label: "team", get: (k) => k.team },
    { label: "name", get: (k) => k.name }, { label: "user", get: (k) => k.user },
    { label: "rpm", num: true, get: (k) => k.rpm }, { label: "tpm", num: true, get: (k) => k.tpm },
    { label: "budget", num: true, get: (k) => k.budget_usd === null ? null : `${usd(k.budget_usd)} ${k.budget_period}` },
    { label: "created", get: (k) => k.created_at.slice(0, 16) },
    { label: "state", get: (k) => k.revoked_at ? `revoked ${k.revoked_at.slice(0, 16)}` : "active" },
    { label: "", get: (k) => state.me.can_write && !k.revoked_at ? h("span", {},
      h("button", { type: "button", class: "danger", "data-revoke": k.id, onclick: () => revoke(k) }, "Revoke"), " ",
      h("button", { type: "button", "data-limits": k.id, onclick: () => limits(k) }, "Limits")) : "" }], d.data)));
}

async function revoke(k) {
  if (!window.confirm(`Revoke ${k.name || k.id}? Requests with it are refused at once.`)) return;
  try { await api("DELETE", `/admin/keys/${encodeURIComponent(k.id)}`); await show("keys"); } catch (err) { showError(err); }
}

async function limits(k) {
  const ask = (label, cur) => window.prompt(`${label} for ${k.name || k.id} (empty = no limit)`, cur === null ? "" : String(cur));
  const rpm = ask("Requests per minute", k.rpm); if (rpm === null) return;
  const budget = ask("Budget in USD per " + (k.budget_period || "month"), k.budget_usd); if (budget === null) return;
  try {
    await api("PATCH", `/admin/keys/${encodeURIComponent(k.id)}`, {
      rpm: rpm.trim() ? Number(rpm) : null, budget_usd: budget.trim() ? Number(budget) : null });
    await show("keys");
  } catch (err) { showError(err); }
}

async function renderTeams(root) {
  const d = await api("GET", `/admin/teams?since=${period()}`);
  for (const t of d.data) {
    const b = t.budget;
    root.append(panel(`Team ${t.team}`, h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Policy (from the policy file, read-only)"), h("pre", {}, JSON.stringify(t.policy, null, 2))),
      h("div", {},
        h("div", { class: "cards" }, card("Spend", usd(t.spend ? t.spend.cost_usd : 0)), card("Requests", num(t.spend ? t.spend.requests : 0))),
        b ? h("div", {}, `Budget ${usd(Number(b.spent_usd))} of ${usd(Number(b.limit_usd))} (${b.period})`, bar(Number(b.spent_usd), Number(b.limit_usd))) : h("p", { class: "muted" }, "no team budget"))),
    h("h2", {}, "Members' keys"),
    table([{ label: "id", get: (k) => k.id }, { label: "name", get: (k) => k.name }, { label: "user", get: (k) => k.user },
      { label: "state", get: (k) => k.revoked_at ? "revoked" : "active" }], t.keys)));
  }
}

async function renderPolicy(root) {
  const d = await api("GET", "/admin/policy");
  root.append(h("div", { class: "cards" }, card("Version", d.version, "policy-version"), card("Loaded", d.loaded_at.replace("T", " "))),
    panel("Policy in force (secrets shown as where they are read from)", h("pre", { id: "policy-doc" }, JSON.stringify(d.policy, null, 2))));
}

async function renderAudit(root) {
  const d = await api("GET", "/admin/audit?limit=200");
  const change = (e) => {
    if (!e.before) return "created";
    const keys = [...new Set([...Object.keys(e.before || {}), ...Object.keys(e.after || {})])];
    return keys.filter((k) => JSON.stringify(e.before[k]) !== JSON.stringify((e.after || {})[k]))
      .map((k) => `${k}: ${JSON.stringify(e.before[k])} → ${JSON.stringify((e.after || {})[k])}`).join(", ");
  };
  root.append(panel("Changes, newest first", table([
    { label: "when", get: (e) => e.at.replace("T", " ") }, { label: "who", get: (e) => e.actor }, { label: "via", get: (e) => e.via },
    { label: "action", get: (e) => e.action }, { label: "target", get: (e) => e.target }, { label: "team", get: (e) => e.team },
    { label: "change", get: change }], d.data)));
}

// -- shell ---------------------------------------------------------------------------------------------
function showError(err) {
  if (err && err.status === 401) { signedOut(); return; }
  $("page-error").textContent = err && err.message ? err.message : String(err);
}

async function show(page) {
  if (!PAGES[page]) page = "overview";
  state.page = page;
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  $("page-title").textContent = PAGES[page].title;
  $("period-box").hidden = !PAGES[page].period;
  $("page-error").textContent = "";
  const root = h("div", { id: `page-${page}` });
  try {
    await PAGES[page].render(root);
  } catch (err) { showError(err); }
  paint(root);
  $("content").replaceChildren(root);
  document.body.dataset.loaded = page;
}

function signedIn(me) {
  state.me = me;
  $("signin").hidden = true;
  $("page").hidden = false;
  $("nav").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `${me.name} · ${me.role}${me.teams ? " (" + me.teams.join(", ") + ")" : ""}`;
  show((location.hash || "#overview").slice(1));
}

function signedOut() {
  state.me = null;
  state.teamNames = null;
  $("signin").hidden = false;
  $("page").hidden = true;
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  document.body.dataset.loaded = "signin";
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("signin-error").textContent = "";
  try {
    const me = await api("POST", "/ui/api/session", { key: $("signin-key").value });
    $("signin-key").value = "";
    signedIn(me);
  } catch (err) { $("signin-error").textContent = err.message; }
});
$("signout").addEventListener("click", async () => {
  try { await api("DELETE", "/ui/api/session"); } catch (err) { /* signed out either way */ }
  signedOut();
});
$("period").addEventListener("change", () => show(state.page));
window.addEventListener("hashchange", () => { if (state.me) show(location.hash.slice(1)); });

api("GET", "/ui/api/session").then((me) => (me.signed_in ? signedIn(me) : signedOut()), signedOut);
