// /trainer: the trainer's workbench, five tabs (the address's #hash says which, #detail/<id> opens one turn).
//   收件箱      the turns the bot did not understand well, filtered; counts per predicted intent
//   标注        one turn: its audio and context, the corrected text, the intent, entities marked in the text;
//              保存为训练例句 or 忽略
//   故事与规则   the stories and rules files in an editor; a refusal shows the validator's output
//   训练与评估   开始训练, the job's progress (polled every second while it runs), then the evaluation report
//   模型版本     the trained models: 上线 / 回滚; an admin may 强制上线 a model the evaluation refused, with a reason
import { csrfToken, getJSON, notify, post } from "/static/console.js";
import { SLOT_LABELS, clock, el } from "/static/callcard.js";
import { intentLabel } from "/static/intents.js";

const $ = (id) => document.getElementById(id);
const TABS = ["inbox", "detail", "stories", "training", "models"];
const POLL_MS = 1000;
const LOG_LINES = 12;
const REASON_LABELS = {
  fallback: "没听懂",
  low_confidence: "置信度低",
  denied: "来电人否认",
  repeated: "来电人重复",
  handover: "转人工",
};
const CHANNEL_LABELS = { sip: "电话", phone: "电话", audiosocket: "电话", webrtc: "网页语音", rest: "文字" };
const VERDICT_LABELS = { annotated: "已标注", dismissed: "已忽略" };
const KIND_LABELS = { stories: "故事", rules: "规则" };
const JOB_LABELS = { running: "训练中", done: "已完成", failed: "失败" };

const state = {
  tab: "inbox",
  role: document.getElementById("user-role")?.dataset.role || "",
  intents: [], // GET /api/intents: [{name, description, domain, examples}]
  entities: [],
  domains: {}, // name -> label
  items: [], // the inbox as last listed
  listing: 0, // the latest inbox request (an older answer arriving later is dropped)
  item: null, // the turn open in 标注
  opening: 0,
  next: null, // the next unhandled item after the one just saved or dismissed
  chosen: "", // the intent picked for it
  marks: [], // entities marked: [{start, end, entity, value}], UTF-16 offsets into #detail-text
  file: null, // the stories/rules file in the editor
  saved: {}, // path -> its text as last read or saved
  drafts: {}, // path -> unsaved text, kept while the page is open
  job: null,
  polling: null,
  reportOf: null, // the job whose report is shown
};
window.hotlineTrainer = state; // for the tests and for a look from the devtools

// --- small helpers ---
const fixed = (x, digits = 3) => (typeof x === "number" ? x.toFixed(digits) : "—");
const signed = (x) => (typeof x === "number" ? (x > 0 ? "+" : "") + x.toFixed(3) : "—");
const shortSha = (sha) => String(sha || "").slice(0, 7);
const channelLabel = (name) => CHANNEL_LABELS[name] || name || "—";
const domainLabel = (name) => state.domains[name] || name || "";
const entityLabel = (name) => (SLOT_LABELS[name] ? `${SLOT_LABELS[name]} ${name}` : name);
const codePoints = (text, upto) => [...text.slice(0, upto)].length; // the API counts characters, JS UTF-16 units

function intentTag(name, confidence) {
  const label = intentLabel(name);
  return el(
    "span",
    { class: "intent-tag", title: name, dataset: { intent: name || "" } },
    label || "—",
    label && label !== name ? el("code", {}, name) : null,
    typeof confidence === "number" ? el("span", { class: "conf" }, fixed(confidence, 2)) : null,
  );
}

function reasonChips(reasons) {
  return (reasons || []).map((r) => el("span", { class: `chip reason-${r}`, dataset: { reason: r } }, REASON_LABELS[r] || r));
}

// replaceChildren without the nulls (a part left out)
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function say(node, text, kind = "") {
  node.className = `result ${kind}`;
  node.textContent = text;
}

function addOption(select, value, label) {
  if (![...select.options].some((o) => o.value === value)) select.append(el("option", { value }, label));
}

// a POST whose refusal carries more than the error (the validator's output): {ok, status, data}
async function postForDetail(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(body),
  });
  let data = {};
  try {
    data = await response.json();
  } catch (_) {
    data = {};
  }
  if (response.status === 401) location.assign("/login?next=" + encodeURIComponent(location.pathname));
  return { ok: response.ok, status: response.status, data };
}

// --- tabs ---
function showTab(name, hash) {
  state.tab = TABS.includes(name) ? name : "inbox";
  hash = hash || state.tab;
  for (const panel of document.querySelectorAll(".tab-panel")) panel.hidden = panel.dataset.panel !== state.tab;
  for (const tab of document.querySelectorAll("#trainer-tabs [data-tab]")) {
    tab.classList.toggle("active", tab.dataset.tab === state.tab);
    tab.setAttribute("aria-selected", String(tab.dataset.tab === state.tab));
  }
  if (location.hash !== `#${hash}`) history.replaceState(null, "", `#${hash}`);
}

// a tab by name; 标注 keeps the turn open there in the address
function goTab(name) {
  if (name === "detail" && state.item) showTab("detail", `detail/${state.item.id}`);
  else showTab(name);
}

function tabFromHash() {
  const [name, id] = location.hash.slice(1).split("/");
  if (name === "detail" && id && id !== String(state.item?.id)) openItem(id);
  else goTab(name);
}

// --- 收件箱 ---
async function loadIntents() {
  try {
    const data = await getJSON("/api/intents");
    state.intents = data.intents || [];
    state.entities = data.entities || [];
    state.domains = Object.fromEntries((data.domains || []).map((d) => [d.name, d.label || d.name]));
  } catch (error) {
    notify(`意图目录读取失败：${error.message}`);
    return;
  }
  const form = $("inbox-filters");
  for (const [name, label] of Object.entries(state.domains)) addOption(form.domain, name, label);
  for (const intent of state.intents) addOption(form.intent, intent.name, `${intentLabel(intent.name)}（${intent.name}）`);
  renderEntityButtons();
  renderIntentList();
}

async function loadInbox() {
  const query = new URLSearchParams();
  for (const [name, value] of new FormData($("inbox-filters"))) {
    if (String(value).trim() !== "") query.set(name, String(value).trim());
  }
  const listing = ++state.listing;
  try {
    const data = await getJSON(`/api/inbox?${query}`);
    if (listing !== state.listing) return;
    state.items = data.items || [];
    renderInbox(data);
  } catch (error) {
    if (listing === state.listing) $("inbox-summary").textContent = `收件箱读取失败：${error.message}`;
  }
}

function renderInbox(data) {
  const form = $("inbox-filters");
  for (const item of state.items) if (item.channel) addOption(form.channel, item.channel, channelLabel(item.channel));
  const total = data.total ?? state.items.length;
  $("inbox-summary").textContent = total > state.items.length ? `共 ${total} 条，显示前 ${state.items.length} 条` : `共 ${total} 条`;
  $("inbox-total").textContent = total ? String(total) : "";
  const rows = state.items.map((item) =>
    el(
      "tr",
      {
        dataset: { id: item.id },
        class: item.id === state.item?.id ? "selected" : "",
        tabindex: "0",
        onclick: () => openItem(item.id),
        onkeydown: (event) => event.key === "Enter" && openItem(item.id),
      },
      el("td", { class: "nowrap" }, clock(item.created_at)),
      el("td", { class: "nowrap" }, channelLabel(item.channel)),
      el("td", { class: "text" }, item.text || el("span", { class: "empty" }, "（空）")),
      el("td", {}, intentTag(item.intent, item.confidence)),
      el("td", {}, reasonChips(item.reasons)),
      el(
        "td",
        { class: "nowrap" },
        item.reviewed ? el("span", { class: "tag ok" }, VERDICT_LABELS[item.verdict] || "已处理") : el("span", { class: "tag" }, "未处理"),
        item.has_audio ? el("span", { class: "tag audio", title: "有录音" }, "录音") : null,
      ),
    ),
  );
  const empty = el("tr", {}, el("td", { colspan: 6, class: "empty" }, "没有符合条件的记录"));
  $("inbox-table").tBodies[0].replaceChildren(...(rows.length ? rows : [empty]));
  renderCounts(data.counts || {});
}

function renderCounts(counts) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const most = Math.max(1, ...entries.map(([, n]) => n));
  const pick = (intent) => {
    const select = $("inbox-filters").intent;
    addOption(select, intent, `${intentLabel(intent)}（${intent}）`);
    select.value = select.value === intent ? "" : intent; // a second click shows every intent again
    loadInbox();
  };
  const lines = entries.map(([intent, n]) =>
    el(
      "li",
      { dataset: { intent }, title: `只看「${intentLabel(intent)}」`, onclick: () => pick(intent) },
      el("span", { class: "label" }, intentLabel(intent)),
      el("span", { class: "meter" }, el("span", { style: `width: ${Math.round((100 * n) / most)}%` })),
      el("span", { class: "n", dataset: { count: n } }, n),
    ),
  );
  $("inbox-counts").replaceChildren(...(lines.length ? lines : [el("li", { class: "empty" }, "无")]));
}

// --- 标注 ---
async function openItem(id) {
  const opening = ++state.opening;
  showTab("detail", `detail/${id}`);
  $("detail-empty").textContent = "加载中";
  $("detail-empty").hidden = false;
  $("detail-body").hidden = true;
  let data;
  try {
    data = await getJSON(`/api/inbox/${encodeURIComponent(id)}`);
  } catch (error) {
    if (opening === state.opening) $("detail-empty").textContent = `读取失败：${error.message}`;
    return;
  }
  if (opening !== state.opening) return;
  state.item = data.item;
  for (const tr of $("inbox-table").querySelectorAll("tr[data-id]")) tr.classList.toggle("selected", tr.dataset.id === String(data.item.id));
  renderDetail(data);
}

function renderDetail({ item, context = [], audio_url: audioUrl }) {
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("detail-audio").replaceChildren(
    audioUrl
      ? el("audio", { controls: true, preload: "none", src: audioUrl, id: "detail-audio-player" })
      : el("p", { class: "empty" }, "无录音（来电未同意录音或不是电话）"),
  );
  $("detail-original").textContent = item.text || "（空）";
  $("detail-meta").replaceChildren(
    [clock(item.created_at), channelLabel(item.channel), item.domain ? domainLabel(item.domain) : "", item.call_id ? `通话 ${item.call_id}` : ""]
      .filter(Boolean)
      .join(" · "),
    " ",
    ...reasonChips(item.reasons),
  );
  const ranking = item.ranking?.length ? item.ranking : [{ intent: item.intent, confidence: item.confidence }];
  $("detail-ranking").replaceChildren(
    ...ranking.map((r, i) =>
      el(
        "li",
        { class: i === 0 ? "top" : "", dataset: { intent: r.intent }, title: "点击选用这个意图", onclick: () => chooseIntent(r.intent) },
        el("span", { class: "meter" }, el("span", { style: `width: ${Math.round(100 * (r.confidence || 0))}%` })),
        intentTag(r.intent, r.confidence),
        i === 0 ? el("span", { class: "hint" }, "（模型的判断）") : null,
      ),
    ),
  );
  $("detail-context").replaceChildren(
    ...context.map((turn) =>
      el(
        "li",
        { class: `turn ${turn.who}${turn.current ? " current" : ""}` },
        el("span", { class: "who" }, turn.who === "bot" ? "坐席机器人" : "来电人"),
        el("span", { class: "text" }, turn.text || ""),
        turn.who === "caller" && turn.intent ? intentTag(turn.intent, turn.confidence) : null,
      ),
    ),
  );
  if (!context.length) $("detail-context").append(el("li", { class: "empty" }, "无"));
  $("detail-reviewed").hidden = !item.reviewed;
  $("detail-reviewed").textContent = `已处理：${VERDICT_LABELS[item.verdict] || "是"}`;
  $("detail-text").value = item.text || "";
  state.marks = [];
  renderMarks();
  $("recognition-error").checked = false;
  $("intent-search").value = "";
  renderIntentList();
  chooseIntent(item.intent && item.intent !== "nlu_fallback" ? item.intent : "");
  say($("annotate-result"), "");
  $("next-item").hidden = true;
  setBusy(false);
}

function chooseIntent(name) {
  state.chosen = name || "";
  const chosen = $("intent-chosen");
  chosen.dataset.intent = state.chosen;
  chosen.textContent = state.chosen ? `${intentLabel(state.chosen)}（${state.chosen}）` : "未选择";
  for (const option of $("intent-list").querySelectorAll("[data-intent]")) {
    const on = option.dataset.intent === state.chosen;
    option.classList.toggle("chosen", on);
    option.setAttribute("aria-selected", String(on));
    if (on) option.scrollIntoView({ block: "nearest" });
  }
}

function renderIntentList() {
  const words = $("intent-search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const shown = state.intents.filter((intent) => {
    const haystack = [intent.name, intentLabel(intent.name), intent.description, domainLabel(intent.domain)].join(" ").toLowerCase();
    return words.every((word) => haystack.includes(word));
  });
  const options = shown.map((intent) =>
    el(
      "li",
      {
        role: "option",
        dataset: { intent: intent.name },
        class: intent.name === state.chosen ? "chosen" : "",
        "aria-selected": String(intent.name === state.chosen),
        onclick: () => chooseIntent(intent.name),
      },
      el("span", { class: "name" }, intentLabel(intent.name)),
      el("code", {}, intent.name),
      el("span", { class: "hint" }, `${domainLabel(intent.domain)} · ${intent.examples ?? 0} 句`),
      intent.description ? el("span", { class: "desc" }, intent.description) : null,
    ),
  );
  $("intent-list").replaceChildren(...(options.length ? options : [el("li", { class: "empty" }, "没有符合的意图")]));
}

function renderEntityButtons() {
  $("entity-list").replaceChildren(
    ...state.entities.map((name) =>
      el("button", { type: "button", class: "entity", dataset: { entity: name }, onclick: () => markEntity(name) }, entityLabel(name)),
    ),
  );
}

// the text selected in #detail-text (leading and trailing spaces left out) becomes an entity
function markEntity(entity) {
  const input = $("detail-text");
  const text = input.value;
  let start = input.selectionStart ?? 0;
  let end = input.selectionEnd ?? 0;
  while (start < end && /\s/.test(text[start])) start++;
  while (end > start && /\s/.test(text[end - 1])) end--;
  if (start >= end) return say($("annotate-result"), "请先在文本框中选中要标记的文字", "error");
  if (state.marks.some((m) => start < m.end && m.start < end)) return say($("annotate-result"), "和已标记的实体重叠了", "error");
  state.marks.push({ start, end, entity, value: text.slice(start, end) });
  state.marks.sort((a, b) => a.start - b.start);
  say($("annotate-result"), "");
  renderMarks();
}

// after an edit of the text each entity moves with its words (the nearest place they occur), or goes
function followText() {
  const text = $("detail-text").value;
  const kept = [];
  const lost = [];
  for (const mark of state.marks) {
    let best = -1;
    for (let at = text.indexOf(mark.value); at !== -1; at = text.indexOf(mark.value, at + 1)) {
      if (best < 0 || Math.abs(at - mark.start) < Math.abs(best - mark.start)) best = at;
    }
    const end = best + mark.value.length;
    if (best >= 0 && !kept.some((k) => best < k.end && k.start < end)) kept.push({ ...mark, start: best, end });
    else lost.push(mark.value);
  }
  state.marks = kept.sort((a, b) => a.start - b.start);
  if (lost.length) say($("annotate-result"), `文本改了，实体“${lost.join("”“")}”已去掉`, "error");
  renderMarks();
}

function renderMarks() {
  const text = $("detail-text").value;
  $("entity-chips").replaceChildren(
    ...state.marks.map((mark, i) =>
      el(
        "span",
        { class: "chip entity-chip", dataset: { entity: mark.entity, start: mark.start, end: mark.end } },
        `${SLOT_LABELS[mark.entity] || mark.entity}：${mark.value}`,
        el("button", { type: "button", class: "remove", title: "去掉", "aria-label": "去掉", onclick: () => removeMark(i) }, "×"),
      ),
    ),
  );
  const parts = [];
  let at = 0;
  for (const mark of state.marks) {
    parts.push(text.slice(at, mark.start), el("mark", { title: mark.entity }, text.slice(mark.start, mark.end)));
    at = mark.end;
  }
  parts.push(text.slice(at));
  $("entity-preview").replaceChildren(...parts);
  $("entity-preview").hidden = !state.marks.length;
}

function removeMark(index) {
  state.marks.splice(index, 1);
  renderMarks();
}

function setBusy(busy) {
  for (const id of ["save-example", "dismiss"]) $(id).disabled = busy;
}

async function saveExample(event) {
  event.preventDefault();
  const raw = $("detail-text").value;
  const text = raw.trim();
  const lead = raw.length - raw.trimStart().length;
  if (!text) return say($("annotate-result"), "文本不能为空", "error");
  if (!state.chosen) return say($("annotate-result"), "请选择意图", "error");
  const entities = state.marks.map((m) => ({
    start: codePoints(text, m.start - lead),
    end: codePoints(text, m.end - lead),
    entity: m.entity,
  }));
  const body = { text, intent: state.chosen, entities, recognition_error: $("recognition-error").checked };
  await handle(`/api/inbox/${encodeURIComponent(state.item.id)}/annotate`, body, "annotated", (answer) =>
    `已保存为训练例句：${answer.file || ""}，提交 ${shortSha(answer.commit)}`,
  );
}

async function dismiss() {
  await handle(`/api/inbox/${encodeURIComponent(state.item.id)}/dismiss`, {}, "dismissed", () => "已忽略");
}

async function handle(path, body, verdict, done) {
  const item = state.item;
  setBusy(true);
  try {
    const answer = await post(path, body);
    say($("annotate-result"), done(answer), "ok");
  } catch (error) {
    say($("annotate-result"), error.message, "error"); // the API's own words
    setBusy(false);
    return;
  }
  Object.assign(item, { reviewed: true, verdict });
  $("detail-reviewed").hidden = false;
  $("detail-reviewed").textContent = `已处理：${VERDICT_LABELS[verdict]}`;
  const at = state.items.findIndex((i) => i.id === item.id);
  const next = state.items.slice(at + 1).find((i) => !i.reviewed);
  state.next = next ? next.id : null;
  $("next-item").hidden = !next;
  setBusy(false);
  loadInbox();
}

// --- 故事与规则 ---
async function loadFiles() {
  try {
    const { files = [] } = await getJSON("/api/training/files");
    const items = files.map((f) =>
      el(
        "li",
        {},
        el("button", { type: "button", class: f.path === state.file ? "file active" : "file", dataset: { path: f.path, kind: f.kind }, onclick: () => openFile(f.path) }, f.path),
        el("span", { class: "tag" }, KIND_LABELS[f.kind] || f.kind),
      ),
    );
    $("story-files").replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, "没有文件")]));
  } catch (error) {
    $("story-files").replaceChildren(el("li", { class: "error" }, `文件列表读取失败：${error.message}`));
  }
}

async function openFile(path) {
  keepDraft();
  let data;
  try {
    data = await getJSON(`/api/training/file?path=${encodeURIComponent(path)}`);
  } catch (error) {
    return $("story-result").replaceChildren(el("p", { class: "error" }, `读取失败：${error.message}`));
  }
  state.file = path;
  state.saved[path] = data.text ?? "";
  $("story-path").textContent = path;
  $("story-text").value = state.drafts[path] ?? state.saved[path];
  $("story-text").disabled = false;
  $("story-save").disabled = false;
  $("story-result").replaceChildren();
  for (const b of $("story-files").querySelectorAll("[data-path]")) b.classList.toggle("active", b.dataset.path === path);
  showDirty();
}

function keepDraft() {
  if (!state.file) return;
  const text = $("story-text").value;
  if (text !== state.saved[state.file]) state.drafts[state.file] = text;
  else delete state.drafts[state.file];
}

function showDirty() {
  $("story-dirty").hidden = !state.file || $("story-text").value === state.saved[state.file];
}

async function saveFile() {
  const path = state.file;
  const text = $("story-text").value;
  $("story-save").disabled = true;
  let answer;
  try {
    answer = await postForDetail("/api/training/file", { path, text });
  } catch (error) {
    answer = { ok: false, data: { error: `保存失败：${error.message}` } };
  }
  $("story-save").disabled = false;
  const { ok, data } = answer;
  if (!ok) {
    return fill(
      $("story-result"),
      el("p", { class: "error" }, el("strong", {}, "未保存。"), " ", data.error || `保存失败（${answer.status}）`),
      data.output ? el("pre", { class: "log validator" }, data.output) : null,
    );
  }
  state.saved[path] = text;
  delete state.drafts[path];
  showDirty();
  $("story-result").replaceChildren(el("p", { class: "ok" }, `已保存，提交 ${shortSha(data.commit)}`));
}

// --- 训练与评估 ---
async function retrain() {
  $("retrain").disabled = true;
  say($("retrain-result"), "");
  try {
    const { job } = await post("/api/training/retrain", {});
    showJob(job);
  } catch (error) {
    say($("retrain-result"), error.message, "error");
  }
  pollJob();
}

async function pollJob() {
  clearTimeout(state.polling);
  try {
    const { job } = await getJSON("/api/training/job");
    showJob(job);
  } catch (error) {
    $(state.job ? "job-times" : "job-none").textContent = `训练任务读取失败：${error.message}`;
  }
  if (state.job?.state === "running") state.polling = setTimeout(pollJob, POLL_MS);
}

function showJob(job) {
  const wasRunning = state.job?.state === "running";
  state.job = job || null;
  $("job-none").hidden = Boolean(job);
  $("job-none").textContent = "还没有训练任务。";
  $("job").hidden = !job;
  const running = job?.state === "running";
  $("retrain").disabled = running;
  $("retrain").textContent = running ? "训练中…" : "开始训练";
  $("job-badge").textContent = running ? "训练中" : "";
  if (!job) {
    $("report").hidden = true;
    return;
  }
  const progress = Math.min(1, Math.max(0, Number(job.progress) || 0));
  $("job-state").textContent = JOB_LABELS[job.state] || job.state;
  $("job-state").className = `tag ${job.state === "done" ? "ok" : job.state === "failed" ? "warn" : ""}`;
  $("job-stage").textContent = job.stage || "";
  $("job-progress").value = job.state === "done" ? 1 : progress;
  $("job-percent").textContent = `${Math.round((job.state === "done" ? 1 : progress) * 100)}%`;
  $("job-times").textContent = [
    job.started_at ? `开始 ${clock(job.started_at)}` : "",
    job.finished_at ? `结束 ${clock(job.finished_at)}` : "",
    job.model ? `模型 ${job.model}` : "",
  ]
    .filter(Boolean)
    .join(" · ");
  $("job-log").textContent = (job.log || []).slice(-LOG_LINES).join("\n");
  $("job-error").hidden = !job.error;
  $("job-error").textContent = job.error || "";
  const finished = `${job.id}@${job.finished_at || ""}`;
  if (job.state === "done" && job.report && state.reportOf !== finished) {
    state.reportOf = finished;
    renderReport(job.report);
  } else if (job.state !== "done") {
    state.reportOf = null;
    $("report").hidden = true;
  }
  if (wasRunning && !running) loadModels();
}

function table(head, rows, cls = "grid small") {
  return el("table", { class: cls }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

function textList(texts) {
  return texts?.length ? el("ul", { class: "texts" }, texts.map((t) => el("li", {}, t))) : el("p", { class: "empty" }, "无");
}

function renderReport(report) {
  const before = report.before || {};
  const after = report.after || {};
  const comparison = report.comparison || {};
  const verdict = report.verdict || {};
  const trend = (delta) => (delta > 0 ? "better" : delta < 0 ? "worse" : "");
  const change = (a, b) => (typeof a === "number" && typeof b === "number" ? b - a : null);
  const summaryRow = (label, key) => {
    const delta = change(before[key], after[key]);
    return el("tr", {}, el("td", {}, label), el("td", {}, fixed(before[key])), el("td", {}, fixed(after[key])), el("td", { class: trend(delta) }, signed(delta)));
  };
  const intentRows = (comparison.per_intent || []).map((r) =>
    el(
      "tr",
      { class: trend(r.delta), dataset: { intent: r.intent } },
      el("td", {}, intentTag(r.intent)),
      el("td", {}, fixed(r.before)),
      el("td", {}, fixed(r.after)),
      el("td", { class: "delta" }, signed(r.delta)),
    ),
  );
  const mark = (got, expected) => el("td", { class: got === expected ? "better" : "worse" }, intentTag(got));
  const extraRows = (report.extra || []).map((x) =>
    el("tr", {}, el("td", {}, x.text), el("td", {}, intentTag(x.expected)), mark(x.before, x.expected), mark(x.after, x.expected)),
  );
  fill(
    $("report"),
    el(
      "div",
      { id: "report-verdict", class: `verdict ${verdict.allowed ? "allowed" : "refused"}`, dataset: { allowed: String(Boolean(verdict.allowed)) } },
      el("strong", {}, verdict.allowed ? "评估通过，可以上线" : "评估未通过，不能上线"),
      verdict.rule ? el("p", { class: "rule" }, verdict.rule) : null,
      verdict.reasons?.length ? el("ul", {}, verdict.reasons.map((r) => el("li", {}, r))) : null,
      el("button", { type: "button", onclick: () => goTab("models") }, "去模型版本"),
    ),
    el("h3", {}, "总体"),
    report.before ? null : el("p", { class: "hint" }, "没有上一版模型可比较。"),
    table(["", "训练前", "训练后", "变化"], [summaryRow("准确率", "accuracy"), summaryRow("宏平均 F1", "macro_f1")], "grid small summary"),
    el("h3", {}, "各意图 F1"),
    table(["意图", "训练前", "训练后", "变化"], intentRows.length ? intentRows : [el("tr", {}, el("td", { colspan: 4, class: "empty" }, "无"))], "grid small per-intent"),
    el("div", { class: "report-texts" },
      el("div", {}, el("h3", {}, `改对的句子（${comparison.fixed?.length || 0}）`), textList(comparison.fixed)),
      el("div", {}, el("h3", {}, `改错的句子（${comparison.broken?.length || 0}）`), textList(comparison.broken)),
    ),
    el("h3", {}, "收件箱里标注过的句子"),
    extraRows.length ? table(["句子", "标注的意图", "训练前", "训练后"], extraRows, "grid small extra") : el("p", { class: "empty" }, "无"),
    el("h3", {}, "混淆矩阵"),
    report.confusion_svg_url ? el("img", { src: report.confusion_svg_url, alt: "混淆矩阵", class: "confusion" }) : el("p", { class: "empty" }, "无"),
  );
  $("report").hidden = false;
}

// --- 模型版本 ---
async function loadModels() {
  try {
    renderModels(await getJSON("/api/models"));
  } catch (error) {
    $("model-table").tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "error" }, `读取失败：${error.message}`)));
  }
}

function renderModels({ versions = [], in_service: inService = null }) {
  $("in-service").textContent = inService || "无";
  const verdict = (allowed) =>
    allowed === true ? el("span", { class: "tag ok" }, "可上线") : allowed === false ? el("span", { class: "tag warn" }, "不予上线") : "—";
  const rows = versions.map((v) =>
    el(
      "tr",
      { dataset: { name: v.name }, class: v.in_service ? "in-service" : "" },
      el("td", {}, el("code", {}, v.name)),
      el("td", { class: "nowrap" }, clock(v.trained_at)),
      el("td", {}, v.trained_by || "—"),
      el("td", {}, fixed(v.accuracy)),
      el("td", {}, fixed(v.macro_f1)),
      el("td", {}, verdict(v.allowed)),
      el("td", {}, v.in_service ? el("span", { class: "tag ok in-use" }, "在用") : ""),
      el("td", {}, el("button", { type: "button", class: "promote", dataset: { name: v.name }, disabled: v.in_service, onclick: () => promote(v.name) }, "上线")),
    ),
  );
  const empty = el("tr", {}, el("td", { colspan: 8, class: "empty" }, "还没有训练好的模型"));
  $("model-table").tBodies[0].replaceChildren(...(rows.length ? rows : [empty]));
}

async function promote(name) {
  const override = state.role === "admin" && $("override").checked;
  const reason = override ? $("override-reason").value.trim() : "";
  if (override && !reason) {
    $("override-reason").focus();
    return say($("model-result"), "强制上线要填写理由", "error");
  }
  try {
    const answer = await post("/api/models/promote", { name, override, reason });
    say($("model-result"), `已上线：${answer.in_service || name}`, "ok");
    $("override").checked = false;
    $("override-reason").value = "";
    $("override-reason").disabled = true;
  } catch (error) {
    say($("model-result"), error.message, "error");
  }
  loadModels();
}

async function rollback() {
  try {
    const answer = await post("/api/models/rollback", {});
    say($("model-result"), `已回滚，在用：${answer.in_service || "无"}`, "ok");
  } catch (error) {
    say($("model-result"), error.message, "error");
  }
  loadModels();
}

async function loadMe() {
  try {
    state.role = (await getJSON("/api/me")).role || state.role;
  } catch (_) {
    // the page's own role label stands
  }
  $("override-box").hidden = state.role !== "admin";
}

// --- wiring ---
for (const tab of document.querySelectorAll("#trainer-tabs [data-tab]")) {
  tab.addEventListener("click", () => goTab(tab.dataset.tab));
}
window.addEventListener("hashchange", tabFromHash);
const filterForm = $("inbox-filters");
filterForm.addEventListener("submit", (event) => {
  event.preventDefault();
  loadInbox();
});
filterForm.addEventListener("change", loadInbox);
filterForm.addEventListener("reset", () => setTimeout(loadInbox));
for (const [reason, label] of Object.entries(REASON_LABELS)) addOption(filterForm.reason, reason, label);

$("annotate-form").addEventListener("submit", saveExample);
$("dismiss").addEventListener("click", dismiss);
$("next-item").addEventListener("click", () => state.next != null && openItem(state.next));
$("back-inbox").addEventListener("click", () => goTab("inbox"));
$("detail-text").addEventListener("input", followText);
$("intent-search").addEventListener("input", renderIntentList);
$("intent-search").addEventListener("keydown", (event) => {
  if (event.key !== "Enter") return;
  event.preventDefault(); // Enter picks the first intent listed instead of saving
  const first = $("intent-list").querySelector("[data-intent]");
  if (first) chooseIntent(first.dataset.intent);
});

$("story-text").addEventListener("input", showDirty);
$("story-text").addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "s") {
    event.preventDefault();
    if (state.file) saveFile();
  }
});
$("story-save").addEventListener("click", saveFile);

$("retrain").addEventListener("click", retrain);
$("rollback").addEventListener("click", rollback);
$("override").addEventListener("change", () => {
  $("override-reason").disabled = !$("override").checked;
  $("override-reason").required = $("override").checked;
});

tabFromHash();
loadMe();
loadFiles();
loadModels();
pollJob();
Promise.allSettled([loadIntents(), loadInbox()]).then(() => {
  window.hotlineTrainerReady = true;
});
