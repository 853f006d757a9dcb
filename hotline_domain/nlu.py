"""The shape of one NLU result as `hotline nlu parse` writes it (shared by the server and offline paths)."""

from __future__ import annotations

from typing import Any

RANKED = 3  # runner-up intents kept
MAX_TEXT = 1000  # longer caller text is cut: nobody says more in one turn, and it bounds the work per turn


def parse_result(text: str, parsed: dict[str, Any]) -> dict[str, Any]:
    """{text, intent, confidence, ranking[{name, confidence}] (top RANKED), entities[{entity, value, start, end}]}
    from a Rasa parse result."""
    intent = parsed.get("intent") or {}
    return {
        "text": text,
        "intent": intent.get("name"),
        "confidence": round(float(intent.get("confidence") or 0.0), 4),
        "ranking": [
            {"name": r.get("name"), "confidence": round(float(r.get("confidence") or 0.0), 4)}
            for r in (parsed.get("intent_ranking") or [])[:RANKED]
        ],
        "entities": [
            {k: e[k] for k in ("entity", "value", "start", "end") if k in e} for e in parsed.get("entities") or []
        ],
    }
