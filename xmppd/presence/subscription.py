"""The RFC 6121 subscription state machine (Appendix A), as pure functions.

A roster item's subscription state is seen from its owner: ``to`` (the owner
receives the contact's presence), ``from`` (the contact receives the owner's
presence), both or none, plus "pending out" (``ask``: the owner asked and waits),
"pending in" (the contact asked and waits) and pre-approval (``approved``: the
owner approved a request the contact has not sent yet).

``outbound`` is what the owner's server does when the owner sends a
subscription stanza; ``inbound`` is what it does when one arrives for the
owner. Both return the new state and what to do with the stanza; they never
touch I/O, so every row of the RFC's tables is a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

SUBSCRIPTION_TYPES = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")


@dataclass(frozen=True)
class SubState:
    sub: str = "none"          # none / to / from / both
    ask: bool = False          # pending out
    pending_in: bool = False   # pending in
    approved: bool = False     # pre-approved

    @property
    def to(self) -> bool:
        return self.sub == "to" or self.sub == "both"

    @property
    def frm(self) -> bool:
        return self.sub == "from" or self.sub == "both"

    def with_flags(self, *, to: Optional[bool] = None, frm: Optional[bool] = None,
                   ask: Optional[bool] = None, pending_in: Optional[bool] = None,
                   approved: Optional[bool] = None) -> SubState:
        t = self.to if to is None else to
        f = self.frm if frm is None else frm
        sub = "both" if t and f else "to" if t else "from" if f else "none"
        return replace(self, sub=sub,
                       ask=self.ask if ask is None else ask,
                       pending_in=self.pending_in if pending_in is None else pending_in,
                       approved=self.approved if approved is None else approved)

    def label(self) -> str:
        """'None + Pending Out+In' style, as in the RFC's tables (for tests and logs)."""
        s = self.sub.capitalize()
        if self.ask and self.pending_in:
            s += " + Pending Out+In"
        elif self.ask:
            s += " + Pending Out"
        elif self.pending_in:
            s += " + Pending In"
        return s


NONE = SubState()


@dataclass(frozen=True)
class Outbound:
    state: SubState
    route: bool              # send the stanza on to the contact


@dataclass(frozen=True)
class Inbound:
    state: SubState
    deliver: bool            # deliver the stanza to the owner
    reply: Optional[str]     # the server answers on the owner's behalf (e.g. 'subscribed')


def outbound(state: SubState, kind: str) -> Outbound:
    """The owner sends ``kind`` to the contact (RFC 6121 A.2)."""
    if kind == "subscribe":
        if state.to:
            return Outbound(state, True)
        return Outbound(state.with_flags(ask=True), True)
    if kind == "subscribed":
        if state.pending_in:
            return Outbound(state.with_flags(frm=True, pending_in=False, approved=False), True)
        if not state.frm:
            # pre-approval (RFC 6121 3.4): remembered, not routed
            return Outbound(state.with_flags(approved=True), False)
        return Outbound(state, False)
    if kind == "unsubscribe":
        return Outbound(state.with_flags(to=False, ask=False), True)
    if kind == "unsubscribed":
        return Outbound(state.with_flags(frm=False, pending_in=False, approved=False), True)
    raise ValueError(f"not a subscription type: {kind}")


def inbound(state: SubState, kind: str) -> Inbound:
    """``kind`` arrives from the contact for the owner (RFC 6121 A.3)."""
    if kind == "subscribe":
        if state.frm:
            return Inbound(state, False, "subscribed")
        if state.approved:
            return Inbound(state.with_flags(frm=True, pending_in=False, approved=False),
                           False, "subscribed")
        if state.pending_in:
            return Inbound(state, False, None)   # already waiting for an answer
        return Inbound(state.with_flags(pending_in=True), True, None)
    if kind == "subscribed":
        if state.ask:
            return Inbound(state.with_flags(to=True, ask=False), True, None)
        return Inbound(state, False, None)
    if kind == "unsubscribe":
        if state.frm or state.pending_in:
            return Inbound(state.with_flags(frm=False, pending_in=False, approved=False),
                           True, None)
        return Inbound(state, False, None)
    if kind == "unsubscribed":
        if state.to or state.ask:
            return Inbound(state.with_flags(to=False, ask=False), True, None)
        return Inbound(state, False, None)
    raise ValueError(f"not a subscription type: {kind}")
