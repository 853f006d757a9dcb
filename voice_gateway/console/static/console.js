// The consoles' shared JS (an ES module, served by the console itself: the product runs offline).
//   post(path, body)      JSON POST with the CSRF header; resolves to the answer, throws ConsoleError
//   getJSON(path)         JSON GET
//   openEvents(handlers)  GET /api/events (server-sent events): handlers[type](data, event) per event,
//                         every event also listed in the page's event list; reconnects, resuming after the
//                         last event id (Last-Event-ID); returns {close()}
//   showEvent, notify     the page's event list and notice line
// Loading it also puts the CSRF token into every form's csrftoken field (the sign-in form on a first visit).

const CSRF_COOKIE = "csrftoken";
const CSRF_HEADER = "X-CSRFToken";
const MAX_LISTED = 200;

export class ConsoleError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join("="));
  }
  return "";
}

function toLogin() {
  location.assign("/login?next=" + encodeURIComponent(location.pathname));
}

async function answer(response) {
  let data = {};
  try {
    data = await response.json();
  } catch (_) {
    data = {};
  }
  if (response.status === 401) toLogin();
  if (!response.ok) throw new ConsoleError(response.status, data.error || response.statusText);
  return data;
}

export async function post(path, body = {}) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", [CSRF_HEADER]: csrfToken() },
    body: JSON.stringify(body),
  });
  return answer(response);
}

export async function getJSON(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  return answer(response);
}

export function notify(text) {
  const line = document.getElementById("notice");
  if (!line) return;
  line.textContent = text;
  line.hidden = !text;
}

export function showEvent(type, data) {
  const list = document.getElementById("event-list");
  if (!list) return;
  const item = document.createElement("li");
  const time = new Date().toLocaleTimeString("zh-CN", { hour12: false });
  const summary = typeof data === "string" ? data : JSON.stringify(data);
  item.textContent = `${time} ${type} ${summary.length > 160 ? summary.slice(0, 160) + "…" : summary}`;
  list.prepend(item);
  while (list.children.length > MAX_LISTED) list.lastElementChild.remove();
}

function streamState(text) {
  const state = document.getElementById("stream-state");
  if (state) state.textContent = text;
}

export function openEvents(handlers = {}) {
  let lastId = "";
  let source = null;
  let retryMs = 1000;
  let closed = false;

  function deliver(type, event) {
    if (event.lastEventId) lastId = event.lastEventId;
    let data = event.data;
    try {
      data = JSON.parse(event.data);
    } catch (_) {
      // not JSON: hand it on as text
    }
    showEvent(type, data);
    if (handlers[type]) handlers[type](data, event);
  }

  function open() {
    // EventSource reconnects by itself (with Last-Event-ID) after a dropped stream; once it gives up (an
    // error status, e.g. a session that expired) a new one starts here, with the id in the query instead.
    const url = lastId ? "/api/events?last_event_id=" + encodeURIComponent(lastId) : "/api/events";
    source = new EventSource(url);
    source.onopen = () => {
      retryMs = 1000;
      streamState("已连接");
    };
    source.onmessage = (event) => deliver("message", event);
    for (const type of Object.keys(handlers)) {
      if (type !== "message") source.addEventListener(type, (event) => deliver(type, event));
    }
    source.onerror = async () => {
      if (source.readyState !== EventSource.CLOSED) {
        streamState("重新连接中");
        return;
      }
      streamState("已断开");
      if (closed) return;
      try {
        await getJSON("/api/me"); // a 401 here goes to the sign-in page
      } catch (_) {
        // a refusal or the network: try again below
      }
      setTimeout(() => closed || open(), retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    };
  }

  open();
  return {
    close() {
      closed = true;
      if (source) source.close();
    },
  };
}

for (const field of document.querySelectorAll(`input[name="${CSRF_COOKIE}"]`)) {
  if (!field.value) field.value = csrfToken();
}
