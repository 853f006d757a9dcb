// /supervisor: the supervisor's dashboard (skeleton). Live transcripts, figures and the listen / whisper /
// barge / take-over controls are filled in on top of this: handlers per event type below, actions with post().
import { getJSON, notify, openEvents } from "/static/console.js";

const rows = document.getElementById("call-rows");
const queueView = document.getElementById("queue-view");

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  return td;
}

async function refreshCalls() {
  try {
    const { calls } = await getJSON("/api/calls");
    rows.replaceChildren();
    for (const call of calls) {
      const tr = document.createElement("tr");
      tr.dataset.callId = call.call_id;
      const last = call.turns.length ? call.turns[call.turns.length - 1] : null;
      for (const value of [call.call_id, call.gateway, call.state, call.queue, call.started_at, last && last.text]) {
        tr.append(cell(value));
      }
      rows.append(tr);
    }
    if (!calls.length) rows.innerHTML = '<tr><td colspan="6" class="empty">暂无通话</td></tr>';
  } catch (error) {
    notify(`通话列表读取失败：${error.message}`);
  }
}

async function refreshQueue() {
  try {
    queueView.textContent = JSON.stringify(await getJSON("/api/queue"), null, 1);
    queueView.classList.remove("empty");
  } catch (error) {
    notify(`排队情况读取失败：${error.message}`);
  }
}

openEvents({ call: refreshCalls, queue: refreshQueue });
refreshCalls();
refreshQueue();
