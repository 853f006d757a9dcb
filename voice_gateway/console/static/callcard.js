// What both the agent's and the supervisor's pages show of a call: Chinese labels, the context card, the
// transcript (lines from turns, the recogniser's partial in grey under them), durations.
import { INTENT_LABELS, intentLabel } from "/static/intents.js";

export const QUEUE_LABELS = {
  general: "综合咨询",
  social_insurance: "社会保险",
  card: "社保卡",
  employment: "就业服务",
  talent: "人才人事",
  arbitration: "劳动关系",
};
export const STATE_LABELS = { bot: "智能客服", queued: "排队中", agent: "人工服务中", ended: "已结束" };
export const DISPOSITIONS = { resolved: "已解决", callback: "需回电", transferred: "已转办", other: "其他" };
export const SLOT_LABELS = {
  id_number: "身份证号",
  phone: "电话",
  name: "姓名",
  city: "城市",
  card_status: "卡片状态",
  amount: "金额",
  date: "日期",
};

// the dialogue's own bookkeeping among the slots of a handover: not for the agent to read (identity shows it)
const FLOW_FLAGS = new Set(["verified", "identity_failures", "identity_failed"]);

export function queueLabel(name) {
  return QUEUE_LABELS[name] || name || "—";
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function clock(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso || "";
  return new Date(t).toLocaleString("zh-CN", { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

function confidence(value) {
  return typeof value === "number" ? ` ${Math.round(value * 100)}%` : "";
}

// One transcript: turns by seq and speaker (an event repeating a line replaces it), the partial last.
export class Transcript {
  constructor(list) {
    this.list = list;
    this.lines = new Map();
    this.partial = el("li", { class: "partial", hidden: true });
  }

  clear() {
    this.lines.clear();
    this.list.replaceChildren();
    this.partial.hidden = true;
  }

  set(turns) {
    this.clear();
    for (const turn of turns || []) this.add(turn);
  }

  add(turn) {
    const key = `${turn.seq}:${turn.speaker}`;
    const who = turn.speaker === "caller" ? "来电人" : turn.speaker === "bot" ? "智能客服" : turn.speaker || "";
    const line = el(
      "li",
      { class: `turn ${turn.speaker}`, dataset: { seq: turn.seq ?? "", speaker: turn.speaker || "" } },
      el("span", { class: "who" }, who),
      el("span", { class: "text" }, turn.text || ""),
      turn.speaker === "caller" && turn.intent
        ? el(
            "span",
            { class: "intent", title: "识别的意图与置信度", dataset: { intent: turn.intent } },
            INTENT_LABELS[turn.intent] ? `${INTENT_LABELS[turn.intent]} · ` : "",
            `${turn.intent}${confidence(turn.confidence)}`,
          )
        : null,
    );
    const old = this.lines.get(key);
    if (old) old.replaceWith(line);
    else this.list.append(line);
    this.lines.set(key, line);
    if (turn.speaker === "caller") this.showPartial("");
    this.list.append(this.partial);
    this.list.scrollTop = this.list.scrollHeight;
  }

  showPartial(text) {
    this.partial.textContent = text ? `${text}…` : "";
    this.partial.hidden = !text;
    if (text) this.list.append(this.partial);
    this.list.scrollTop = this.list.scrollHeight;
  }
}

// The context card an agent sees when a call rings and while they have it (GET /api/calls/{id}).
export function renderCard(card) {
  const identity = card.identity || {};
  const verified = identity.verified
    ? el("span", { class: "tag ok" }, "已核验")
    : el("span", { class: "tag warn" }, "未核验");
  const slots = Object.entries(card.slots || {}).filter(([name]) => !FLOW_FLAGS.has(name));
  const earlier = card.earlier_calls || [];
  const row = (label, ...value) => [el("dt", {}, label), el("dd", {}, ...value)];
  return el(
    "dl",
    { class: "card-fields" },
    row("转人工原因", el("strong", { dataset: { field: "reason" } }, card.reason_label || card.reason || "—")),
    row("业务类别", el("span", { dataset: { field: "queue" } }, queueLabel(card.queue))),
    row("身份", el("span", { dataset: { field: "identity" } }, identity.id_number || "未提供"), " ", verified),
    row(
      "意图路径",
      el(
        "span",
        { dataset: { field: "intent_path" }, title: (card.intent_path || []).join(" → ") },
        (card.intent_path || []).map(intentLabel).join(" → ") || "—",
      ),
    ),
    row(
      "已收集信息",
      slots.length
        ? el("span", { dataset: { field: "slots" } }, slots.map(([k, v]) => `${SLOT_LABELS[k] || k}：${v}`).join("；"))
        : el("span", { class: "empty", dataset: { field: "slots" } }, "无"),
    ),
    row("摘要", el("span", { dataset: { field: "summary" } }, card.summary || "—")),
    row(
      "历史来电",
      earlier.length
        ? el(
            "ul",
            { class: "earlier", dataset: { field: "earlier_calls" } },
            earlier.map((c) =>
              el("li", {}, `${clock(c.started_at)} ${c.reason || ""} ${DISPOSITIONS[c.disposition] || c.disposition || ""}`),
            ),
          )
        : el("span", { class: "empty", dataset: { field: "earlier_calls" } }, "无"),
    ),
  );
}
