"""Say what is wrong with a payload without repeating its content (reports hold free text and contacts)."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(error: ValidationError, limit: int = 10) -> str:
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}" for item in error.errors()[:limit]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
