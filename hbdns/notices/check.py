"""The start-up check of the templates: a broken override stops the service before the first
outage, with the file and line.

Every template file is parsed and may use only the names of :mod:`hbdns.notices.context` (found
statically, so a name in a branch no sample takes is caught too); every set must have its required
files in every language; every set is rendered for each of its samples, for an account with and
one without MX. An SMS text whose sample needs more segments than allowed is a warning (such texts
are cut at run time), as are override files the package has no counterpart for (a misspelt name
would otherwise be ignored silently).
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes

from hbdns.notices import catalog as cat
from hbdns.notices import sms
from hbdns.notices.catalog import TemplateProblem, where
from hbdns.notices.context import BODY_NAMES, NAMES, build, sample_account, samples
from hbdns.notices.locale import LANGUAGES
from hbdns.notices.render import Renderer


def _names(renderer: Renderer, path: Path, name: str) -> set[str]:
    """Parse one file; raise for a syntax error or a name no context has. Returns what it includes."""
    env = renderer.catalog.env
    try:
        tree = env.parse(path.read_text(encoding="utf-8"), name, str(path))
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{path}:{exc.lineno}", exc.message or "syntax error") from None
    except UnicodeDecodeError as exc:
        raise TemplateProblem(str(path), f"not UTF-8: {exc}") from None
    known = (NAMES if path.name == cat.SUBJECT else BODY_NAMES) | set(env.globals)
    unknown = sorted(meta.find_undeclared_variables(tree) - known)
    if unknown:
        line = min(n.lineno for n in tree.find_all(nodes.Name) if n.name == unknown[0])
        raise TemplateProblem(f"{path}:{line}", f"unknown name {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return {str(t) for t in meta.find_referenced_templates(tree) if t}


def check(renderer: Renderer, max_segments: int) -> list[str]:
    """Raise :class:`TemplateProblem` for the first broken template; return the warnings."""
    catalog, warnings = renderer.catalog, []
    referenced: set[str] = set()
    for root in catalog.roots:
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".txt", ".html") and p.is_file()):
            referenced |= _names(renderer, path, path.relative_to(root).as_posix())
    for set_ in catalog.sets():
        sample_file = catalog.file(f"{set_}/{cat.SAMPLE}")
        assert sample_file is not None
        try:
            events = samples(sample_file.read_text(encoding="utf-8"), sample_account().fqdn)
        except (ValueError, TypeError, AttributeError) as exc:
            raise TemplateProblem(str(sample_file), f"unreadable sample: {exc}") from None
        for lang in LANGUAGES:
            for part in cat.REQUIRED:
                if catalog.file(f"{set_}/{lang}/{part}") is None:
                    raise TemplateProblem(f"{set_}/{lang}/{part}", "missing (every set needs it in every language)")
            for event in events:
                merged = set_.endswith("_merged")
                if catalog.pick(event.type, first=event.first, merged=merged) != set_:
                    warnings.append(f"{sample_file}: its event would use the set {catalog.pick(event.type)!r}")
                for account in (sample_account(mx=True), sample_account(mx=False)):
                    ctx = build(event, account, renderer.operator, lang)
                    try:
                        texts = renderer.render_set(set_, lang, ctx, strict=True)
                    except Exception as exc:
                        raise TemplateProblem(where(exc, catalog.roots), f"{type(exc).__name__}: {exc}") from None
                    if not texts.subject:
                        raise TemplateProblem(f"{set_}/{lang}/{cat.SUBJECT}", "renders empty")
                    size = sms.measure(texts.short)
                    if size.segments > max_segments:
                        warnings.append(
                            f"{catalog.file(f'{set_}/{lang}/{cat.SMS}')}: the sample needs {size.segments} SMS "
                            f"segments ({size.describe()}); texts are cut to {max_segments} (HBDNS_SMS_MAX_SEGMENTS)"
                        )
    return sorted(set(warnings + _unused(catalog, referenced)))


def _unused(catalog: cat.Catalog, referenced: set[str]) -> list[str]:
    """Override files that replace nothing and add nothing (a misspelt name would be ignored silently)."""
    if catalog.override is None:
        return []
    sets, out = set(catalog.sets()), []
    for path in sorted(p for p in catalog.override.rglob("*") if p.is_file()):
        rel = path.relative_to(catalog.override).as_posix()
        parts = rel.split("/")
        if (cat.PACKAGE_DIR / rel).is_file() or rel in referenced:
            continue
        in_set = parts[0] in sets and (
            parts[1:] == [cat.SAMPLE] or (len(parts) == 3 and parts[1] in LANGUAGES and parts[2] in cat.PARTS)
        )
        if in_set:  # a new set's file, or a body.html added to a set the package has without one
            continue
        out.append(f"{path}: not used (the package has no template of that name and none includes it)")
    return out
