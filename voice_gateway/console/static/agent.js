// /agent: the agent's workspace. 示闲 / 示忙 with the skills ticked; while available, the longest-waiting call of
// those skills rings here (the ringing card with the context card, a soft WebAudio ring tone); 接听 brings the
// browser onto the call (rtc.js); 挂断 / 转回智能客服, then the wrap-up form; the callback list.
import { getJSON, notify, openEvents, post } from "/static/console.js";
import { DISPOSITIONS, Transcript, clock, duration, el, queueLabel, renderCard } from "/static/callcard.js";
import { connectCall } from "/static/rtc.js";
import { Ringer, unlock } from "/static/ring.js";

const $ = (id) => document.getElementById(id);
const ringer = new Ringer();
const transcript = new Transcript($("transcript"));
const POLL_MS = 5000; // the queue is read again this often while available (events make it sooner)

const state = {
  status: "", // available / away
  mode: "idle", // idle, ringing, connecting, call, wrapup
  callId: null,
  card: null,
  link: null, // the call's audio (rtc.js)
  since: 0, // when the call was answered (ms)
  skipped: new Set(), // calls another agent took while they rang here
  leaving: null, // the call being hung up or returned right now (its audio ending is expected)
};
window.hotlineAgent = state; // for the tests and for a look from the devtools
window.hotlineRinger = ringer;

function skills() {
  return [...document.querySelectorAll('#agent-status input[name="skill"]:checked')].map((i) => i.value);
}

function show(mode) {
  state.mode = mode;
  document.body.dataset.mode = mode;
  const inCall = mode === "call";
  $("ringing").hidden = mode !== "ringing" && mode !== "connecting";
  $("accept").disabled = mode === "connecting";
  $("accept").textContent = mode === "connecting" ? "连接中…" : "接听";
  $("hangup").hidden = !inCall;
  $("return").hidden = !inCall;
  $("wrapup").hidden = mode !== "wrapup";
  $("call-body").hidden = mode === "idle";
  $("call-empty").hidden = mode !== "idle";
  $("call-state").textContent = { ringing: "振铃中", connecting: "接通中", call: "通话中", wrapup: "话后小结" }[mode] || "";
  $("call-state").hidden = mode === "idle";
  if (mode === "ringing") ringer.start();
  else ringer.stop();
  if (mode !== "call") $("call-timer").textContent = mode === "wrapup" ? $("call-timer").textContent : "";
}

function showCard(card) {
  state.card = card;
  $("call-card").replaceChildren(renderCard(card));
  transcript.set(card.turns);
  $("ringing-queue").textContent = `${queueLabel(card.queue)} · ${card.reason_label || card.reason || ""}`;
  $("ringing-wait").textContent = card.waited_s != null ? `已等待 ${duration(card.waited_s)}` : "";
}

// --- ringing: the first waiting call of the ticked skills ---
let looking = null;
async function lookForCall() {
  if (state.status !== "available" || (state.mode !== "idle" && state.mode !== "ringing")) return;
  if (looking) return looking;
  looking = (async () => {
    try {
      const { queues = {}, callbacks = [] } = await getJSON("/api/queue");
      renderQueues(queues);
      renderCallbacks(callbacks);
      const wanted = new Set(skills());
      const waiting = Object.entries(queues)
        .filter(([skill]) => wanted.has(skill))
        .flatMap(([, q]) => q.calls || [])
        .filter((c) => !state.skipped.has(c.call_id))
        .sort((a, b) => (a.priority ?? 1) - (b.priority ?? 1) || (b.waited_s ?? 0) - (a.waited_s ?? 0));
      if (state.status !== "available" || (state.mode !== "idle" && state.mode !== "ringing")) return;
      if (state.mode === "ringing" && waiting.some((c) => c.call_id === state.callId)) return; // still ringing
      if (!waiting.length) {
        if (state.mode === "ringing") stopRinging();
        return;
      }
      const card = await getJSON(`/api/calls/${encodeURIComponent(waiting[0].call_id)}`);
      if (state.status !== "available" || (state.mode !== "idle" && state.mode !== "ringing")) return;
      state.callId = card.call_id;
      showCard(card);
      show("ringing");
    } catch (error) {
      if (error.status !== 403 && error.status !== 404) notify(`排队情况读取失败：${error.message}`);
    } finally {
      looking = null;
    }
  })();
  return looking;
}

function stopRinging() {
  state.callId = null;
  state.card = null;
  show("idle");
}

async function accept() {
  if (state.mode !== "ringing") return;
  const callId = state.callId;
  show("connecting");
  try {
    state.link = await connectCall(`/api/calls/${encodeURIComponent(callId)}/accept`, {
      audio: $("remote-audio"),
      onLost: (reason) => connectionLost(callId, reason),
    });
  } catch (error) {
    state.link = null;
    notify(`接听未成功：${error.message}`);
    if (error.status === 409 || error.status === 404) state.skipped.add(callId);
    stopRinging();
    lookForCall();
    return;
  }
  notify("");
  state.since = Date.now();
  show("call");
  tick();
}

function connectionLost(callId, reason) {
  // the gateway closing our leg because of our own 挂断 / 转回 is no loss (it may beat the POST's answer here)
  if (state.callId !== callId || state.mode !== "call" || state.leaving === callId) return;
  endAudio();
  notify(`与来电的语音连接已中断（${reason}），来电已回到队列等待，请稍后重试。`);
  state.callId = null;
  show("idle");
  lookForCall();
}

function endAudio() {
  if (state.link) state.link.close();
  state.link = null;
}

function toWrapup() {
  endAudio();
  show("wrapup");
  $("wrapup-note").focus();
}

async function callAction(action) {
  const callId = state.callId;
  state.leaving = callId;
  try {
    await post(`/api/calls/${encodeURIComponent(callId)}/${action}`, {});
    notify(action === "return" ? "已转回智能客服" : "");
  } catch (error) {
    notify(`操作未成功：${error.message}`);
    if (error.status !== 404) return;
  } finally {
    state.leaving = null;
  }
  toWrapup();
}

async function submitWrapup(event) {
  event.preventDefault();
  const form = $("wrapup");
  const note = form.note.value.trim();
  const disposition = form.disposition.value;
  if (!note) {
    notify("请填写小结");
    return;
  }
  try {
    await post(`/api/calls/${encodeURIComponent(state.callId)}/wrapup`, { note, disposition });
  } catch (error) {
    notify(`小结提交未成功：${error.message}`);
    return;
  }
  notify(`小结已提交（${DISPOSITIONS[disposition]}）`);
  form.reset();
  state.callId = null;
  state.card = null;
  transcript.clear();
  show("idle");
  lookForCall();
}

function tick() {
  if (state.mode === "call") $("call-timer").textContent = duration((Date.now() - state.since) / 1000);
}

// --- queues and callbacks ---
function renderQueues(queues) {
  const rows = Object.entries(queues).map(([skill, q]) =>
    el(
      "tr",
      { dataset: { queue: skill } },
      el("td", {}, queueLabel(skill)),
      el("td", {}, q.waiting ?? 0),
      el("td", {}, duration(q.longest_wait_s)),
      el("td", {}, q.agents_available ?? "—"),
    ),
  );
  $("queue-rows").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 4, class: "empty" }, "无"))]));
}

function renderCallbacks(callbacks) {
  const open = callbacks.filter((c) => c.state !== "done");
  const items = open.map((c) =>
    el(
      "li",
      { dataset: { callback: c.id } },
      el("span", { class: "number" }, c.number_masked),
      el("span", { class: "hint" }, ` ${queueLabel(c.queue)} · ${clock(c.at)}${c.state === "dialling" ? " · 拨打中" : ""}`),
      el("span", { class: "buttons" },
        el("button", { type: "button", "data-action": "dial", onclick: () => callbackAction(c.id, "dial") }, "拨打"),
        el("button", { type: "button", "data-action": "done", onclick: () => callbackAction(c.id, "done") }, "标记完成"),
      ),
    ),
  );
  $("callbacks").replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, "暂无待回电")]));
}

// 拨打: the gateway calls the number over SIP; the POST answers once the callee picks up (or why not)
async function dialCallback(id) {
  if (state.mode !== "idle") {
    notify("请先结束当前通话再回拨");
    return;
  }
  show("connecting");
  $("call-state").textContent = "正在呼叫…";
  notify("正在呼叫，对方接听后即可通话");
  try {
    state.link = await connectCall(`/api/callbacks/${encodeURIComponent(id)}/dial`, {
      audio: $("remote-audio"),
      onLost: (reason) => connectionLost(state.callId, reason),
    });
  } catch (error) {
    state.link = null;
    notify(`回拨未成功：${error.message}`);
    show("idle");
    refreshQueue();
    return;
  }
  state.callId = state.link.answer.call_id;
  $("call-card").replaceChildren(el("p", {}, `回电：${state.link.answer.callback?.number_masked || ""}`));
  notify("");
  state.since = Date.now();
  show("call");
  tick();
}

async function callbackAction(id, action) {
  if (action === "dial") return dialCallback(id);
  try {
    await post(`/api/callbacks/${encodeURIComponent(id)}/${action}`, {});
    notify(action === "dial" ? "正在拨打回电" : "已标记完成");
  } catch (error) {
    notify(`操作未成功：${error.message}`);
  }
  refreshQueue();
}

async function refreshQueue() {
  if (state.status === "available" && (state.mode === "idle" || state.mode === "ringing")) return lookForCall();
  try {
    const { queues = {}, callbacks = [] } = await getJSON("/api/queue");
    renderQueues(queues);
    renderCallbacks(callbacks);
  } catch (error) {
    notify(`排队情况读取失败：${error.message}`);
  }
}

// --- status ---
const STATUS_LABELS = { available: "示闲", away: "示忙", busy: "通话中", wrapup: "话后小结", offline: "未就绪" };

function showStatus(status) {
  state.status = status;
  $("status-now").textContent = STATUS_LABELS[status] || status || STATUS_LABELS.offline;
  $("status-now").dataset.status = status;
}

// a page loaded again (or a second tab) shows the status and skills this agent last set
async function loadStatus() {
  try {
    const now = await getJSON("/api/agent/status");
    if (state.status) return; // a click was quicker
    const chosen = new Set(now.skills || []);
    for (const box of document.querySelectorAll('#agent-status input[name="skill"]')) box.checked = chosen.has(box.value);
    showStatus(now.status === "offline" ? "" : now.status);
  } catch (error) {
    notify(`状态读取失败：${error.message}`);
  }
}

for (const button of document.querySelectorAll("#agent-status button[data-status]")) {
  button.addEventListener("click", async () => {
    unlock(); // a click: the ring tone may play from now on
    try {
      await post("/api/agent/status", { status: button.dataset.status, skills: skills() });
      showStatus(button.dataset.status);
      notify("");
    } catch (error) {
      notify(`操作未成功：${error.message}`);
      return;
    }
    if (state.status === "away" && state.mode === "ringing") stopRinging();
    refreshQueue();
  });
}

$("accept").addEventListener("click", accept);
$("hangup").addEventListener("click", () => callAction("hangup"));
$("return").addEventListener("click", () => callAction("return"));
$("wrapup").addEventListener("submit", submitWrapup);

openEvents({
  queue: refreshQueue,
  callback: refreshQueue,
  call: (call) => {
    if (call.call_id === state.callId) {
      if (state.mode === "ringing" && call.state !== "queued") {
        state.skipped.add(call.call_id); // someone else answered, or the caller hung up
        stopRinging();
      } else if (state.mode === "call" && (call.state === "ended" || call.state === "bot")) {
        notify(call.state === "ended" ? "来电人已挂机" : "通话已转回智能客服");
        toWrapup();
        return;
      }
    }
    refreshQueue();
  },
  turn: (turn) => {
    if (turn.call_id === state.callId) transcript.add(turn);
  },
  partial: (partial) => {
    if (partial.call_id === state.callId) transcript.showPartial(partial.text);
  },
});
show("idle");
loadStatus().then(refreshQueue);
setInterval(tick, 1000);
setInterval(() => state.status === "available" && lookForCall(), POLL_MS);
