// /supervisor: every live call (state, domain, ticking duration, agent, frustration), the selected call's live
// transcript (turn events; the recogniser's partial in grey), the queues, today's figures; 监听 / 耳语 / 插话 /
// 接管 each post a fresh WebRTC offer and replace this page's connection to that call; 退出监听 ends it; after
// 接管 the agent's controls (挂断 / 转回智能客服 / 话后小结).
import { getJSON, notify, openEvents, post } from "/static/console.js";
import { STATE_LABELS, Transcript, duration, el, queueLabel } from "/static/callcard.js";
import { connectCall } from "/static/rtc.js";

const $ = (id) => document.getElementById(id);
const STATS_MS = 10000;
const MODE_LABELS = { listen: "正在监听", whisper: "正在耳语（只有坐席听得到您）", barge: "正在插话（双方都听得到您）", takeover: "已接管，您是这通电话的坐席" };

const calls = new Map(); // call_id -> call (as /api/calls, turns kept up to date from events)
const endedAt = new Map(); // call_id -> when its "ended" event came (a list asked for before then is stale)
const transcript = new Transcript($("sup-transcript"));
const state = { selected: null, link: null, linkCall: null, mode: null, wrapupCall: null, partial: {} };
window.hotlineSupervisor = state;

function elapsed(call) {
  if (call.fetchedAt && typeof call.duration_s === "number") return call.duration_s + (Date.now() - call.fetchedAt) / 1000;
  const started = Date.parse(call.started_at);
  return Number.isNaN(started) ? 0 : (Date.now() - started) / 1000;
}

function lastLine(call) {
  const turns = call.turns || [];
  return turns.length ? turns[turns.length - 1].text : "";
}

function row(call) {
  const frustrated = call.frustrated
    ? el("span", { class: "tag warn", title: (call.frustration || []).join("；") }, `不满：${(call.frustration || []).join("、") || "是"}`)
    : el("span", { class: "hint" }, "—");
  return el(
    "tr",
    {
      dataset: { callId: call.call_id, state: call.state },
      class: call.call_id === state.selected ? "selected" : "",
      onclick: () => select(call.call_id),
    },
    el("td", { class: "nowrap" }, call.call_id),
    el("td", {}, el("span", { class: `state ${call.state}` }, STATE_LABELS[call.state] || call.state)),
    el("td", {}, queueLabel(call.queue)),
    el("td", { class: "duration nowrap" }, duration(elapsed(call))),
    el("td", {}, call.agent || "—"),
    el("td", { class: "frustration" }, frustrated),
    el("td", { class: "last" }, lastLine(call)),
  );
}

function renderCalls() {
  const live = [...calls.values()].filter((c) => c.state !== "ended");
  $("call-count").textContent = `共 ${live.length} 通`;
  $("call-rows").replaceChildren(
    ...(live.length ? live.map(row) : [el("tr", {}, el("td", { colspan: 7, class: "empty" }, "暂无通话"))]),
  );
}

function tickDurations() {
  for (const tr of $("call-rows").querySelectorAll("tr[data-call-id]")) {
    const call = calls.get(tr.dataset.callId);
    if (call) tr.querySelector(".duration").textContent = duration(elapsed(call));
  }
}

async function refreshCalls() {
  try {
    const asked = Date.now();
    const { calls: list } = await getJSON("/api/calls");
    const now = Date.now();
    const seen = new Set();
    // a call an event told of while the list was on its way is newer than the list: keep what the event said
    const newer = (id) => Math.max(calls.get(id)?.eventAt || 0, endedAt.get(id) || 0) >= asked;
    for (const call of list) {
      seen.add(call.call_id);
      if (!newer(call.call_id) && !endedAt.has(call.call_id)) calls.set(call.call_id, { ...call, fetchedAt: now });
    }
    for (const id of [...calls.keys()]) if (!seen.has(id) && !newer(id)) calls.delete(id);
    renderCalls();
    if (state.selected) showSelected();
  } catch (error) {
    notify(`通话列表读取失败：${error.message}`);
  }
}

function onCall(summary) {
  const known = calls.get(summary.call_id);
  if (summary.state === "ended") {
    calls.delete(summary.call_id);
    endedAt.set(summary.call_id, Date.now());
    if (state.linkCall === summary.call_id && state.mode !== "takeover") dropLink();
  } else if (known) {
    Object.assign(known, summary, { eventAt: Date.now() });
  } else {
    calls.set(summary.call_id, { turns: [], ...summary, eventAt: Date.now() });
  }
  renderCalls();
  if (summary.call_id === state.selected) showSelected();
  refreshSoon();
}

function onTurn(turn) {
  const call = calls.get(turn.call_id);
  if (call) {
    const turns = (call.turns = call.turns || []);
    const at = turns.findIndex((t) => t.seq === turn.seq && t.speaker === turn.speaker);
    if (at >= 0) turns[at] = turn;
    else turns.push(turn);
    // the bot's answer carries the intent understood from the caller's words of the same seq
    const said = turn.speaker === "bot" && turn.intent ? turns.find((t) => t.seq === turn.seq && t.speaker === "caller") : null;
    if (said && !said.intent) {
      said.intent = turn.intent;
      if (turn.call_id === state.selected) transcript.set(turns);
    }
    const cellLast = $("call-rows").querySelector(`tr[data-call-id="${CSS.escape(turn.call_id)}"] .last`);
    if (cellLast) cellLast.textContent = turn.text;
  }
  if (turn.call_id === state.selected) transcript.add(turn);
}

function onPartial(partial) {
  if (partial.call_id === state.selected) transcript.showPartial(partial.text);
}

// --- the selected call ---
function select(callId) {
  if (state.selected === callId) return;
  state.selected = callId;
  for (const tr of $("call-rows").querySelectorAll("tr")) tr.classList.toggle("selected", tr.dataset.callId === callId);
  const call = calls.get(callId);
  transcript.set(call ? call.turns : []);
  showSelected();
}

function showSelected() {
  const call = calls.get(state.selected);
  const mine = state.linkCall === state.selected;
  $("monitor-call").textContent = call
    ? `${call.call_id} · ${STATE_LABELS[call.state] || call.state} · ${queueLabel(call.queue)}${call.agent ? ` · 坐席 ${call.agent}` : ""}`
    : state.selected
      ? `${state.selected} · 已结束`
      : "在左侧选择一通电话";
  $("monitor-controls").hidden = !call;
  const takenOver = mine && state.mode === "takeover";
  for (const button of $("monitor-controls").querySelectorAll("button[data-action]")) {
    const action = button.dataset.action;
    if (action === "leave") button.hidden = !mine || takenOver;
    else if (action === "hangup" || action === "return") continue;
    else button.classList.toggle("active", mine && state.mode === action);
  }
  $("takeover-controls").hidden = !takenOver;
  $("monitor-mode").textContent = mine ? MODE_LABELS[state.mode] || "" : "";
  $("wrapup").hidden = state.wrapupCall !== state.selected || !state.wrapupCall;
}

function dropLink() {
  if (state.link) state.link.close();
  state.link = null;
  state.linkCall = null;
  state.mode = null;
}

async function media(action) {
  const callId = state.selected;
  const previous = state.link && state.linkCall === callId ? state.link : null;
  let link;
  try {
    link = await connectCall(`/api/calls/${encodeURIComponent(callId)}/${action}`, {
      audio: $("remote-audio"),
      onLost: (reason) => {
        if (state.link !== link) return;
        dropLink();
        showSelected();
        notify(`与通话的语音连接已中断（${reason}）`);
      },
    });
  } catch (error) {
    notify(`操作未成功：${error.message}`);
    return;
  }
  if (previous) previous.close(); // the new connection replaces it (the backend has dropped its end)
  else if (state.link) state.link.close(); // one call at a time: this page leaves the other one
  state.link = link;
  state.linkCall = callId;
  state.mode = action;
  notify("");
  showSelected();
}

async function plain(action) {
  const callId = state.selected;
  try {
    await post(`/api/calls/${encodeURIComponent(callId)}/${action}`, {});
  } catch (error) {
    notify(`操作未成功：${error.message}`);
    if (error.status !== 404) return;
  }
  if (state.linkCall === callId) dropLink();
  if (action === "hangup" || action === "return") state.wrapupCall = callId;
  notify({ leave: "已退出监听", hangup: "已挂断", return: "已转回智能客服" }[action] || "");
  showSelected();
}

for (const button of $("monitor-controls").querySelectorAll("button[data-action]")) {
  const action = button.dataset.action;
  button.addEventListener("click", () => (["listen", "whisper", "barge", "takeover"].includes(action) ? media(action) : plain(action)));
}

$("wrapup").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = $("wrapup");
  const note = form.note.value.trim();
  if (!note) return notify("请填写小结");
  try {
    await post(`/api/calls/${encodeURIComponent(state.wrapupCall)}/wrapup`, { note, disposition: form.disposition.value });
  } catch (error) {
    return notify(`小结提交未成功：${error.message}`);
  }
  form.reset();
  state.wrapupCall = null;
  notify("小结已提交");
  showSelected();
});

// --- queues and figures ---
async function refreshQueue() {
  try {
    const { queues = {} } = await getJSON("/api/queue");
    const rows = Object.entries(queues).map(([skill, q]) =>
      el(
        "tr",
        { dataset: { queue: skill }, class: q.waiting && !q.agents_available ? "alert" : "" },
        el("td", {}, queueLabel(skill)),
        el("td", { class: "waiting" }, q.waiting ?? 0),
        el("td", {}, duration(q.longest_wait_s)),
        el("td", {}, q.agents_available ?? "—"),
        el("td", {}, q.estimated_wait_s != null ? duration(q.estimated_wait_s) : "—"),
      ),
    );
    $("queue-rows").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, class: "empty" }, "无"))]));
  } catch (error) {
    notify(`排队情况读取失败：${error.message}`);
  }
}

async function refreshStats() {
  try {
    const figures = await getJSON("/api/stats");
    for (const cell of document.querySelectorAll("#stats [data-stat]")) {
      const value = figures[cell.dataset.stat];
      const name = cell.dataset.stat;
      cell.textContent =
        value == null ? "—" : name === "average_wait_s" ? `${Math.round(value)} 秒` : name === "turn_gap_p95_ms" ? `${Math.round(value)} 毫秒` : value;
    }
  } catch (error) {
    notify(`今日数据读取失败：${error.message}`);
  }
}

let soon = null;
function refreshSoon() {
  if (soon) return;
  soon = setTimeout(() => {
    soon = null;
    refreshQueue();
    refreshStats();
  }, 1000);
}

openEvents({ call: onCall, turn: onTurn, partial: onPartial, queue: refreshSoon, callback: refreshSoon });
refreshCalls();
refreshQueue();
refreshStats();
setInterval(tickDurations, 500);
setInterval(refreshStats, STATS_MS);
setInterval(refreshCalls, 30000); // durations and anything an event missed
