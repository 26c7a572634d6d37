// The Attest explorer: one page per view, each addressed by the URL's fragment
// (#/block/12, #/job/ID, ...), drawn from the node's JSON API and kept current by its event
// stream (/v1/events): every committed block redraws the view that is open (at most once a
// second). No library, no network access beyond this node. docs/EXPLORER.md describes it.
"use strict";

const view = document.getElementById("view");
const heightEl = document.getElementById("height");
const liveEl = document.getElementById("live");

// ---------- helpers ----------

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}
const short = (hex) => (hex && hex.length > 16 ? hex.slice(0, 8) + "…" + hex.slice(-6) : hex || "");
const acct = (id) => id ? `<a class="mono" href="#/account/${esc(id)}" title="${esc(id)}">${esc(short(id))}</a>` : "-";
const jobLink = (id) => id ? `<a class="mono" href="#/job/${esc(id)}" title="${esc(id)}">${esc(short(id))}</a>` : "-";
const blockLink = (h) => h != null ? `<a href="#/block/${esc(h)}">${esc(h)}</a>` : "-";
const num = (n) => n == null ? "-" : Number(n).toLocaleString("en-US");
const ms = (n) => n == null ? "-" : n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(2)} s`;
const when = (t) => t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "-";
const ago = (t) => {
  if (!t) return "-";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};
const left = (t) => {
  const s = Math.round((t - Date.now()) / 1000);
  return s <= 0 ? "expired" : s < 90 ? `${s} s` : `${Math.round(s / 60)} min`;
};
const chip = (text, kind) => `<span class="chip ${kind || ""}">${esc(text)}</span>`;
const PHASE = { open: "", committed: "warn", disputed: "bad", settled: "ok", refunded: "bad" };
const phaseChip = (p) => chip(p, PHASE[p]);
const table = (head, rows, empty) => rows.length
  ? `<div class="scroll"><table><thead><tr>${head.map((h) => `<th${h.startsWith("#") ? ' class="num"' : ""}>${esc(h.replace(/^#/, ""))}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`
  : `<p class="muted">${esc(empty || "None yet.")}</p>`;
const tr = (cells) => `<tr>${cells.map((c) => (typeof c === "object" && c && "num" in c) ? `<td class="num">${c.num}</td>` : `<td>${c}</td>`).join("")}</tr>`;
const N = (v) => ({ num: v });
const card = (k, v, id) => `<div class="card"><div class="k">${esc(k)}</div><div class="v"${id ? ` id="${id}"` : ""}>${v}</div></div>`;
const kv = (pairs) => `<dl class="kv">${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`;

/** The height the header shows (the newest block this page has heard of). */
const headHeight = () => Number(heightEl.textContent.replace(/,/g, "")) || 0;

async function api(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error(body.detail || `${path}: HTTP ${r.status}`);
    e.status = r.status;
    e.code = body.error;
    throw e;
  }
  return body;
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  const rank = Math.max(1, Math.ceil((p * sorted.length) / 100));
  return sorted[rank - 1];
}

// ---------- charts (inline SVG) ----------

function sparkline(values, opts = {}) {
  const w = 600, h = opts.h || 90, pad = 22;
  if (values.length < 2) return `<p class="muted">Not enough blocks yet.</p>`;
  const max = Math.max(...values, 1);
  const x = (i) => pad + (i * (w - 2 * pad)) / (values.length - 1);
  const y = (v) => h - pad + 4 - ((h - 2 * pad) * v) / max;
  const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return `<svg class="chart" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(opts.label || "")}">
    <line class="axis" x1="${pad}" y1="${h - pad + 4}" x2="${w - pad}" y2="${h - pad + 4}"/>
    <text x="${pad}" y="12">${esc(opts.top || "")}${esc(ms(Math.round(max)))}</text>
    <polyline class="line" points="${pts}"/></svg>`;
}

function histogram(samples) {
  if (!samples.length) return `<p class="muted">No verdicts yet.</p>`;
  const w = 600, h = 160, pad = 26, bins = 20;
  const max = Math.max(...samples), min = Math.min(...samples);
  const width = Math.max(1, (max - min) / bins);
  const counts = new Array(bins).fill(0);
  for (const s of samples) counts[Math.min(bins - 1, Math.floor((s - min) / width))]++;
  const top = Math.max(...counts);
  const bw = (w - 2 * pad) / bins;
  const bars = counts.map((c, i) => {
    const bh = ((h - 2 * pad) * c) / top;
    return `<rect class="bar" x="${(pad + i * bw + 1).toFixed(1)}" y="${(h - pad - bh).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${bh.toFixed(1)}"><title>${ms(Math.round(min + i * width))}–${ms(Math.round(min + (i + 1) * width))}: ${c}</title></rect>`;
  }).join("");
  return `<svg class="chart" viewBox="0 0 ${w} ${h}" role="img" aria-label="validation latency histogram">
    ${bars}<line class="axis" x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}"/>
    <text x="${pad}" y="${h - 8}">${esc(ms(min))}</text><text x="${w - pad - 60}" y="${h - 8}">${esc(ms(max))}</text>
    <text x="${pad}" y="14">${top} verdicts</text></svg>`;
}

function percentilesOverTime(samples) {
  // samples: [height, time_ms, latency_ms, agree], oldest first; windows of 20 verdicts.
  const size = 20, rows = [];
  for (let i = 0; i + size <= samples.length; i += Math.max(1, Math.floor(size / 2))) {
    const win = samples.slice(i, i + size).map((s) => s[2]).sort((a, b) => a - b);
    rows.push([samples[i + size - 1][0], pct(win, 50), pct(win, 90), pct(win, 99)]);
  }
  if (rows.length < 2) return `<p class="muted">Percentiles over time need at least ${size + 10} verdicts; ${samples.length} so far.</p>`;
  const w = 600, h = 150, pad = 26;
  const max = Math.max(...rows.map((r) => r[3]), 1);
  const x = (i) => pad + (i * (w - 2 * pad)) / (rows.length - 1);
  const y = (v) => h - pad - ((h - 2 * pad) * v) / max;
  const line = (k, cls) => `<polyline class="${cls}" points="${rows.map((r, i) => `${x(i).toFixed(1)},${y(r[k]).toFixed(1)}`).join(" ")}"/>`;
  return `<svg class="chart" viewBox="0 0 ${w} ${h}" role="img" aria-label="validation latency percentiles over time">
    <line class="axis" x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}"/>
    ${line(1, "line")}${line(2, "p90")}${line(3, "p99")}
    <text x="${pad}" y="14">${esc(ms(max))} · p50 (blue) p90 (amber) p99 (red), windows of ${size} verdicts</text>
    <text x="${pad}" y="${h - 8}">height ${rows[0][0]}</text><text x="${w - pad - 80}" y="${h - 8}">height ${rows[rows.length - 1][0]}</text></svg>`;
}

// ---------- pages ----------

async function pageNetwork() {
  const [status, vals, recent] = await Promise.all([
    api("/v1/status"), api("/v1/validators"), api("/v1/recent?parts=blocks"),
  ]);
  const blocks = recent.blocks.slice(-61);
  const intervals = blocks.slice(1).map((b, i) => b.time_ms - blocks[i].time_ms);
  let rates = "-", jobs = "-", settled = "-";
  if (blocks.length > 1) {
    const span = (blocks[blocks.length - 1].time_ms - blocks[0].time_ms) / 1000;
    const rest = blocks.slice(1);
    if (span > 0) {
      rates = (rest.reduce((a, b) => a + b.txs, 0) / span).toFixed(1);
      jobs = (rest.reduce((a, b) => a + b.jobs_opened, 0) / span).toFixed(2);
      settled = (rest.reduce((a, b) => a + b.closed, 0) / span).toFixed(2);
    }
  }
  const sorted = [...intervals].sort((a, b) => a - b);
  const valRows = vals.validators.map((v) => tr([acct(v.account), N(num(v.power)),
    N(((100 * v.power) / Math.max(1, vals.total_power)).toFixed(1) + "%")]));
  const latest = [...recent.blocks].reverse().slice(0, 8).map((b) => tr([blockLink(b.height),
    `<span class="mono">${esc(short(b.hash))}</span>`, N(b.txs), N(b.jobs_opened), ago(b.time_ms)]));
  return `<section data-page="network">
    <h1>Network <span class="muted mono">${esc(status.chain_id)}</span></h1>
    <div class="cards">
      ${card("height", num(status.height), "net-height")}
      ${card("peers", num(status.peers))}
      ${card("mempool", num(status.mempool))}
      ${card("validators", num(vals.validators.length))}
      ${card("block time p50", ms(pct(sorted, 50)))}
      ${card("tx/s", rates)}
      ${card("jobs opened/s", jobs)}
      ${card("jobs closed/s", settled)}
    </div>
    <p class="muted">Rates over the last ${Math.max(0, blocks.length - 1)} blocks this node committed, in block time.
      ${status.state_sync ? `State sync: ${esc(status.state_sync)}.` : ""}</p>
    <h2>Block time</h2>
    ${sparkline(intervals, { label: "block intervals", top: "max " })}
    <h2>Latest blocks</h2>
    ${table(["height", "hash", "#txs", "#jobs opened", "time"], latest)}
    <h2>Validators of height ${num(vals.height)}</h2>
    ${table(["account", "#power", "#share"], valRows)}
    <h2>This node</h2>
    ${kv([["peer id", `<span class="mono">${esc(status.peer_id)}</span>`], ["account", acct(status.account)],
      ["genesis hash", `<span class="mono">${esc(status.genesis_hash)}</span>`],
      ["blocks from", status.base_height ? `height ${num(status.base_height)} (joined by state sync)` : "genesis"]])}
  </section>`;
}

async function pageBlocks() {
  const recent = await api("/v1/recent?parts=blocks");
  const rows = [...recent.blocks].reverse().slice(0, 100).map((b) => tr([blockLink(b.height),
    `<span class="mono">${esc(short(b.hash))}</span>`, N(b.txs), N(b.jobs_opened), N(b.results), N(b.verdicts), N(b.closed), ago(b.time_ms)]));
  return `<section data-page="blocks"><h1>Blocks</h1>
    <form class="inline" data-go="block">
      <label>Go to height <input name="h" inputmode="numeric"></label><button>Open</button></form>
    <h2>Latest committed</h2>
    ${table(["height", "hash", "#txs", "#opened", "#results", "#verdicts", "#closed", "time"], rows)}</section>`;
}

async function pageBlock(h) {
  const [b, txs] = await Promise.all([api(`/v1/blocks/${h}`), api(`/v1/blocks/${h}/txs`)]);
  const rows = txs.txs.map((t) => tr([N(t.index), `<a href="#/block/${h}/tx/${t.index}">${esc(t.kind)}</a>`,
    acct(t.sender), N(num(t.nonce)), N(num(t.fee)), `<span class="mono">${esc(short(t.hash))}</span>`]));
  const signers = b.certificate.validators.map(acct).join(" ");
  return `<section data-page="block"><h1>Block ${num(b.height)}</h1>
    <p>${h > 1 ? `<a href="#/block/${h - 1}">← ${h - 1}</a>` : ""} ${h < headHeight() ? `<a href="#/block/${h + 1}">${h + 1} →</a>` : ""}</p>
    ${kv([["hash", `<span class="mono">${esc(b.hash)}</span>`], ["previous", `<span class="mono">${esc(b.prev)}</span>`],
      ["time", `${when(b.time_ms)} (${ago(b.time_ms)})`], ["proposer", acct(b.proposer)],
      ["state root (after block " + (h - 1) + ")", `<span class="mono">${esc(b.state_root)}</span>`],
      ["tx root", `<span class="mono">${esc(b.tx_root)}</span>`],
      ["certificate", `round ${b.certificate.round}, ${b.certificate.signers} precommits`],
      ["signers", signers || "-"]])}
    <h2>Transactions (${num(txs.total)})</h2>
    ${table(["#", "kind", "sender", "#nonce", "#fee", "hash"], rows, "No transactions in this block.")}
    ${txs.next != null ? `<p class="muted">Showing the first ${txs.txs.length}; the rest are at /v1/blocks/${h}/txs?from=${txs.next}.</p>` : ""}
  </section>`;
}

function linkHex(json) {
  // Pretty JSON with 64-hex job ids linked (only the field named job).
  return esc(JSON.stringify(json, null, 2)).replace(/(&quot;job&quot;: &quot;)([0-9a-f]{64})/g,
    (_, pre, id) => `${pre}<a href="#/job/${id}">${id}</a>`);
}

async function pageTx(h, i) {
  const t = await api(`/v1/blocks/${h}/txs/${i}`);
  const job = t.kind === "open_job" ? `<p class="note">This transaction opened job ${jobLink(t.hash)} (a job's id is its OpenJob's hash).</p>` : "";
  return `<section data-page="tx"><h1>Transaction ${esc(short(t.hash))}</h1>${job}
    ${kv([["hash", `<span class="mono">${esc(t.hash)}</span>`], ["block", `${blockLink(t.height)}, index ${t.index}`],
      ["kind", esc(t.kind)], ["sender", acct(t.sender)], ["nonce", num(t.nonce)], ["fee", num(t.fee)],
      ["signature", `<span class="mono">${esc(short(t.signature))}</span>`]])}
    <h2>Action</h2><pre>${linkHex(t.action)}</pre></section>`;
}

async function pageTxByHash(hash) {
  // Where the transaction is, from this node's transaction index; then its page.
  const at = await api(`/v1/txs/${hash}`);
  if (at.state !== "committed") {
    return `<section data-page="tx"><h1>Transaction ${esc(short(hash))}</h1>
      <p class="note">Pending: admitted to this node's mempool, not in a block yet. This page follows it.</p></section>`;
  }
  return pageTx(at.height, at.index);
}

async function pageJobs() {
  const recent = await api("/v1/recent?parts=jobs");
  const rows = recent.jobs.map((j) => tr([jobLink(j.job), esc(j.model), esc(j.device), acct(j.provider),
    phaseChip(j.phase), j.verdict == null ? "-" : j.verdict ? chip("agreed", "ok") : chip("disagreed", "bad"),
    N(ms(j.validation_latency_ms)), blockLink(j.opened.height)]));
  return `<section data-page="jobs"><h1>Jobs</h1>
    <p class="muted">The newest ${recent.jobs.length} jobs opened in blocks this node committed. Any job by id: the search box.</p>
    ${table(["job", "model", "device", "provider", "phase", "verdict", "#validation latency", "opened"], rows)}</section>`;
}

const ASSURANCE = {
  no_result: ["No result yet.", ""],
  unchecked: ["Nobody has checked this result. It matches nothing but the provider's own commitment; anyone staked, or the client, may still challenge it until it settles.", "warn"],
  check_pending: ["A checker was drawn and has not yet posted its verdict.", "warn"],
  checked: ["Checked: the drawn checker re-executed the job and agreed with the committed result.", "ok"],
  challenged: ["Challenged: a dispute is bisecting the traces.", "bad"],
  upheld_in_dispute: ["Upheld in a dispute: the provider's result won the bisection.", "ok"],
  overturned: ["Overturned: the provider lost the dispute; the client was refunded.", "bad"],
  settled_unchecked: ["Settled unchecked: nobody checked this result. It matched the provider's commitment, which is not a check.", "warn"],
  no_result_refunded: ["Refunded: the provider missed its deadline.", "bad"],
};

async function pageJob(id) {
  const j = await api(`/v1/jobs/${id}`);
  let output = null;
  if (j.output_held) output = await api(`/v1/jobs/${id}/output`).catch(() => null);
  const [text, kind] = ASSURANCE[j.assurance.state] || [j.assurance.state, ""];
  const t = j.timeline || {};
  const final = j.phase === "settled" || j.phase === "refunded";
  const stage = (name, s, extra) => `<li class="${s ? "done" : ""}"><b>${esc(name)}</b> ${s ? `at ${blockLink(s.height)} · ${when(s.time_ms)}${extra || ""}` : `<span class="muted">${final ? "none" : "not yet"}</span>`}</li>`;
  const since = (s) => (s && t.opened ? ` · +${ms(s.time_ms - t.opened.time_ms)}` : "");
  const timeline = j.timeline ? `<ol class="timeline">
      ${stage("opened", t.opened)}
      ${stage("result committed", t.committed, since(t.committed))}
      ${stage("check drawn", t.check_assigned, since(t.check_assigned))}
      ${stage("verdict", t.verdict, t.verdict ? ` · ${t.verdict.agree ? "agreed" : "disagreed"}${since(t.verdict)}` : "")}
      ${t.dispute_opened ? stage("dispute opened", t.dispute_opened, since(t.dispute_opened)) : ""}
      ${t.dispute_opened ? `<li class="${t.dispute_rounds ? "done" : ""}"><b>dispute rounds</b> ${num(t.dispute_rounds)}</li>` : ""}
      ${t.dispute_opened ? stage("dispute resolved", t.dispute_resolved, since(t.dispute_resolved)) : ""}
      ${stage(j.phase === "refunded" ? "refunded" : "settled", t.closed, since(t.closed))}
    </ol>` : `<p class="muted">This node committed none of this job's blocks, so it has no timeline for it.</p>`;
  const d = j.dispute;
  const faults = j.faults.map((f) => tr([acct(f.who), esc(f.reason)]));
  return `<section data-page="job" data-phase="${esc(j.phase)}"><h1>Job ${esc(short(j.id))}</h1>
    <p>${phaseChip(j.phase)} <span class="muted mono">${esc(j.id)}</span></p>
    <div class="note ${kind}" id="assurance"><b>What stands behind the result:</b> ${esc(text)}
      ${j.assurance.checker ? ` Checker ${acct(j.assurance.checker)}.` : ""}${j.assurance.challenger ? ` Challenger ${acct(j.assurance.challenger)}.` : ""}</div>
    ${kv([["client", acct(j.client)], ["provider", acct(j.provider)], ["model on device", `${esc(j.model)} on ${esc(j.device)}`],
      ["assurance bought", esc(j.check_level)], ["tokens", num(j.max_tokens)], ["price per token", num(j.price_per_token)],
      ["escrow locked", num(j.escrow)], ["trace steps", num(j.step_count)], ["opened in", `${blockLink(j.opened_at)} (<a href="#/block/${j.opened_at}">its OpenJob</a>)`],
      ["validation latency", t.validation_latency_ms != null ? `<b id="latency">${ms(t.validation_latency_ms)}</b> (verdict block time − result block time)` : "-"]])}
    <h2>Timeline</h2>${timeline}
    ${d ? `<h2>Dispute</h2>${kv([["challenger", acct(d.challenger)], ["bond", num(d.bond)], ["round", `${d.round} of ${d.rounds}`],
      ["agreed up to step", d.agreed_step ?? "none yet"], ["open step", d.open_index ?? "resolution"]])}` : ""}
    ${faults.length ? `<h2>Faults</h2>${table(["who", "reason"], faults)}` : ""}
    <h2>Output</h2>${output ? `<p class="muted">These bytes hash to the provider's committed output hash. That is a match with its commitment, not a check: the assurance above says whether anyone re-executed it.${j.phase === "settled" ? "" : " The job is not settled yet, so a dispute may still overturn it."}</p>
      <pre id="output">${esc(output.output ?? output.output_hex)}</pre>`
      : `<p class="muted">${j.output_held ? "" : "This node holds no output of this job: only the node a job was submitted through fetches it."}</p>`}
  </section>`;
}

async function pageProviders() {
  const ads = (await api("/v1/adverts")).adverts;
  const byProvider = new Map();
  for (const a of ads) if (!byProvider.has(a.provider)) byProvider.set(a.provider, a);
  const ids = [...byProvider.keys()].slice(0, 50);
  const accounts = await Promise.all(ids.map((id) => api(`/v1/accounts/${id}`).catch(() => null)));
  const rows = ids.map((id, i) => {
    const a = byProvider.get(id), r = accounts[i];
    const p = r && r.provider;
    return tr([acct(id), esc(a.device), N(num(a.price_per_token)), N(num(a.free_slots)),
      N((a.tokens_per_sec_milli / 1000).toFixed(0)), N(p ? p.reputation.tier : "-"), N(p ? num(p.jobs.settled) : "-"),
      N(r ? num(r.checks) : "-"), N(r ? `${num(r.disputes_won)} / ${num(r.disputes_lost)}` : "-"),
      N(p ? (p.slashes_total ? chip(num(p.slashes_total), "bad") : "0") : "-"),
      r && r.stake ? chip(r.stake.status, r.stake.status === "active" ? "ok" : "bad") : "-"]);
  });
  const book = ads.map((a) => tr([acct(a.provider), esc(a.device), esc(a.models.join(", ")), N(num(a.free_slots)),
    N(num(a.price_per_token)), N(num(a.seq)), left(a.expires_at_ms)]));
  return `<section data-page="providers"><h1>Providers and market</h1>
    ${table(["provider", "device", "#price/token", "#free slots", "#tokens/s", "#tier", "#settled", "#checks", "#disputes won / lost", "#slashes", "stake"], rows, "No adverts in this node's book.")}
    <p class="muted">Free slots as this node sees them; tokens/s as advertised. Jobs, checks, disputes and slashes are each account's running record in the ledger.</p>
    <h2>Advert book</h2>
    ${table(["provider", "device", "models", "#free", "#price", "#seq", "expires in"], book)}</section>`;
}

async function pageAccount(id) {
  const a = await api(`/v1/accounts/${id}`);
  const s = a.stake, p = a.provider;
  const slashes = p.slashes.map((x) => tr([blockLink(x.height), chip(x.reason, "bad"), N(num(x.amount)),
    x.job ? jobLink(x.job) : x.vote ? `equivocation at height ${x.vote[0]}, round ${x.vote[1]}, ${esc(x.vote[2])}` : "-"]));
  const jobs = (a.recent_jobs || []).map(([h, role, job]) => tr([blockLink(h), esc(role), jobLink(job)]));
  const byPhase = (c) => Object.entries(c).map(([k, v]) => `${esc(k)} ${num(v)}`).join(" · ");
  return `<section data-page="account"><h1>Account ${esc(short(a.account))}</h1>
    <p class="mono muted">${esc(a.account)}</p>
    ${kv([["balance", num(a.balance)], ["nonce", num(a.nonce)],
      ["validator power", a.validator_power != null ? num(a.validator_power) : "not a validator"],
      ["stake", s ? `${num(s.bonded)} bonded, ${chip(s.status, s.status === "active" ? "ok" : "bad")} ${s.eligible ? "" : chip("not eligible", "warn")}` : "none"],
      ["device", s && s.device ? esc(s.device) : "-"], ["node", s ? `<span class="mono">${esc(s.node_peer_id || "")}</span>` : "-"],
      ["probation", s ? `${num(s.probation_left)} jobs left always checked` : "-"],
      ["jobs as provider", byPhase(p.jobs)], ["reputation", `tier ${p.reputation.tier} (${num(p.reputation.settled)} settled, ${num(p.reputation.slashes)} slashes)`],
      ["checks posted", num(a.checks)], ["earned", num(a.earned)], ["penalized", num(a.penalized)],
      ["disputes", `${num(a.disputes_won)} won, ${num(a.disputes_lost)} lost`], ["jobs as client", byPhase(a.client_jobs)]])}
    <h2 id="slashes-heading">Slashes (${num(p.slashes_total)})</h2>
    ${table(["height", "reason", "#amount", "evidence"], slashes, "Never slashed.")}
    <h2>Recent jobs</h2>${table(["height", "role", "job"], jobs, "No jobs in this node's history index.")}</section>`;
}

async function pageVerification() {
  const r = await api("/v1/recent?parts=validation,disputes,slashes");
  const lat = r.validation.map((s) => s[2]).sort((a, b) => a - b);
  const disagree = r.validation.filter((s) => !s[3]).length;
  const disputes = [...r.disputes].reverse().map((d) => tr([jobLink(d.job), acct(d.provider), acct(d.challenger),
    N(`${d.moves.length} / ${d.rounds}`), blockLink(d.opened.height),
    d.resolved ? `${acct(d.resolved.winner)} won` : chip("running", "warn"),
    d.resolved ? esc(d.resolved.end.Reexecuted ? `step ${d.resolved.end.Reexecuted.step} re-executed` : JSON.stringify(d.resolved.end)) : "-"]));
  const slashes = [...r.slashes].reverse().map((x) => tr([blockLink(x.height), acct(x.who), chip(x.reason, "bad"),
    N(num(x.amount)), x.job ? jobLink(x.job) : x.vote ? `votes at ${x.vote[0]}/${x.vote[1]} (${esc(x.vote[2])})` : "-"]));
  return `<section data-page="verification"><h1>Verification</h1>
    <div class="cards">
      ${card("verdicts", num(lat.length))}${card("disagreed", num(disagree))}
      ${card("p50", ms(pct(lat, 50)), "lat-p50")}${card("p90", ms(pct(lat, 90)))}${card("p99", ms(pct(lat, 99)))}
      ${card("disputes", num(r.disputes.length))}${card("slashes", num(r.slashes.length))}
    </div>
    <p class="muted">Validation latency: block time of a verdict minus block time of the result it checks, over the newest ${lat.length} verdicts this node committed since height ${num(r.since)}.</p>
    <h2>Distribution</h2>${histogram(lat)}
    <h2>Over time</h2>${percentilesOverTime(r.validation)}
    <h2>Disputes</h2>${table(["job", "provider", "challenger", "#rounds played", "opened", "outcome", "end"], disputes, "No disputes.")}
    <h2>Slashes</h2>${table(["height", "who", "reason", "#amount", "evidence"], slashes, "No slashes.")}</section>`;
}

async function pageAudit(from, to) {
  const status = await api("/v1/status");
  const form = `<form class="inline" data-go="audit" data-height="${status.height}">
    <label>From <input name="f" inputmode="numeric" value="${esc(from || 1)}"></label>
    <label>To <input name="t" inputmode="numeric" value="${esc(to || status.height)}"></label><button id="run-audit">Run audit</button></form>`;
  const intro = `<section data-page="audit"><h1>Audit</h1>
    <p class="muted">Replays every block from height 1 against the genesis: every signature, certificate, state root and contract rule, and reports on the range.
    This is <b>this node auditing its own store</b>. To check without trusting it, run the command shown below on your own machine.</p>${form}`;
  if (!from) return intro + "</section>";
  let a;
  try {
    a = await api(`/v1/audit?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  } catch (e) {
    return intro + `<p class="error" id="audit-verdict">${esc(e.message)}</p></section>`;
  }
  const rep = a.report, l = rep.validation_latency_ms.all;
  const verdict = rep.ok
    ? `<div class="note ok" id="audit-verdict"><b>Passed.</b> Blocks ${num(rep.first_height)}–${num(rep.last_height)} verified (${num(rep.replayed.to_height)} replayed from genesis).</div>`
    : `<div class="note bad" id="audit-verdict"><b>Failed</b> at height ${esc(rep.failure.height)} (${esc(rep.failure.check)}): ${esc(rep.failure.reason)}</div>`;
  const counted = (p) => Object.entries(p).filter(([k, v]) => k !== "account" && typeof v === "number");
  const providers = rep.providers.map((p) => tr([acct(p.account), ...counted(p).map(([, v]) => N(num(v)))]));
  const provHead = rep.providers.length ? ["provider", ...counted(rep.providers[0]).map(([k]) => "#" + k.replace(/_/g, " "))] : [];
  return intro + verdict + `
    ${kv([["run by", esc(a.run_by)], ["independently", `<code>${esc(a.independent)}</code>`], ["genesis", `<span class="mono">${esc(rep.genesis_hash)}</span>`],
      ["blocks / txs", `${num(rep.blocks)} / ${num(rep.txs)}`], ["signatures verified", num(rep.signatures_verified)],
      ["head", rep.head ? `${blockLink(rep.head.height)} <span class="mono">${esc(short(rep.head.hash))}</span>` : "-"],
      ["jobs", Object.entries(rep.jobs).map(([k, v]) => `${esc(k)} ${num(v)}`).join(" · ")],
      ["validation latency", `${num(l.count)} samples, p50 ${ms(l.p50_ms)}, p90 ${ms(l.p90_ms)}, p99 ${ms(l.p99_ms)}`],
      ["slashes", num(rep.slashes.length)], ["took", `${ms(rep.timing.elapsed_ms)} (${num(rep.timing.signatures_per_sec)} signatures/s)`]])}
    <h2>Providers in the range</h2>${table(provHead, providers, "No provider work in the range.")}</section>`;
}

// ---------- routing and live updates ----------

const routes = [
  [/^#?\/?$/, "network", () => pageNetwork(), true],
  [/^#\/blocks$/, "blocks", () => pageBlocks(), true],
  [/^#\/block\/(\d+)$/, "blocks", (m) => pageBlock(Number(m[1])), false],
  [/^#\/block\/(\d+)\/tx\/(\d+)$/, "blocks", (m) => pageTx(Number(m[1]), Number(m[2])), false],
  [/^#\/tx\/([0-9a-fA-F]{64})$/, "blocks", (m) => pageTxByHash(m[1].toLowerCase()), true],
  [/^#\/jobs$/, "jobs", () => pageJobs(), true],
  [/^#\/job\/([0-9a-fA-F]{64})$/, "jobs", (m) => pageJob(m[1].toLowerCase()), true],
  [/^#\/providers$/, "providers", () => pageProviders(), true],
  [/^#\/account\/([0-9a-fA-F]{64})$/, "providers", (m) => pageAccount(m[1].toLowerCase()), true],
  [/^#\/verification$/, "verification", () => pageVerification(), true],
  [/^#\/audit(?:\/(\d+)\/(\d+))?$/, "audit", (m) => pageAudit(m[1], m[2]), false],
];

let current = null, drawing = false, pending = false, lastDraw = 0;

/** Whether `hash` is still the page the reader is on (a draw that ends after they moved on
 * must not cover the page they moved to). */
const still = (hash) => (location.hash || "#/") === hash;

async function draw(fresh) {
  if (drawing) { pending = true; return; }
  const hash = location.hash || "#/";
  const route = routes.find(([re]) => re.test(hash));
  drawing = true;
  try {
    if (!route) {
      view.innerHTML = `<p class="error">No page at ${esc(hash)}. <a href="#/">Network</a></p>`;
      current = null;
      return;
    }
    const [re, nav, page, live] = route;
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("here", a.dataset.nav === nav));
    current = { hash, live };
    if (fresh) window.scrollTo(0, 0);
    const html = await page(hash.match(re));
    if (still(hash)) view.innerHTML = html;
  } catch (e) {
    if (still(hash)) view.innerHTML = `<p class="error" data-error="${esc(e.code || "")}">${esc(e.message)}</p>`;
  } finally {
    drawing = false;
    lastDraw = Date.now();
    if (pending) { pending = false; setTimeout(() => draw(false), 0); }
  }
}

/** Redraws the open view if it follows the chain and is still the one open, and the reader
 * is not typing in one of its fields. */
function refresh(hash) {
  if (!current || !current.live || current.hash !== hash || !still(hash)) return;
  if (document.activeElement && view.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
  draw(false);
}

function onBlock(height) {
  heightEl.textContent = Number(height).toLocaleString("en-US");
  // At most once a second; checked again when the timer fires, so a view opened meanwhile
  // (an audit, say) is not redrawn by a block that arrived for the one before it.
  if (!current || !current.live) return;
  const hash = current.hash;
  const wait = Math.max(0, 1000 - (Date.now() - lastDraw));
  setTimeout(() => refresh(hash), wait);
}

function connect() {
  const source = new EventSource("/v1/events?kinds=block");
  source.addEventListener("block", (e) => {
    liveEl.classList.add("on");
    try { onBlock(JSON.parse(e.data).height); } catch (_) { /* a malformed frame is skipped */ }
  });
  source.addEventListener("lagged", () => current && refresh(current.hash));
  source.onerror = () => {
    liveEl.classList.remove("on");
    // EventSource reconnects by itself unless the server refused (e.g. 503 at the subscriber cap).
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
  };
}

document.getElementById("search").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = document.getElementById("q").value.trim().toLowerCase();
  if (/^\d+$/.test(q)) location.hash = `#/block/${q}`;
  else if (/^[0-9a-f]{64}$/.test(q)) {
    // A job id, a transaction hash and an account are all 64 hex: a job first, then a
    // committed transaction, else the account.
    const job = await fetch(`/v1/jobs/${q}`).then((r) => r.ok).catch(() => false);
    const tx = job ? false : await fetch(`/v1/txs/${q}`).then((r) => r.ok).catch(() => false);
    location.hash = job ? `#/job/${q}` : tx ? `#/tx/${q}` : `#/account/${q}`;
  } else view.insertAdjacentHTML("afterbegin", `<p class="error">Search takes a height, or a 64-hex job id, transaction hash or account.</p>`);
});

// The forms of the pages (no inline handlers: the page's CSP allows only this script).
view.addEventListener("submit", (e) => {
  const form = e.target;
  e.preventDefault();
  if (form.dataset.go === "block") location.hash = `#/block/${Number(form.h.value) || 1}`;
  if (form.dataset.go === "audit") {
    const from = Number(form.f.value) || 1, to = Number(form.t.value) || Number(form.dataset.height) || 1;
    const target = `#/audit/${from}/${to}`;
    if (location.hash === target) draw(false); else location.hash = target;
  }
});

window.addEventListener("hashchange", () => draw(true));
api("/v1/status").then((s) => { heightEl.textContent = Number(s.height).toLocaleString("en-US"); }).catch(() => {});
draw(true);
connect();
