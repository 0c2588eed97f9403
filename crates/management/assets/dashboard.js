// cliproxy's dashboard: the credentials with their state, usage charts and tables, and a Qwen
// device login, all from /v0/management/. Plain JavaScript, no library; charts are inline SVG.
// The management key is kept in this tab's sessionStorage only.
"use strict";

const KEY_STORAGE = "cliproxy-management-key";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let span = "24h";
let loginId = null;
let loginTimer = null;
let countdownTimer = null;

function key() {
  return sessionStorage.getItem(KEY_STORAGE);
}

class Locked extends Error {}

async function api(method, path, body) {
  const headers = { "X-Management-Key": key() || "" };
  const options = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch("/v0/management/" + path, options);
  const text = await response.text();
  let data = null;
  try {
    data = JSON.parse(text);
  } catch (_) {
    data = { error: { message: text } };
  }
  if (response.status === 401 || response.status === 429) {
    throw new Locked(data && data.error ? data.error.message : "the key was refused");
  }
  if (!response.ok) {
    throw new Error(data && data.error ? data.error.message : "HTTP " + response.status);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function relative(unix) {
  if (unix === null || unix === undefined) return "unknown";
  const seconds = Math.round(unix - Date.now() / 1000);
  const magnitude = Math.abs(seconds);
  let text;
  if (magnitude < 60) text = magnitude + " s";
  else if (magnitude < 3600) text = Math.round(magnitude / 60) + " min";
  else if (magnitude < 86400) text = (magnitude / 3600).toFixed(1) + " h";
  else text = (magnitude / 86400).toFixed(1) + " d";
  return seconds >= 0 ? "in " + text : text + " ago";
}

function stateText(c) {
  switch (c.state) {
    case "ok": return "ok";
    case "cooling": return "cooling " + relative(c.until) + " (" + c.model + ")";
    case "capped": return "capped " + c.used + "/" + c.cap + ", a slot frees " + relative(c.until);
    case "refused": return "refused (HTTP " + c.status + "), next probe " + relative(c.next_probe);
    case "exhausted": return "exhausted until " + relative(c.until);
    case "day-limit": return "at its " + c.limit + " (" + c.used + "/" + c.cap + ") until " + relative(c.until);
    case "disabled": return "disabled: " + c.reason;
    case "relogin-required": return "re-login required";
    case "token-not-saved": return "token not saved: " + c.reason;
    default: return c.state;
  }
}

/** The day's requests and tokens against the credential's limits, and when the day resets. */
function dayText(c) {
  const day = c.day;
  if (!day) return null;
  const of = (used, cap) => cap ? used + "/" + cap : String(used);
  let text = "today " + of(day.requests, day.requests_per_day) + " requests, " +
    of(day.tokens, day.tokens_per_day) + " tokens";
  if (day.resets_at) text += ", resets " + relative(day.resets_at);
  return el("div", { class: "muted day", text });
}

function quotaCell(c) {
  return el("span", {}, minuteBar(c), dayText(c));
}

function minuteBar(c) {
  if (!c.requests_per_minute) return el("span", { class: "muted", text: "no cap" });
  const used = c.requests_in_window;
  const cap = c.requests_per_minute;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 100 8");
  svg.setAttribute("class", "bar");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", used + " of " + cap + " requests this minute");
  const back = document.createElementNS(SVG, "rect");
  back.setAttribute("width", "100");
  back.setAttribute("height", "8");
  back.setAttribute("class", "bar-back");
  const fill = document.createElementNS(SVG, "rect");
  fill.setAttribute("width", String(Math.min(100, (100 * used) / cap)));
  fill.setAttribute("height", "8");
  fill.setAttribute("class", used >= cap ? "bar-full" : "bar-used");
  svg.append(back, fill);
  return el("span", { class: "quota" }, svg, el("span", { text: " " + used + "/" + cap + " a minute" }));
}

function tokenCell(c) {
  if (c.kind !== "qwen-oauth") return el("span", { class: "muted", text: "API key" });
  return el("span", {
    text: "expires " + relative(c.token_expires_at) + "; refresh " + relative(c.next_refresh_at),
  });
}

async function act(what, credential, label) {
  $("action-error").textContent = "";
  try {
    const id = encodeURIComponent(credential.key);
    if (what === "remove") {
      if (!confirm("Remove " + label + "? Its token file is deleted (like cliproxy logout).")) return;
      await api("DELETE", "credentials/" + id);
    } else {
      await api("POST", "credentials/" + id + "/" + what);
    }
  } catch (error) {
    $("action-error").textContent = label + ": " + error.message;
  }
  await loadCredentials();
}

function renderCredentials(list) {
  const body = $("credentials").querySelector("tbody");
  body.replaceChildren();
  if (list.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "6", text: "No credentials yet: add a Qwen account." })));
  }
  for (const c of list) {
    const disabled = c.state === "disabled";
    const actions = el("td", { class: "actions" },
      el("button", {
        type: "button",
        "data-action": disabled ? "enable" : "disable",
        text: disabled ? "Enable" : "Disable",
        onclick: () => act(disabled ? "enable" : "disable", c, c.label),
      }),
      c.kind === "qwen-oauth" ? el("button", { type: "button", "data-action": "refresh", text: "Refresh", onclick: () => act("refresh", c, c.label) }) : null,
      c.kind === "qwen-oauth" ? el("button", { type: "button", "data-action": "remove", class: "danger", text: "Remove", onclick: () => act("remove", c, c.label) }) : null,
    );
    const row = el("tr", { "data-key": c.key, "data-state": c.state },
      el("td", { class: "name", text: c.label }),
      el("td", { text: c.kind === "qwen-oauth" ? "Qwen account" : "API key" }),
      el("td", {}, el("span", { class: "state state-" + c.state, text: stateText(c) })),
      el("td", {}, quotaCell(c)),
      el("td", {}, tokenCell(c)),
      actions,
    );
    body.append(row);
  }
}

async function loadCredentials() {
  const data = await api("GET", "credentials");
  renderCredentials(data.credentials);
  $("status").textContent = "updated " + new Date().toLocaleTimeString();
}

function buckets() {
  const now = Date.now();
  const out = [];
  if (span === "24h") {
    const hour = Math.floor(now / 3600000);
    for (let h = hour - 23; h <= hour; h++) {
      const iso = new Date(h * 3600000).toISOString();
      out.push({ key: iso.slice(0, 13) + ":00Z", label: iso.slice(11, 13) + "h" });
    }
  } else {
    const day = Math.floor(now / 86400000);
    for (let d = day - 6; d <= day; d++) {
      const iso = new Date(d * 86400000).toISOString();
      out.push({ key: iso.slice(0, 10), label: iso.slice(5, 10) });
    }
  }
  return out;
}

function barChart(target, points, value) {
  const width = 600;
  const height = 160;
  const bottom = 20;
  const max = Math.max(1, ...points.map(value));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("role", "img");
  const step = width / points.length;
  points.forEach((point, index) => {
    const v = value(point);
    const h = ((height - bottom - 12) * v) / max;
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", String(index * step + 2));
    rect.setAttribute("y", String(height - bottom - h));
    rect.setAttribute("width", String(Math.max(1, step - 4)));
    rect.setAttribute("height", String(h));
    rect.setAttribute("class", "chart-bar");
    const title = document.createElementNS(SVG, "title");
    title.textContent = point.label + ": " + v.toLocaleString();
    rect.append(title);
    svg.append(rect);
    if (points.length <= 7 || index % 3 === 0) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", String(index * step + step / 2));
      label.setAttribute("y", String(height - 5));
      label.setAttribute("class", "chart-label");
      label.setAttribute("text-anchor", "middle");
      label.textContent = point.label;
      svg.append(label);
    }
  });
  const top = document.createElementNS(SVG, "text");
  top.setAttribute("x", "4");
  top.setAttribute("y", "10");
  top.setAttribute("class", "chart-label");
  top.textContent = "max " + max.toLocaleString();
  svg.append(top);
  target.replaceChildren(svg);
}

function usageTable(id, rows) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "4", class: "muted", text: "no requests" })));
  }
  for (const row of rows) {
    body.append(el("tr", {},
      el("td", { text: row.key || "(none)" }),
      el("td", { text: row.requests.toLocaleString() }),
      el("td", { text: row.failures.toLocaleString() }),
      el("td", { text: row.total_tokens.toLocaleString() }),
    ));
  }
}

async function loadUsage() {
  const since = span;
  const by = span === "24h" ? "hour" : "day";
  try {
    const [series, models, clients, credentials] = await Promise.all([
      api("GET", "usage?since=" + since + "&by=" + by),
      api("GET", "usage?since=" + since + "&by=model"),
      api("GET", "usage?since=" + since + "&by=client-key"),
      api("GET", "usage?since=" + since + "&by=credential"),
    ]);
    const byKey = new Map(series.rows.map((row) => [row.key, row]));
    const points = buckets().map((bucket) => {
      const row = byKey.get(bucket.key);
      return { label: bucket.label, requests: row ? row.requests : 0, tokens: row ? row.total_tokens : 0 };
    });
    barChart($("chart-requests"), points, (p) => p.requests);
    barChart($("chart-tokens"), points, (p) => p.tokens);
    usageTable("by-model", models.rows);
    usageTable("by-client", clients.rows);
    usageTable("by-credential", credentials.rows);
  } catch (error) {
    if (error instanceof Locked) throw error;
    $("chart-requests").textContent = "No usage yet: " + error.message;
    $("chart-tokens").textContent = "";
  }
}

function stopLogin() {
  clearTimeout(loginTimer);
  clearInterval(countdownTimer);
  loginTimer = null;
  countdownTimer = null;
}

function showLogin(view) {
  $("login").hidden = false;
  $("login-code").textContent = view.user_code;
  const link = $("login-link");
  link.href = view.verification_uri_complete;
  link.textContent = view.verification_uri_complete;
  const image = el("img", {
    alt: "QR code of the login link",
    src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(view.qr_svg),
  });
  $("login-qr").replaceChildren(image);
  const tick = () => {
    const left = Math.max(0, Math.round(view.expires_at - Date.now() / 1000));
    $("login-countdown").textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
  };
  tick();
  clearInterval(countdownTimer);
  countdownTimer = setInterval(tick, 1000);
}

function loginState(view) {
  const result = $("login-result");
  $("login-email-form").hidden = view.state !== "needs-email";
  $("login-waiting").hidden = view.state !== "waiting";
  if (view.state === "waiting") {
    result.textContent = "Waiting for approval…";
    loginTimer = setTimeout(pollLogin, 1500);
  } else if (view.state === "needs-email") {
    stopLogin();
    result.textContent = "";
    $("login-email").focus();
  } else if (view.state === "saving") {
    result.textContent = "Saving…";
    loginTimer = setTimeout(pollLogin, 500);
  } else if (view.state === "saved") {
    stopLogin();
    result.textContent = "Added " + view.email + " (" + view.file + ").";
    loadCredentials();
  } else if (view.state === "failed") {
    stopLogin();
    result.textContent = "The login failed: " + view.message;
  }
}

async function pollLogin() {
  if (!loginId) return;
  try {
    loginState(await api("GET", "logins/" + loginId));
  } catch (error) {
    stopLogin();
    $("login-result").textContent = error.message;
  }
}

async function startLogin() {
  stopLogin();
  $("login-result").textContent = "Starting…";
  $("login-email-form").hidden = true;
  try {
    const view = await api("POST", "logins", {});
    loginId = view.id;
    showLogin(view);
    loginState(view);
  } catch (error) {
    $("login").hidden = false;
    $("login-waiting").hidden = true;
    $("login-result").textContent = error.message;
  }
}

async function sendEmail(event) {
  event.preventDefault();
  try {
    loginState(await api("POST", "logins/" + loginId + "/email", { email: $("login-email").value }));
  } catch (error) {
    $("login-result").textContent = error.message;
  }
}

async function closeLogin() {
  stopLogin();
  if (loginId) {
    const id = loginId;
    loginId = null;
    try {
      await api("DELETE", "logins/" + id);
    } catch (_) {
      // A finished login may be gone already.
    }
  }
  $("login").hidden = true;
}

async function refreshAll() {
  try {
    await loadCredentials();
    await loadUsage();
  } catch (error) {
    if (error instanceof Locked) lock(error.message);
    else $("status").textContent = "error: " + error.message;
  }
}

function lock(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  $("main").hidden = true;
  $("forget").hidden = true;
  $("unlock").hidden = false;
  $("unlock-error").textContent = message || "";
  $("key").focus();
}

async function unlock(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, $("key").value);
  $("key").value = "";
  await open();
}

async function open() {
  try {
    await loadCredentials();
  } catch (error) {
    lock(error.message);
    return;
  }
  $("unlock").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
  await refreshAll();
}

document.addEventListener("DOMContentLoaded", () => {
  $("unlock-form").addEventListener("submit", unlock);
  $("forget").addEventListener("click", () => lock(""));
  $("add-account").addEventListener("click", startLogin);
  $("login-email-form").addEventListener("submit", sendEmail);
  $("login-cancel").addEventListener("click", closeLogin);
  for (const tab of document.querySelectorAll(".tabs button")) {
    tab.addEventListener("click", () => {
      span = tab.dataset.span;
      for (const other of document.querySelectorAll(".tabs button")) other.classList.toggle("active", other === tab);
      loadUsage().catch((error) => lock(error.message));
    });
  }
  setInterval(() => {
    if (!$("main").hidden) loadCredentials().catch((error) => error instanceof Locked && lock(error.message));
  }, 5000);
  setInterval(() => {
    if (!$("main").hidden) loadUsage().catch((error) => error instanceof Locked && lock(error.message));
  }, 30000);
  if (key()) open();
  else lock("");
});
