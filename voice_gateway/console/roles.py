"""Who a console user is: a role, and for agents the queues (skills) they take calls from.

Admin can do everything; every other role opens its own page and acts within it (`Role.admits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from hotline_domain.contract import HandoffQueue


class Role(str, Enum):
    AGENT = "agent"  # takes handed-over calls from the queues of their skills
    SUPERVISOR = "supervisor"  # watches every live call; listens, whispers, barges, takes over
    TRAINER = "trainer"  # the dialogue's training data
    ADMIN = "admin"  # users and the audit log, and everything the others can do

    def __str__(self) -> str:
        return str(self.value)

    def admits(self, allowed: tuple[Role, ...]) -> bool:
        return self is Role.ADMIN or self in allowed

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]

    @property
    def home(self) -> str:
        """The page this role starts on after signing in."""
        return {Role.ADMIN: "/admin/audit"}.get(self, f"/{self.value}")


ROLE_LABELS = {Role.AGENT: "坐席", Role.SUPERVISOR: "班长", Role.TRAINER: "训练师", Role.ADMIN: "管理员"}


def parse_skills(text: str | list[str] | tuple[str, ...]) -> tuple[HandoffQueue, ...]:
    """Queue names, comma-separated or a list, as `HandoffQueue`s; an unknown name raises ValueError."""
    names = text.split(",") if isinstance(text, str) else list(text)
    known = {q.value: q for q in HandoffQueue}
    skills: list[HandoffQueue] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        if name not in known:
            raise ValueError(f"unknown skill {name!r}: one of {', '.join(known)}")
        if known[name] not in skills:
            skills.append(known[name])
    return tuple(skills)


@dataclass(frozen=True)
class ConsoleUser:
    """A signed-in user as the routes and the backend see them (never the password hash)."""

    id: int
    name: str
    role: Role
    skills: tuple[HandoffQueue, ...] = ()

    def as_json(self) -> dict:
        return {"name": self.name, "role": self.role.value, "skills": [s.value for s in self.skills]}
