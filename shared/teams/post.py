"""The one way the runbooks post a card: render a template, address it, pace it, post it.

:func:`post_card` never raises: a card reports work already done, and failing to post it must not
undo or hide that work. It returns a :class:`Posted` that says what happened, for the job output.

Pacing: the Teams connector's "Post card ... as Flow bot" allows 25 calls per connection per
300 seconds (Microsoft Teams connector reference, "Throttling limits"; docs/platform.md). Every card
starts one flow run that posts one card through the same connection, so a runbook that posts many
cards (the pre-stop warning) shares one :class:`ConnectorPacer` across them; :func:`time_needed`
says how long a number of posts takes at that pace.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Mapping, Optional

from shared.teams.cards import CardError, render_card
from shared.teams.client import TeamsWorkflowClient
from shared.teams.routing import CHANNEL, Address, address_url, expects_answer

log = logging.getLogger(__name__)

CONNECTOR_CALLS = 25  # per connection ...
CONNECTOR_WINDOW_SECONDS = 300.0  # ... per 5 minutes
# And the trigger itself throttles above 4 requests a second (msteams-docs add-incoming-webhook.md): stay under it.
MIN_INTERVAL_SECONDS = 1 / 3


class ConnectorPacer:
    """At most ``calls`` posts in any ``window`` seconds (a sliding window), and at least ``min_interval``
    seconds apart; ``clock``/``sleep`` injectable."""

    def __init__(
        self,
        calls: int = CONNECTOR_CALLS,
        window: float = CONNECTOR_WINDOW_SECONDS,
        *,
        min_interval: float = MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if calls < 1 or window <= 0 or min_interval < 0:
            raise ValueError("calls must be at least 1, window positive and min_interval not negative")
        self.calls, self.window, self.min_interval = calls, window, min_interval
        self._clock, self._sleep = clock, sleep
        self._sent: Deque[float] = deque()
        self.waited = 0.0  # seconds spent waiting, for the job output

    def acquire(self) -> float:
        """Wait until one more post fits; returns the seconds waited."""
        now = self._clock()
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        waited = 0.0
        if len(self._sent) >= self.calls:
            waited = self._sent[0] + self.window - now
            if waited > 0:
                log.info("Teams connector limit (%d posts per %g s): waiting %.0f s before the next card", self.calls, self.window, waited)
                self._sleep(waited)
                self.waited += waited
            self._sent.popleft()
            now = self._clock()
        gap = self._sent[-1] + self.min_interval - now if self._sent else 0.0
        if gap > 1e-6:
            self._sleep(gap)
            waited += gap
            now = self._clock()
        self._sent.append(now)
        return waited


def time_needed(posts: int, calls: int = CONNECTOR_CALLS, window: float = CONNECTOR_WINDOW_SECONDS) -> float:
    """Seconds from the first to the last of ``posts`` posts at the connector's pace (0 for up to ``calls``)."""
    if posts <= calls:
        return 0.0
    return (math.ceil(posts / calls) - 1) * window


@dataclass
class Posted:
    """What happened to one card: ``ok`` when the workflow accepted it (or it was printed in a dry run)."""

    card_name: str
    address: Address
    ok: bool
    wait: bool = False
    error: Optional[str] = None
    card: Optional[Dict[str, Any]] = field(default=None, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        return {"card": self.card_name, "to": self.address.label, "wait": self.wait, "ok": self.ok, "error": self.error}


def post_card(
    name: str,
    context: Mapping[str, Any],
    workflow_url: Optional[str],
    to: Address = CHANNEL,
    *,
    session: Any = None,
    pacer: Optional[ConnectorPacer] = None,
    sleep: Callable[[float], None] = time.sleep,
    dry_run: bool = False,
) -> Posted:
    """Render card ``name`` with ``context`` and post it to ``to`` through ``workflow_url``.

    ``wait=true`` is added only when the card has an ``Action.Submit``. In a dry run the card is
    rendered but not posted. Never raises; a failure is logged and returned.
    """
    try:
        card = render_card(name, **context)
    except CardError as exc:
        log.error("Could not render the %s card for %s: %s", name, to.label, exc)
        return Posted(name, to, False, error=f"could not render the card: {exc}")
    wait = expects_answer(card)
    if dry_run:
        return Posted(name, to, True, wait, card=card)
    if not workflow_url:
        log.warning("teams.workflow_url is not set: the %s card for %s is not posted", name, to.label)
        return Posted(name, to, False, wait, "teams.workflow_url is not set", card)
    if pacer is not None:
        pacer.acquire()
    result = TeamsWorkflowClient(address_url(workflow_url, to, wait), session=session, sleep=sleep).post_card(card)
    if result.ok:
        log.info("Posted the %s card to %s%s", name, to.label, " (waits for an answer)" if wait else "")
    else:
        log.error("Could not post the %s card to %s: %s", name, to.label, result.error)
    return Posted(name, to, result.ok, wait, None if result.ok else result.error, card)
