"""``agentd doctor``: check the whole project and say how to fix each finding."""

from __future__ import annotations

import click

from agentd.cli.app import App
from agentd.cli.output import emit_json, info
from agentd.config import Config
from agentd.core.clock import SystemClock
from agentd.errors import ConfigInvalid, ExitCode, display_path
from agentd.report import doctor as doctor_mod
from agentd.report.doctor import Finding

pass_app = click.make_pass_decorator(App)
HEADINGS = {"error": "Errors", "warning": "Warnings", "info": "Info"}


def _config(app: App) -> Config | Finding:
    """The project's config, or the finding that it does not load (doctor reports; it does not fail)."""
    try:
        return app.config
    except ConfigInvalid as exc:
        fix = f"edit {display_path(exc.path)} (every key: docs/reference/config.md)"
        return Finding("error", "config-invalid", str(exc), fix, subject=str(exc.path))


def _render(findings: list[Finding]) -> None:
    for severity in doctor_mod.SEVERITIES:
        group = [finding for finding in findings if finding.severity == severity]
        if not group:
            continue
        info(f"{HEADINGS[severity]} ({len(group)}):")
        for finding in group:
            info(f"  [{finding.code}] {finding.message}")
            if finding.fix:
                safe = "  (safe: `agentd doctor --fix` does this)" if finding.safe_fix else ""
                info(f"      fix: {finding.fix}{safe}")
    problems = [finding for finding in findings if finding.severity != "info"]
    if not problems:
        info("no problems found")
        return
    safe_count = sum(finding.safe_fix for finding in problems)
    hint = f"; `agentd doctor --fix` applies {safe_count} safe fix(es)" if safe_count else ""
    errors = sum(finding.severity == "error" for finding in problems)
    info(f"{errors} error(s), {len(problems) - errors} warning(s){hint}")


@click.command()
@click.option("--fix", "apply_fixes", is_flag=True, help="Apply the safe fixes, say what was done, then check again.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as a JSON list.")
@pass_app
def doctor(app: App, apply_fixes: bool, as_json: bool) -> int:
    """Check the whole project and print each finding with the command that fixes it.

    Checks: the queue parses and validates (conflict markers, duplicate ids, unknown dependencies, cycles); tasks
    stuck in a working status without a live lease; stale, orphaned, unparsable or stray files in .leases/; WIP over
    the limit; PID files of daemons that are not running; roles without a command; statuses nothing picks up; the
    queue or leases on a network filesystem; the size of .agentd/logs and of the queue file (a big one: archive it).
    Exit 0 when nothing needs attention, 1 otherwise (a queue that does not parse is a finding here, not exit 4).

    --fix applies only the safe fixes: what `agentd leases prune` does (stuck tasks back to their claimable status,
    stale and orphaned lease files removed) and removing PID files whose lock is free. With --json, what --fix did
    goes to stderr and the list holds what remains.

    \b
    Examples:
      agentd doctor
      agentd doctor --fix
      agentd doctor --json | jq '.[] | select(.severity == "error") | .code'
      agentd --queue ../other/SPRINT_QUEUE.json doctor
    """
    loaded = _config(app)
    if isinstance(loaded, Finding):
        findings = [loaded]
    else:
        findings = doctor_mod.diagnose(loaded, SystemClock().now())
        if apply_fixes:
            done = doctor_mod.fix(loaded, findings, SystemClock().now())
            click.echo("--fix: " + ("what was done:" if done else "nothing to fix safely"), err=as_json)
            for line in done:
                click.echo(f"  {line}", err=as_json)
            findings = doctor_mod.diagnose(loaded, SystemClock().now())
            if not as_json:
                info("after the fixes:")
    if as_json:
        emit_json([finding.to_dict() for finding in findings])
    else:
        _render(findings)
    return ExitCode.FAILURE if doctor_mod.needs_attention(findings) else ExitCode.OK
