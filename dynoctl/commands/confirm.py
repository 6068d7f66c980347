"""Plan-then-apply for destructive commands: one rule, used by every one of them."""

from __future__ import annotations

from dynoctl.context import AppContext
from dynoctl.errors import Refused


def confirm_or_refuse(app_ctx: AppContext, question: str, yes: bool, flag: str = "--yes") -> None:
    """Go ahead with --yes; ask on a terminal; refuse (exit 3) without one. Never hang."""
    if yes:
        return
    out = app_ctx.out
    if not out.interactive or out.json_mode:
        raise Refused(f"not confirmed: {question}", hint=f"pass {flag} to go ahead without a prompt")
    if not out.confirm(question):
        raise Refused("cancelled; nothing was changed")
