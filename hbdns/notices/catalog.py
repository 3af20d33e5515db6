"""The template files: the package's defaults, each overridable by a file of the same name in
``HBDNS_TEMPLATES_DIR``.

A *template set* is a directory with a ``sample.json`` (example events, see
:func:`hbdns.notices.context.samples`) and one directory per language holding ``subject.txt``,
``body.txt``, ``sms.txt`` (required) and ``body.html`` (optional: the e-mail is then
multipart/alternative). ``layout/`` holds what the sets share (the HTML frame, the footers). The
set of an event is named after it: ``<type>``, ``<type>_first`` for a first one (an account's first
report), ``<type>_merged`` for a recovery that replaces its undelivered offline message; a type
without a set of its own takes ``other``. So a new event type is one new directory, in the package
or in the override directory, and nothing else.

Jinja2 runs sandboxed (templates reach no Python internals), with ``StrictUndefined`` (a misspelt
name is an error, not an empty string) and autoescaping in ``.html`` files. Errors name the file
and line (:class:`TemplateProblem`); :mod:`hbdns.notices.check` finds them at start-up.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

PACKAGE_DIR = Path(__file__).resolve().parent / "templates"
SUBJECT, BODY, HTML, SMS = "subject.txt", "body.txt", "body.html", "sms.txt"
PARTS = (SUBJECT, BODY, HTML, SMS)
REQUIRED = (SUBJECT, BODY, SMS)
LAYOUT, OTHER, SAMPLE = "layout", "other", "sample.json"

log = logging.getLogger("hbdns.notices")


class TemplateProblem(ValueError):
    """A template that cannot be used; ``str()`` starts with ``file:line``."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def _env(*dirs: Path) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=ChoiceLoader([FileSystemLoader(str(d), encoding="utf-8") for d in dirs]),
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name and name.endswith(".html")),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def set_name(event_type: str, *, first: bool = False, merged: bool = False) -> str:
    """The set an event's texts are made from, before falling back (:meth:`Catalog.pick`)."""
    return event_type + ("_merged" if merged else "_first" if first else "")


def where(exc: BaseException, roots: tuple[Path, ...] = ()) -> str:
    """``file:line`` of a template error: the syntax error's own, else the innermost template frame."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename or exc.name}:{exc.lineno}"
    prefixes = tuple(str(r) for r in roots) or (str(PACKAGE_DIR),)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(prefixes)]
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return "template"


class Catalog:
    """The templates of one configuration: the override directory (if any) over the package's."""

    def __init__(self, override_dir: str = "") -> None:
        self.override = Path(override_dir).resolve() if override_dir else None
        if self.override is not None and not self.override.is_dir():
            raise TemplateProblem(override_dir, "HBDNS_TEMPLATES_DIR is not a directory")
        self.roots = (self.override, PACKAGE_DIR) if self.override else (PACKAGE_DIR,)
        self.env = _env(*self.roots)
        self.defaults = _env(PACKAGE_DIR)  # what a template that fails at run time falls back to
        found = {p.parent.name for root in self.roots for p in root.glob(f"*/{SAMPLE}")}
        self._sets = sorted(found - {LAYOUT})
        self._files: dict[str, Path | None] = {}  # the files do not change while a process runs

    def file(self, name: str) -> Path | None:
        """The file that serves template ``name`` (the override's when it has one)."""
        if name not in self._files:
            self._files[name] = next((r / name for r in self.roots if (r / name).is_file()), None)
        return self._files[name]

    def sets(self) -> list[str]:
        """Every template set (a directory with a sample), the package's and the override's."""
        return list(self._sets)

    def languages(self, set_: str) -> list[str]:
        return sorted({p.name for root in self.roots for p in (root / set_).glob("*") if p.is_dir()})

    def pick(self, event_type: str, *, first: bool = False, merged: bool = False) -> str:
        """The set for an event: its own (``_merged``/``_first`` first), else its type's, else ``other``."""
        have = self._sets
        for name in (set_name(event_type, first=first, merged=merged), event_type):
            if name in have:
                return name
        return OTHER

    def render(self, name: str, context: dict[str, Any], *, strict: bool = False) -> str:
        """Render template ``name``. An override that fails (only possible for event data its samples
        lacked: the start-up check renders every one) is logged and the package's default used,
        unless ``strict`` (the check itself)."""
        try:
            return self.env.get_template(name).render(context)
        except Exception as exc:
            if strict or self.override is None or not (PACKAGE_DIR / name).is_file():
                raise
            log.error(
                "template failed, using the package's default",
                extra={"template": name, "where": where(exc, self.roots), "error": f"{type(exc).__name__}: {exc}"},
            )
            return self.defaults.get_template(name).render(context)
