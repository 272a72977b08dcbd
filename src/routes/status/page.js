
"use strict";
// claudegate's status page. It asks for an admin key, keeps it in this tab's sessionStorage
// (never a URL, a cookie or localStorage), sends it only as the Authorization header of
// GET admin/status, and redraws from that answer every 10 seconds. Everything is built with
// DOM calls and textContent: no text from the server is ever parsed as HTML.
(() => {
  const STORE = "claudegate.admin_key";
  const REFRESH_MS = Number(document.body.dataset.refreshMs) || 10000;
  const $ = (id) => document.getElementById(id);

  let key = sessionStorage.getItem(STORE);
  let timer = null;
  let last = null; // {data, at: client ms of the answer, skew: server ms - client ms}

  // ---- small helpers --------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "data") for (const [d, dv] of Object.entries(v)) { if (dv !== null && dv !== undefined) e.dataset[d] = String(dv); }
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const serverNow = () => Date.now() + (last ? last.skew : 0);

  // 93784 -> "1d 2h"; 8010 -> "2h 13m"; 95 -> "1m 35s"; 7 -> "7s".
  function duration(secs) {
    secs = Math.max(0, Math.floor(secs));
    const d = Math.floor(secs / 86400), h = Math.floor((secs % 86400) / 3600);
    const m = Math.floor((secs % 3600) / 60), s = secs % 60;
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${m}m`;
    if (m > 0) return `${m}m ${s}s`;
    return `${s}s`;
  }

  // An RFC 3339 string or Unix seconds -> ms, or null.
  function toMs(t) {
    if (t === null || t === undefined || t === "") return null;
    if (typeof t === "number") return t * 1000;
    if (/^\d+(\.\d+)?$/.test(String(t))) return Number(t) * 1000;
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? null : ms;
  }

  const whenText = (ms) => new Date(ms).toLocaleString();

  // A countdown that the ticker keeps current: "in 2h 13m", then `done` once passed.
  function countdown(ms, before, done) {
    return el("time", {
      datetime: new Date(ms).toISOString(), title: whenText(ms),
      data: { deadline: ms, before, done },
    }, countdownText(ms, before, done));
  }
  function countdownText(ms, before, done) {
    const left = (ms - serverNow()) / 1000;
    return left > 0 ? `${before}${duration(left)}` : done;
  }
  // "3 min ago" style, kept current too.
  function ago(ms) {
    return el("time", { datetime: new Date(ms).toISOString(), title: whenText(ms), data: { since: ms } }, agoText(ms));
  }
  function agoText(ms) {
    return `${duration((serverNow() - ms) / 1000)} ago`;
  }

  function compact(n) {
    if (typeof n !== "number") return "–";
    const units = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [size, unit] of units) {
      if (n >= size) {
        const v = n / size;
        return `${v >= 100 ? Math.round(v) : v.toFixed(1).replace(/\.0$/, "")}${unit}`;
      }
    }
    return String(n);
  }

  // ---- usage windows ----------------------------------------------------------------------

  const WINDOW_LABELS = { "5h": "5-hour", "7d": "7-day", overall: "Overall" };
  const capital = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  // Words of window names that are not plain words ("7d_oauth_apps" -> "7-day OAuth apps").
  const WORDS = { oauth: "OAuth", api: "API" };
  const nameWord = (p, i) => WORDS[p] || (i === 0 ? capital(p) : p);

  function windowLabel(w) {
    const name = String(w.name);
    if (WINDOW_LABELS[name]) return WINDOW_LABELS[name];
    const m = /^(\d+)([hd])(?:_(.+))?$/.exec(name);
    if (!m) return name.replace(/_/g, " ");
    let label = `${m[1]}-${m[2] === "h" ? "hour" : "day"}`;
    if (m[3]) label += " " + m[3].split("_").map(nameWord).join(" ");
    return label;
  }

  const STATUS_WORDS = { allowed: "", allowed_warning: "nearly used up", rejected: "limit reached" };

  // `binding`: the name of the window that limits the account now (`representative_window`).
  function windowRow(w, binding) {
    const u = typeof w.utilization === "number" && Number.isFinite(w.utilization) ? w.utilization : null;
    const pct = u === null ? null : Math.round(Math.min(Math.max(u, 0), 1) * 100);
    const reset = toMs(w.resets_at);
    const nodata = u === null && !w.status && reset === null;
    const classes = ["window", w.status || "", nodata ? "nodata" : "", u !== null && u >= 0.9 ? "high" : "",
      w.name === binding ? "representative" : ""];
    const fill = el("div", { class: "fill" });
    fill.style.width = `${pct === null ? 0 : pct}%`;
    const detail = [];
    const word = w.status in STATUS_WORDS ? STATUS_WORDS[w.status] : w.status;
    if (word) detail.push(word);
    if (nodata) detail.push("no data yet");
    else if (reset !== null) detail.push(countdown(reset, "resets in ", "reset due now"));
    else detail.push("reset time not reported");
    const parts = detail.flatMap((d, i) => (i === 0 ? [d] : [" · ", d]));
    let label = windowLabel(w);
    if (w.model && !label.toLowerCase().includes(String(w.model).toLowerCase())) label += ` (${capital(String(w.model))})`;
    return el("div", {
      class: classes.filter(Boolean).join(" "),
      data: { window: w.name, status: w.status, utilization: u },
    },
    el("div", { class: "label" },
      el("span", {}, label, classes.includes("representative") ? el("span", { class: "tag", title: "the window that limits the account now" }, "binding") : null),
      el("span", { class: "pct" }, pct === null ? "–" : `${pct}%`)),
    el("div", {
      class: "track", role: "progressbar", "aria-label": label,
      "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct === null ? null : pct,
    }, fill),
    el("div", { class: "detail" }, parts));
  }

  // ---- one account --------------------------------------------------------------------------

  const STATE_TEXT = {
    ok: "Serving requests.",
    cooldown: "Anthropic limited this account: requests are refused until the cooldown ends.",
    needs_login: "The login must be renewed: run `claudegate login` on the server.",
    not_logged_in: "No Claude login yet: run `claudegate login` on the server.",
    blocked: "Anthropic does not allow this account or organisation to use OAuth. A new login (`claudegate login`) or a success clears this.",
  };
  // Our own fixed texts mark commands with backticks: those parts become <code> elements.
  const withCode = (text) => text.split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
  const SOURCES = { usage_endpoint: "From the usage endpoint", headers: "From the last response headers" };

  function account(a) {
    const state = a.state || "unknown";
    const card = el("article", { class: "account", data: { state } },
      el("div", { class: "head" },
        el("span", { class: "email" }, a.email || "(no login)"),
        el("span", { class: `state ${state}` }, state)),
      el("p", { class: "sub" }, [a.organization, a.kind].filter(Boolean).join(" · ") || null),
      el("p", { class: "explain" }, STATE_TEXT[state] ? withCode(STATE_TEXT[state]) : null,
        a.needs_login_reason ? ` (${a.needs_login_reason})` : null));

    for (const c of a.cooldowns || []) {
      if (!card.querySelector(".cooldowns")) card.append(el("ul", { class: "cooldowns" }));
      const until = toMs(c.until);
      const scope = [c.window ? `window ${windowLabel({ name: c.window })}` : null, c.model ? `model ${c.model}` : null].filter(Boolean);
      card.querySelector(".cooldowns").append(el("li", {},
        "Cooling down",
        until === null ? null : [" until ", el("strong", {}, whenText(until)), " (", countdown(until, "", "ending"), " left)"],
        c.reason ? `: ${c.reason}` : null,
        scope.length ? ` — ${scope.join(", ")}` : null));
    }

    const usage = a.usage;
    card.append(el("h3", {}, "Usage"));
    if (!usage || usage.windows.length === 0) {
      card.append(el("p", { class: "note" }, "Windows: no usage reported yet (it comes with the next answer from Anthropic)."));
    } else {
      for (const w of usage.windows) card.append(windowRow(w, usage.representative_window));
      const seen = toMs(usage.observed_at);
      card.append(el("p", { class: "source" },
        SOURCES[usage.source] || (usage.source ? `From ${usage.source}` : "Source not reported"),
        seen === null ? null : [", ", ago(seen)]));
      if (usage.overage && typeof usage.overage === "object") {
        const items = Object.entries(usage.overage).map(([k, v]) => `${k.replace(/_/g, " ")}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
        card.append(el("p", { class: "overage" }, el("strong", {}, "Overage"), " — ", items.join(", ")));
      }
    }

    const classes = a.failure_classes;
    card.append(el("h3", {}, "Errors by class"));
    if (classes && typeof classes === "object" && Object.keys(classes).length) {
      const rows = Object.entries(classes)
        .map(([k, v]) => [k, Number(v) || 0])
        .sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0]));
      card.append(el("table", { class: "classes" }, el("tbody", {}, rows.map(([k, n]) =>
        el("tr", { class: n === 0 ? "zero" : null, data: { class: k, count: n } },
          el("td", {}, k.replace(/_/g, " ")), el("td", {}, n))))));
    } else {
      card.append(el("p", { class: "note" }, "None counted."));
    }
    if (a.last_error) card.append(el("p", { class: "last-error" }, "Last error: ", a.last_error));
    const ok = toMs(a.last_success);
    if (ok !== null) card.append(el("p", { class: "note" }, "Last success ", ago(ok)));
    return card;
  }

  // ---- keys -----------------------------------------------------------------------------------

  const FIGURES = ["requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"];

  function figureCells(f) {
    return FIGURES.map((name, i) => {
      const n = f && typeof f[name] === "number" ? f[name] : null;
      const exact = n === null ? "" : n.toLocaleString();
      const shown = n === null ? "–" : i < 2 ? exact : compact(n);
      return el("td", { class: i === 0 ? "first" : null, title: exact || null, data: { value: n } }, shown);
    });
  }

  function keysTable(keys) {
    const body = document.querySelector("#keys tbody");
    const foot = document.querySelector("#keys tfoot");
    if (!Array.isArray(keys) || keys.length === 0) {
      body.replaceChildren(el("tr", {}, el("td", { class: "label", colspan: 13 }, "No requests in the audit log in the last 7 days.")));
      foot.replaceChildren();
      return;
    }
    body.replaceChildren(...keys.map((k) =>
      el("tr", { data: { key: k.label } }, el("td", { class: "label" }, k.label), figureCells(k.today), figureCells(k.last_7_days))));
    const sum = (period) => Object.fromEntries(FIGURES.map((f) => [f, keys.reduce((s, k) => s + ((k[period] && k[period][f]) || 0), 0)]));
    foot.replaceChildren(keys.length < 2 ? "" : el("tr", {}, el("td", { class: "label" }, "All keys"), figureCells(sum("today")), figureCells(sum("last_7_days"))));
  }

  // ---- the page's states ------------------------------------------------------------------------

  function render(data) {
    $("version").textContent = data.version ? `version ${data.version}` : "";
    $("uptime-label").hidden = typeof data.uptime_s !== "number";
    const accounts = Array.isArray(data.accounts) ? data.accounts : [];
    $("accounts").replaceChildren(...(accounts.length ? accounts.map(account) : [el("p", { class: "note" }, "No account reported.")]));
    keysTable(data.keys);
    $("login").hidden = true;
    $("signout").hidden = false;
    $("status").hidden = false;
    $("status").classList.remove("stale");
    $("error").textContent = "";
    tick();
  }

  function showLogin(message) {
    clearTimeout(timer);
    key = null;
    last = null;
    sessionStorage.removeItem(STORE);
    $("status").hidden = true;
    $("signout").hidden = true;
    $("uptime-label").hidden = true;
    $("updated").textContent = "";
    $("login").hidden = false;
    $("error").textContent = message || "";
    $("key").focus();
  }

  function stale(message) {
    if (!last) {
      $("error").textContent = message;
      return;
    }
    $("status").classList.add("stale");
    $("error").textContent = `${message}; showing what was read ${agoText(last.at + last.skew)}, retrying.`;
  }

  // Keeps the countdowns, the uptime and "updated … ago" current between reads.
  function tick() {
    for (const t of document.querySelectorAll("time[data-deadline]")) {
      t.textContent = countdownText(Number(t.dataset.deadline), t.dataset.before || "", t.dataset.done || "");
    }
    for (const t of document.querySelectorAll("time[data-since]")) t.textContent = agoText(Number(t.dataset.since));
    if (last && typeof last.data.uptime_s === "number") {
      $("uptime").textContent = duration(last.data.uptime_s + (Date.now() - last.at) / 1000);
      $("updated").textContent = `· updated ${duration((Date.now() - last.at) / 1000)} ago`;
    }
  }

  function errorText(body, status) {
    const e = body && body.error;
    const message = (e && (e.message || (typeof e === "string" ? e : null))) || `HTTP ${status}`;
    return message;
  }

  async function load() {
    clearTimeout(timer);
    if (!key) return showLogin();
    const sent = key;
    let r, body = null;
    try {
      const init = {
        headers: { Authorization: `Bearer ${sent}`, Accept: "application/json" },
        cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
      };
      if (typeof AbortSignal !== "undefined" && AbortSignal.timeout) init.signal = AbortSignal.timeout(REFRESH_MS);
      r = await fetch("admin/status", init);
      try { body = await r.json(); } catch (_) { body = null; }
    } catch (e) {
      stale(`Cannot reach claudegate (${e.message})`);
      return schedule();
    }
    if (sent !== key) return; // signed out or signed in again meanwhile
    if (r.status === 401 || r.status === 403 || (r.status === 429 && !last)) {
      const why = errorText(body, r.status);
      return showLogin(r.status === 403 ? why : `That key was not accepted: ${why}`);
    }
    if (!r.ok || !body || typeof body !== "object") {
      stale(`claudegate answered ${r.status}: ${errorText(body, r.status)}`);
      return schedule();
    }
    sessionStorage.setItem(STORE, sent);
    const date = Date.parse(r.headers.get("date") || "");
    const at = Date.now();
    last = { data: body, at, skew: Number.isNaN(date) ? 0 : date - at };
    render(body);
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(() => (document.hidden ? schedule() : load()), REFRESH_MS);
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const typed = $("key").value.trim();
    $("key").value = "";
    if (!typed) return;
    key = typed;
    $("error").textContent = "";
    load();
  });
  $("signout").addEventListener("click", () => showLogin());
  document.addEventListener("visibilitychange", () => { if (!document.hidden && key && last) load(); });
  setInterval(tick, 1000);
  if (key) load(); else showLogin();
})();
