// ninefold's dashboard: polls the admin API every 2 s, follows /api/v1/events, and
// renders each section as one HTML string. No build step, no dependencies. The admin
// token lives in `token` only (never a cookie, storage or a URL).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
  const enc = encodeURIComponent;

  let token = null; // null: read-only
  let tokenRequired = true;
  let paused = false;
  let polling = false;
  let lastOk = 0;
  let failing = false;
  let last = null; // the last answers, to re-render at once after unlocking
  let faults = []; // [{id, expiresAt}]
  let routesKey = "";
  let lastEventId = 0; // event ids only grow, across gateway restarts too
  let holding = false; // a pointer is down on a button: re-rendering would eat the click
  const ninefold = (window.ninefold = { renders: 0, renderMs: 0, firstRenderAt: 0, lastUpdate: 0 });

  // --- formatting -------------------------------------------------------------------
  const dash = "–";
  const num = (v, d = 1) => (v == null ? dash : Number(v).toFixed(d));
  const pct = (v, d) => {
    if (v == null) return dash;
    const p = v * 100;
    return p.toFixed(d ?? (Math.abs(p) < 1 && p !== 0 ? 2 : 1)) + "%";
  };
  const nines = (v) => (v == null ? dash : (v * 100).toFixed(v >= 0.9999 ? 4 : 3).replace(/\.?0+$/, "") + "%");
  const ms = (v) => {
    if (v == null) return dash;
    if (v < 10) return v.toFixed(2);
    if (v < 1000) return String(Math.round(v));
    return (v / 1000).toFixed(1) + " s";
  };
  const human = (t) => {
    if (t == null) return dash;
    t = Math.max(0, Math.round(t));
    if (t < 1000) return t + "ms";
    if (t < 10000) return (t / 1000).toFixed(1) + "s";
    if (t < 60000) return Math.floor(t / 1000) + "s";
    if (t < 3600000) return Math.floor(t / 60000) + "m" + Math.floor((t % 60000) / 1000) + "s";
    return Math.floor(t / 3600000) + "h" + Math.floor((t % 3600000) / 60000) + "m";
  };
  const stateClass = (s) => "s-" + String(s || "unknown").replace(/ /g, "-");

  // --- polling ----------------------------------------------------------------------
  async function getJson(path) {
    // A gateway that stops answering must not stall every later poll.
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 5000);
    try {
      const r = await fetch(path, { cache: "no-store", signal: ctl.signal });
      if (!r.ok) throw new Error(path + ": " + r.status);
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  }

  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const [state, slos, fl] = await Promise.all([
        getJson("/api/v1/state"),
        getJson("/api/v1/slos"),
        getJson("/api/v1/faults"),
      ]);
      lastOk = Date.now();
      failing = false;
      last = { state, slos, fl };
      render();
    } catch (e) {
      failing = true;
    } finally {
      polling = false;
      badge();
    }
  }

  function badge() {
    const b = $("updated");
    const age = lastOk ? (Date.now() - lastOk) / 1000 : null;
    const stale = age == null || failing || age > 6;
    b.classList.toggle("stale", stale);
    if (age == null) b.textContent = failing ? "stale: no answer yet" : "connecting…";
    else if (stale) b.textContent = `stale: no answer for ${Math.round(age)} s`;
    else b.textContent = `updated ${Math.round(age)} s ago`;
    if (paused && !stale) b.textContent += " (paused)";
  }

  // --- rendering --------------------------------------------------------------------
  function render() {
    // Not while a button is being pressed or has the keyboard's focus: the next poll
    // renders (a button loses focus once its action is sent).
    const focused = document.activeElement && document.activeElement.matches("button[data-action]");
    if (!last || holding || focused) return;
    const t0 = performance.now();
    const { state, slos, fl } = last;
    tokenRequired = !!(state.admin && state.admin.token_required);
    $("gateway").textContent = `generation ${state.generation} · ${state.source || ""} · ${state.workers} workers`;
    tokenNote();
    $("clusters").innerHTML = clustersHtml(state);
    $("listeners").innerHTML = listenersHtml(state);
    $("cells").innerHTML = cellsHtml(state);
    $("slos").innerHTML = slosHtml(slos);
    $("faults").innerHTML = faultsHtml(fl);
    faultForm(state);
    ninefold.renders += 1;
    ninefold.renderMs = Math.round((performance.now() - t0) * 10) / 10;
    // Since the page began to load: what a person waits for the first time.
    if (ninefold.renders === 1) ninefold.firstRenderAt = Math.round(performance.now());
    ninefold.lastUpdate = lastOk;
    document.body.dataset.renders = String(ninefold.renders);
  }

  const unlocked = () => token !== null;

  function breakerButtons(scope) {
    if (!unlocked()) return "";
    return ["open", "close", "reset"]
      .map((a) => `<button type="button" data-action="breaker-${a}" data-scope="${scope}">breaker ${a}</button>`)
      .join(" ");
  }

  function endpointRow(c, e, tcp) {
    // TCP sessions are not requests: their figures are the sessions column.
    const f = tcp ? {} : e.figures || {};
    const st = e.state || "unknown";
    let actions = "";
    if (unlocked()) {
      actions = e.drained
        ? `<button type="button" data-action="enable">Enable</button>`
        : `<button type="button" data-action="drain">Drain</button>`;
      if (e.breaker) actions += " " + breakerButtons("endpoint");
    }
    const tcpCells = tcp
      ? `<td>${esc(e.role || dash)}</td><td class="num">${e.sessions ?? 0}</td>` +
        `<td class="num">${e.lag_seconds == null ? dash : num(e.lag_seconds, 1) + " s"}${e.lag_bytes == null ? "" : " / " + Math.round(e.lag_bytes) + " B"}</td>`
      : "";
    return (
      `<tr class="endpoint" data-cluster="${esc(c.name)}" data-endpoint="${esc(e.address)}" data-state="${esc(st)}">` +
      `<th scope="row">${esc(e.address)}</th><td>${esc(e.zone || dash)}</td>` +
      `<td class="num">${e.priority ?? 0}</td><td class="num">${e.weight ?? 1}</td>` +
      `<td class="num">${e.in_flight ?? 0}</td><td class="num">${num(f.rps)}</td>` +
      `<td class="num">${pct(f.error_rate)}</td><td class="num">${ms(f.p50_ms)}</td><td class="num">${ms(f.p99_ms)}</td>` +
      tcpCells +
      `<td class="state ${stateClass(st)}"><span class="state-word">${esc(st)}</span></td>` +
      `<td class="why">${esc(e.why || "")}</td>` +
      (unlocked() ? `<td class="actions">${actions}</td>` : "") +
      `</tr>`
    );
  }

  function clustersHtml(state) {
    const tcpClusters = new Set(
      (state.listeners || []).filter((l) => l.tcp).map((l) => l.tcp.cluster)
    );
    return (state.clusters || [])
      .map((c) => {
        const tcp = tcpClusters.has(c.name) || c.role != null;
        const head = [
          `<h3>${esc(c.name)}</h3>`,
          `<span>lb ${esc(c.lb)}</span>`,
          `<span>health <span class="sbadge ${c.health === "ok" ? "s-up" : c.health === "down" ? "s-down" : "s-going-down"}">${esc(c.health)}</span></span>`,
        ];
        if (c.panic) head.push(`<span class="sbadge s-down">panic mode for ${human(c.panic_since_ms)}</span>`);
        if (c.breaker) head.push(`<span data-cluster-actions="${esc(c.name)}">breaker ${esc(c.breaker.state)}${c.breaker.forced ? " (forced)" : ""} ${breakerButtons("cluster")}</span>`);
        if (c.bulkhead) head.push(`<span>bulkhead ${bulkhead(c.bulkhead)}</span>`);
        if (c.primary) {
          const p = c.primary;
          head.push(`<span>primary ${esc(p.current || "none")} · generation ${p.generation}${p.two_primaries ? ' · <span class="sbadge s-down">two primaries</span>' : ""}</span>`);
        }
        if (c.why) head.push(`<span class="why">${esc(c.why)}</span>`);
        const tcpHead = tcp ? `<th scope="col">role</th><th scope="col">sessions</th><th scope="col">lag</th>` : "";
        const rows = (c.endpoints || []).map((e) => endpointRow(c, e, tcp)).join("");
        return (
          `<div class="cluster" data-cluster="${esc(c.name)}"><div class="cluster-head">${head.join("")}</div>` +
          `<table><thead><tr><th scope="col">endpoint</th><th scope="col">zone</th><th scope="col">prio</th>` +
          `<th scope="col">weight</th><th scope="col">in flight</th><th scope="col">req/s</th><th scope="col">errors</th>` +
          `<th scope="col">p50 ms</th><th scope="col">p99 ms</th>${tcpHead}<th scope="col">state</th><th scope="col">why</th>` +
          (unlocked() ? `<th scope="col">actions</th>` : "") +
          `</tr></thead><tbody>${rows}</tbody></table></div>`
        );
      })
      .join("");
  }

  const bulkhead = (b) => `${b.in_flight}/${b.max_concurrent} in flight, ${b.queued} queued, ${b.shed} shed`;

  function matchText(m) {
    const parts = [];
    if (m.path) parts.push("path " + m.path);
    if (m.path_prefix) parts.push("prefix " + m.path_prefix);
    if (m.host) parts.push("host " + m.host);
    if (m.methods) parts.push(m.methods.join(","));
    for (const [k, v] of Object.entries(m.headers || {})) parts.push(`${k}: ${v}`);
    return parts.join(" · ") || "any";
  }

  function listenersHtml(state) {
    return (state.listeners || [])
      .map((l) => {
        const head = `<h3>${esc(l.name)} <span class="muted">${esc(l.protocol)} on ${esc(l.address || l.bind)}</span></h3>`;
        if (l.tcp) {
          const t = l.tcp;
          return head + `<p>to cluster ${esc(t.cluster)}${t.fallback_cluster ? ", then " + esc(t.fallback_cluster) : ""} · ${t.open} open${t.max_connections ? " of " + t.max_connections : ""} · idle timeout ${human(t.idle_timeout_ms)}</p>`;
        }
        const rows = (l.routes || [])
          .map((r) => {
            const fb = r.fallback
              ? [r.fallback.cluster && "cluster " + r.fallback.cluster, r.fallback.stale && "stale", r.fallback.static && "static " + r.fallback.static].filter(Boolean).join(", ")
              : dash;
            const rb = r.retry_budget;
            return (
              `<tr><th scope="row">${esc(r.name)}</th><td>${esc(matchText(r.match || {}))}</td>` +
              `<td>${esc(r.cells ? "cells " + r.cells : r.cluster)}</td><td class="num">${human(r.timeout_ms)}</td>` +
              `<td>${esc(fb)}</td><td>${r.bulkhead ? esc(bulkhead(r.bulkhead)) : dash}</td>` +
              `<td class="num">${rb ? num(rb.headroom) : dash}</td></tr>`
            );
          })
          .join("");
        return (
          head +
          `<table><thead><tr><th scope="col">route</th><th scope="col">match</th><th scope="col">to</th><th scope="col">timeout</th>` +
          `<th scope="col">fallback</th><th scope="col">bulkhead</th><th scope="col">retry budget headroom</th></tr></thead><tbody>${rows}</tbody></table>`
        );
      })
      .join("");
  }

  function cellsHtml(state) {
    const sets = state.cells || [];
    if (!sets.length) return `<p class="muted">no cells</p>`;
    return sets
      .map(
        (s) =>
          `<h3>${esc(s.name)} <span class="muted">on cell down: ${esc(s.on_cell_down)}</span></h3><table><thead><tr>` +
          `<th scope="col">cell</th><th scope="col">cluster</th><th scope="col">state</th><th scope="col">evacuated</th></tr></thead><tbody>` +
          (s.members || [])
            .map(
              (m) =>
                `<tr><th scope="row">${esc(m.name)}</th><td>${esc(m.cluster)}</td>` +
                `<td class="state ${stateClass(m.state)}"><span class="state-word">${esc(m.state)}</span></td><td>${m.evacuated ? "yes" : "no"}</td></tr>`
            )
            .join("") +
          `</tbody></table>`
      )
      .join("");
  }

  function spark(values) {
    const w = 120, h = 24;
    const vs = values || [];
    const max = Math.max(1.2, ...vs.filter((v) => v != null));
    const y = (v) => (h - 1 - (v / max) * (h - 2)).toFixed(1);
    const x = (i) => ((i / Math.max(1, vs.length - 1)) * (w - 1)).toFixed(1);
    const lines = [];
    let cur = [];
    vs.forEach((v, i) => {
      if (v == null) {
        if (cur.length) lines.push(cur);
        cur = [];
      } else cur.push(`${x(i)},${y(v)}`);
    });
    if (cur.length) lines.push(cur);
    const paths = lines
      .map((p) => (p.length === 1 ? `<circle cx="${p[0].split(",")[0]}" cy="${p[0].split(",")[1]}" r="1.5" class="spark"/>` : `<polyline class="spark" points="${p.join(" ")}"/>`))
      .join("");
    return `<svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" aria-hidden="true"><line class="one" x1="0" x2="${w}" y1="${y(1)}" y2="${y(1)}"/>${paths}</svg>`;
  }

  function slosHtml(v) {
    const slos = ((v && v.slos) || []).slice();
    if (!slos.length) return `<p class="muted">no SLOs (routes opt in with slo: NAME)</p>`;
    slos.sort((a, b) => (a.budget?.remaining_ratio ?? 1) - (b.budget?.remaining_ratio ?? 1));
    return slos
      .map((s) => {
        const b = s.budget || {};
        const low = (b.remaining_ratio ?? 1) < 0.25 ? " low" : "";
        const burns = ["5m", "1h", "6h", "3d"]
          .map((k) => `<div class="burn"><span>${k} <b>${num(s.burn_rates?.[k], 2)}×</b></span>${spark(s.burn_history?.[k])}</div>`)
          .join("");
        const alerts = (s.alerts || [])
          .filter((a) => a.firing)
          .map(
            (a) =>
              `<li>firing, ${esc(a.severity)}: burning ${num(a.long_burn_rate, 1)}× over ${esc(a.long_window)} and ` +
              `${num(a.short_burn_rate, 1)}× over ${esc(a.short_window)} (threshold ${a.burn_rate_threshold}×)` +
              (a.time_to_exhaustion_seconds != null ? `, budget gone in ${human(a.time_to_exhaustion_seconds * 1000)}` : "") +
              `</li>`
          )
          .join("");
        return (
          `<div class="slo" data-slo="${esc(s.name)}"><h3>${esc(s.name)} <span class="muted">${esc(s.indicator || "")}</span></h3>` +
          `<div class="three"><div>objective<span class="big">${nines(s.objective)}</span></div>` +
          `<div>availability, ${esc(s.window)}<span class="big">${nines(s.sli)}</span>${s.total ?? 0} events, ${s.bad ?? 0} bad</div>` +
          `<div>error budget left, ${esc(s.window)}<span class="big${low}">${pct(b.remaining_ratio)}</span>` +
          `${num(b.remaining_minutes, 1)} of ${num(b.budget_minutes, 1)} min</div></div>` +
          `<div class="burns" aria-label="burn rates, last hour">${burns}</div>` +
          (alerts ? `<ul class="alerts">${alerts}</ul>` : "") +
          `</div>`
        );
      })
      .join("");
  }

  function faultsHtml(v) {
    const now = Date.now();
    const list = (v && v.faults) || [];
    faults = list.map((f) => ({ id: f.id, expiresAt: now + (f.expires_in_ms || 0) }));
    if (!list.length) return `<p class="muted">no fault in force</p>`;
    return (
      `<table><thead><tr><th scope="col">id</th><th scope="col">route</th><th scope="col">fault</th><th scope="col">ends in</th>` +
      (unlocked() ? `<th scope="col">actions</th>` : "") +
      `</tr></thead><tbody>` +
      list
        .map((f) => {
          const what = [
            f.abort && `abort ${f.abort.percent}% with ${f.abort.status}`,
            f.delay && `delay ${f.delay.percent}% by ${f.delay.duration}`,
          ].filter(Boolean).join(", ");
          return (
            `<tr data-fault-id="${f.id}"><th scope="row">${f.id}</th><td>${esc(f.route)}</td><td>${esc(what)}</td>` +
            `<td class="num ttl">${human(f.expires_in_ms)}</td>` +
            (unlocked() ? `<td class="actions"><button type="button" data-action="fault-remove">Remove</button></td>` : "") +
            `</tr>`
          );
        })
        .join("") +
      `</tbody></table>`
    );
  }

  function tickFaults() {
    const now = Date.now();
    for (const f of faults) {
      const cell = document.querySelector(`tr[data-fault-id="${f.id}"] .ttl`);
      if (cell) cell.textContent = human(f.expiresAt - now);
    }
  }

  function faultForm(state) {
    const form = $("fault-form");
    form.hidden = !unlocked();
    const names = [];
    for (const l of state.listeners || []) for (const r of l.routes || []) names.push(r.name);
    const key = names.join("\n");
    if (key !== routesKey) {
      routesKey = key;
      $("fault-route").innerHTML = [...new Set(names)].map((n) => `<option>${esc(n)}</option>`).join("");
    }
  }

  function tokenNote() {
    $("token-note").textContent = unlocked()
      ? "actions on"
      : tokenRequired
        ? "read-only"
        : "read-only · this gateway has no admin token (loopback only): an empty token turns actions on";
  }

  // --- actions ----------------------------------------------------------------------
  function status(text, error) {
    const s = $("action-status");
    s.textContent = text;
    s.classList.toggle("error", !!error);
  }

  document.addEventListener("pointerdown", (ev) => {
    if (ev.target.closest("button[data-action]")) holding = true;
  });
  document.addEventListener("pointerup", () => {
    holding = false;
  });

  async function act(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body) headers["Content-Type"] = "application/json";
    try {
      const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
      let v = {};
      try {
        v = await r.json();
      } catch (e) {}
      if (r.ok) status(`${method} ${decodeURIComponent(path)}: done`, false);
      else status(`${method} ${decodeURIComponent(path)}: ${r.status} ${v.error || ""}`, true);
    } catch (e) {
      status(`${method} ${path}: ${e.message}`, true);
    }
    poll();
  }

  document.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button[data-action]");
    holding = false;
    if (!btn || !unlocked()) return;
    btn.blur();
    const a = btn.dataset.action;
    const row = btn.closest("tr.endpoint");
    if (a === "fault-remove") {
      const id = btn.closest("tr[data-fault-id]").dataset.faultId;
      act("DELETE", `/api/v1/faults/${enc(id)}`);
      return;
    }
    if (row) {
      const base = `/api/v1/clusters/${enc(row.dataset.cluster)}/endpoints/${enc(row.dataset.endpoint)}`;
      if (a === "drain" || a === "enable") act("POST", `${base}/${a}`);
      else if (a.startsWith("breaker-")) act("POST", `${base}/breaker/${a.slice(8)}`);
      return;
    }
    const head = btn.closest("[data-cluster-actions]");
    if (head && a.startsWith("breaker-")) {
      act("POST", `/api/v1/clusters/${enc(head.dataset.clusterActions)}/breaker/${a.slice(8)}`);
    }
  });

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value;
    if (!t && tokenRequired) {
      status("type the admin token first", true);
      return;
    }
    token = t;
    $("token").value = "";
    status("actions on: the token is kept in this page's memory only", false);
    render();
  });

  $("fault-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const kind = $("fault-kind").value;
    const percent = Number($("fault-percent").value);
    const body = { route: $("fault-route").value, ttl: $("fault-ttl").value };
    if (kind === "abort") body.abort = { percent, status: Number($("fault-status").value) };
    else body.delay = { percent, duration: $("fault-delay").value };
    act("POST", "/api/v1/faults", body);
  });

  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").setAttribute("aria-pressed", String(paused));
    $("pause").textContent = paused ? "Resume" : "Pause";
    if (!paused) poll();
    badge();
  });

  $("hide-up").addEventListener("change", (ev) => {
    document.body.classList.toggle("hide-up", ev.target.checked);
  });

  // --- events -----------------------------------------------------------------------
  function addEvent(e) {
    if (e.id <= lastEventId) return;
    lastEventId = e.id;
    const li = document.createElement("li");
    li.className = "event";
    li.dataset.kind = e.kind;
    const t = new Date(e.at_unix_ms).toLocaleTimeString([], { hour12: false });
    const where = [e.cluster, e.endpoint].filter(Boolean).join(" ");
    li.innerHTML = `<time>${esc(t)}</time><span class="kind">${esc(e.kind)}</span>${where ? esc(where) + ": " : ""}${esc(e.message)}`;
    const list = $("events");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);
  }

  function follow() {
    if (!window.EventSource) return;
    const es = new EventSource("/api/v1/events");
    es.onmessage = (m) => {
      try {
        addEvent(JSON.parse(m.data));
      } catch (e) {}
    };
    es.addEventListener("lagged", (m) => {
      let missed = "some";
      try {
        missed = JSON.parse(m.data).missed;
      } catch (e) {}
      const note = `${missed} events missed (this page fell behind)`;
      addEvent({ id: lastEventId + 0.5, at_unix_ms: Date.now(), kind: "lagged", message: note });
    });
  }

  follow();
  poll();
  setInterval(() => {
    if (!paused) poll();
  }, 2000);
  setInterval(() => {
    badge();
    tickFaults();
  }, 1000);
})();
