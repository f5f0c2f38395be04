"""The labs shipped in this package: their directories, lab.yaml, instructions and checker modules."""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).parent
DIR_RE = re.compile(r"^(\d{2})-([a-z0-9-]+)$")


class LabError(RuntimeError):
    """A lab that does not exist, cannot start, or an answer it does not take."""


@dataclass
class Lab:
    number: int
    slug: str
    path: Path
    title: str
    topics: list[str]
    topology: Path
    answers: dict[str, str]              # name -> what to give
    needs: list[str] = field(default_factory=list)

    @property
    def instructions(self) -> str:
        return (self.path / "README.md").read_text()

    def checker(self):
        """The lab's check.py as a module (setup(lab) is optional, check(lab) is not)."""
        spec = importlib.util.spec_from_file_location(f"testbed.labs.lab{self.number:02d}", self.path / "check.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "check", None)):
            raise LabError(f"{self.path / 'check.py'}: no check(lab) function")
        return module


def _load(path: Path) -> Lab:
    number, slug = DIR_RE.match(path.name).groups()
    meta = yaml.safe_load((path / "lab.yaml").read_text()) or {}
    missing = [k for k in ("title", "topics", "topology", "answers") if k not in meta]
    if missing:
        raise LabError(f"{path / 'lab.yaml'}: missing {', '.join(missing)}")
    return Lab(int(number), slug, path, meta["title"], list(meta["topics"]), path / meta["topology"],
               {str(k): str(v) for k, v in meta["answers"].items()}, list(meta.get("needs") or []))


def all_labs() -> list[Lab]:
    return [_load(p) for p in sorted(HERE.iterdir()) if p.is_dir() and DIR_RE.match(p.name)]


def get(number) -> Lab:
    labs = {lab.number: lab for lab in all_labs()}
    try:
        n = int(number)
    except (TypeError, ValueError):
        raise LabError(f"lab {number!r}: give its number ({', '.join(map(str, labs))})") from None
    if n not in labs:
        raise LabError(f"no lab {n} (labs: {', '.join(map(str, labs))}; pktlab lab list)")
    return labs[n]


def missing_roles(lab: Lab, status_of) -> list[str]:
    """The roles of lab.needs that this build does not run: a role is implemented when the agent of a node with
    that role reports a status key named after it (as the chain node will report "chain": {"height": ...}).
    ``status_of(role)`` returns such a node's agent status, or None when no node has the role."""
    return [role for role in lab.needs if role not in (status_of(role) or {})]
