// /agent: the agent's workspace (skeleton). The offered call, the context card, the call controls and the
// browser audio are filled in on top of this: handlers per event type below, actions with post().
import { getJSON, notify, openEvents, post } from "/static/console.js";

const queueView = document.getElementById("queue-view");

async function refreshQueue() {
  try {
    queueView.textContent = JSON.stringify(await getJSON("/api/queue"), null, 1);
    queueView.classList.remove("empty");
  } catch (error) {
    notify(`排队情况读取失败：${error.message}`);
  }
}

for (const button of document.querySelectorAll("#agent-status button[data-status]")) {
  button.addEventListener("click", async () => {
    const skills = [...document.querySelectorAll('#agent-status input[name="skill"]:checked')].map((i) => i.value);
    try {
      await post("/api/agent/status", { status: button.dataset.status, skills });
      document.getElementById("status-now").textContent = button.textContent;
      notify("");
    } catch (error) {
      notify(`操作未成功：${error.message}`);
    }
  });
}

openEvents({
  queue: refreshQueue,
  call: () => {}, // an offered or changed call: listed in the event list for now
});
refreshQueue();
