"""What every purchase request of the bench carries: its path and headers, the one place to
change them (wrk's load.lua gets the headers on its command line, the Python clients from here).

The ceiling app's POST is not a purchase and keeps only its Content-Type: whatever else a
purchase needs (a token, say) counts against the ratio.
"""

from __future__ import annotations

PATH = "/purchase/api/v1/tickets"


def headers() -> dict[str, str]:
    """The headers of a purchase request: JSON, and the bench buyer's token."""
    from services import authorization

    return {"Content-Type": "application/json", "Authorization": authorization()}


def header_args() -> list[str]:
    """The headers as wrk's load.lua takes them: one "Name: value" argument each."""
    return [f"{name}: {value}" for name, value in headers().items()]
