// agentd dashboard: live board, live log, live events. No build step, no dependencies.
"use strict";

function live(on) {
  const dot = document.getElementById("live");
  if (dot) dot.className = on ? "live on" : "live";
}

function applyFilter() {
  const form = document.getElementById("filters");
  if (!form) return;
  const role = form.role.value, type = form.type.value, text = form.text.value.trim().toLowerCase();
  for (const card of document.querySelectorAll("#board .card")) {
    const show = (!role || card.dataset.role === role) && (!type || card.dataset.type === type) &&
      (!text || card.dataset.text.includes(text));
    card.hidden = !show;
  }
}

async function fillLazy(details) {
  const holder = details.querySelector(".lazy");
  if (!holder || !details.open) return;
  const response = await fetch(holder.dataset.src, {cache: "no-store"});
  if (response.ok) {
    holder.innerHTML = await response.text();
    applyFilter();
  }
}

function board() {
  document.getElementById("board").addEventListener("toggle", (event) => fillLazy(event.target), true);
  const form = document.getElementById("filters");
  form.addEventListener("input", applyFilter);
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch("/board/fragment", {cache: "no-store"});
      if (response.ok) {
        const html = await response.text();
        // The columns open now, as the board is replaced (not as the fetch began: one opened meanwhile stays open)
        const open = new Set();
        for (const d of document.querySelectorAll("#board details[open]")) open.add(d.dataset.status);
        document.getElementById("board").innerHTML = html;
        for (const d of document.querySelectorAll("#board details")) {
          d.open = open.has(d.dataset.status);  // opening fires "toggle", which fetches its cards
        }
        applyFilter();
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const source = new EventSource("/stream/changes");
  source.onopen = () => { live(true); refresh(); };
  source.onerror = () => live(false);
  source.addEventListener("change", refresh);
}

function liveLog() {
  const pre = document.getElementById("live-log");
  if (!pre) return;
  const source = new EventSource(pre.dataset.src);
  source.onopen = () => live(true);
  source.onerror = () => live(false);
  source.onmessage = (message) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(JSON.parse(message.data));
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
}

function events() {
  const table = document.getElementById("events");
  const body = table.tBodies[0];
  const source = new EventSource(table.dataset.src);
  source.onopen = () => live(true);
  source.onerror = () => live(false);
  source.onmessage = (message) => {
    const e = JSON.parse(message.data);
    const row = body.insertRow();
    row.className = "ev-" + e.event;
    for (const value of [e.time, e.role || "", e.event]) row.insertCell().textContent = value;
    const cell = row.insertCell();
    if (e.task) {
      const link = document.createElement("a");
      link.href = "/tasks/" + encodeURIComponent(e.task);
      link.textContent = e.task;
      cell.append(link);
    }
    row.insertCell().textContent = e.message || "";
    while (body.rows.length > 1000) body.deleteRow(0);
    row.scrollIntoView({block: "nearest"});
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "board") board();
  if (page === "task") liveLog();
  if (page === "events") events();
});
