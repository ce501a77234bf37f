"""Setup layer: the text `advise` and `init` print (advice ranking, setup summary)."""

from __future__ import annotations

from dataclasses import dataclass

from eventwire.setup.advisor import Advice, Ranked, rate
from eventwire.setup.requirements import Requirements


def _describe(req: Requirements) -> str:
    parts = [
        req.use_case.value,
        f"{rate(req.peak_rate)} msg/s"
        + ("" if req.average_rate is None else f" (average {rate(req.average_rate)})"),
        f"{req.message_size:,} B messages",
        req.delivery.value,
        f"ordering {req.ordering.value}",
        "persistent" if req.persistence else "transient",
    ]
    if req.latency_ms is not None:
        parts.append(f"p99 <= {req.latency_ms:g} ms")
    if req.needs_replay():
        parts.append(f"replay ({req.retention_days:g} days)")
    if req.routing:
        parts.append("routing: " + ", ".join(sorted(r.value for r in req.routing)))
    if req.operated:
        parts.append("runs: " + ", ".join(sorted(b.value for b in req.operated)))
    parts.append(f"team of {req.team_size}")
    return ", ".join(parts)


def _entry(position: int, r: Ranked) -> list[str]:
    margin = "" if r.margin is None else f"  (+{r.margin} over the next)"
    lines = [f"{position:2d}. {r.display:<16} score {r.score:+d}{margin}"]
    lines += [f"      {h.points:+d}  {h.reason}" for h in r.hits]
    if not r.hits:
        lines.append("      no rule moved it")
    return lines


def render_advice(req: Requirements, advice: Advice) -> str:
    """Human-readable ranking: winner, each candidate's rules, exclusions with reasons."""
    lines = [f"Requirements: {_describe(req)}", ""]
    if advice.winner is not None:
        w = advice.winner
        ahead = "" if w.margin is None else f", {w.margin} point(s) ahead of the next"
        lines.append(f"Recommended: {w.display} (score {w.score:+d}{ahead})")
    else:
        lines.append(f"No recommendation: {advice.why_none}")
    if advice.caveats:
        lines += ["", "Caveats:"]
        lines += [f"  ! {caveat}" for caveat in advice.caveats]
    if advice.ranking:
        lines += ["", "Ranking:"]
        for position, r in enumerate(advice.ranking, start=1):
            lines += _entry(position, r)
    if advice.excluded:
        lines += ["", "Excluded by hard filters:"]
        for r in advice.excluded:
            lines.append(f"  - {r.display}: " + "; ".join(r.excluded_by))
    return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedFile:
    """A generated file as the summary lists it."""

    path: str  # relative to the folder the user ran init in (or --dir's parent)
    lines: int  # -1: a binary file
    status: str  # "created", "updated", "unchanged", "kept (user-changed)", "kept (user-owned)"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetupSummary:
    """Everything the closing summary of ``eventwire init`` shows."""

    broker: str
    pattern: str
    client: str
    files: tuple[CreatedFile, ...]
    features: tuple[str, ...]
    next_steps: tuple[str, ...]
    notes: tuple[str, ...] = ()
    updated: bool = False


def render_summary(summary: SetupSummary) -> str:
    """The closing summary in the shape issue 4 shows."""
    title = "Message Broker Setup Updated" if summary.updated else "Message Broker Setup Complete"
    lines = [
        f"✅ {title}",
        "",
        f"Broker: {summary.broker}",
        f"Pattern: {summary.pattern}",
        f"Client: {summary.client}",
        "",
        "Files Created:" if not summary.updated else "Files:",
    ]
    for f in summary.files:
        status = "" if f.status == "created" else f" [{f.status}]"
        unit = "line" if f.lines == 1 else "lines"
        size = "binary" if f.lines < 0 else f"{f.lines} {unit}"
        lines.append(f"- {f.path} ({size}){status}")
    lines += ["", "Features:"]
    lines += [f"✓ {feature}" for feature in summary.features]
    if summary.notes:
        lines += ["", "Notes:"]
        lines += [f"! {note}" for note in summary.notes]
    lines += ["", "Next Steps:"]
    lines += [f"{i}. {step}" for i, step in enumerate(summary.next_steps, start=1)]
    return "\n".join(lines)
