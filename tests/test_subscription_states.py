"""The RFC 6121 subscription state machine, row by row (Appendix A)."""

from __future__ import annotations

import pytest

from xmppd.presence.subscription import SubState, inbound, outbound


def S(label: str) -> SubState:
    """'None + Pending Out+In' -> SubState."""
    base, _, pending = label.partition(" + ")
    sub = base.lower()
    return SubState(sub, ask="Out" in pending, pending_in="In" in pending)


STATES = ["None", "None + Pending Out", "None + Pending In", "None + Pending Out+In", "To",
          "To + Pending In", "From", "From + Pending Out", "Both"]

# A.2.1 - A.2.4: the user's server, outbound stanza from the user: new state (None = unchanged)
OUT = {
    "subscribe": ["None + Pending Out", None, "None + Pending Out+In", None, None, None,
                  "From + Pending Out", None, None],
    "subscribed": [None, None, "From", "From + Pending Out", None, "Both", None, None, None],
    "unsubscribe": [None, "None", None, "None + Pending In", "None", "None + Pending In",
                    None, "From", "From"],
    "unsubscribed": [None, None, "None", "None + Pending Out", None, "To", "None",
                     "None + Pending Out", "To"],
}

# A.3.1 - A.3.4: the contact's server, inbound stanza: (new state or None, delivered)
IN = {
    "subscribe": [("None + Pending In", True), ("None + Pending Out+In", True), (None, False),
                  (None, False), ("To + Pending In", True), (None, False), (None, False),
                  (None, False), (None, False)],
    "subscribed": [(None, False), ("To", True), (None, False), ("To + Pending In", True),
                   (None, False), (None, False), (None, False), ("Both", True), (None, False)],
    "unsubscribe": [(None, False), (None, False), ("None", True), ("None + Pending Out", True),
                    (None, False), ("To", True), ("None", True), ("None + Pending Out", True),
                    ("To", True)],
    "unsubscribed": [(None, False), ("None", True), (None, False), ("None + Pending In", True),
                     ("None", True), ("None + Pending In", True), (None, False), ("From", True),
                     ("From", True)],
}


@pytest.mark.parametrize("kind", list(OUT))
@pytest.mark.parametrize("i", range(len(STATES)), ids=STATES)
def test_outbound_table(kind: str, i: int) -> None:
    before = S(STATES[i])
    expected = OUT[kind][i]
    res = outbound(before, kind)
    after = res.state
    if kind == "subscribed" and expected is None and not before.frm:
        # no subscription change, but a pre-approval (RFC 6121 3.4)
        assert after == SubState(before.sub, before.ask, before.pending_in, approved=True)
        assert not res.route
        return
    assert after.label() == (expected or STATES[i])
    if kind == "subscribed":
        assert res.route == (expected is not None)
    else:
        assert res.route


@pytest.mark.parametrize("kind", list(IN))
@pytest.mark.parametrize("i", range(len(STATES)), ids=STATES)
def test_inbound_table(kind: str, i: int) -> None:
    before = S(STATES[i])
    expected, deliver = IN[kind][i]
    res = inbound(before, kind)
    assert res.state.label() == (expected or STATES[i])
    assert res.deliver == deliver
    # a subscribe from someone already allowed is answered by the server
    assert (res.reply == "subscribed") == (kind == "subscribe" and before.frm)


@pytest.mark.parametrize("label", ["None", "None + Pending Out", "To"])
def test_preapproval_then_request_is_approved_by_the_server(label: str) -> None:
    st = outbound(S(label), "subscribed").state
    assert st.approved
    res = inbound(st, "subscribe")
    assert not res.deliver and res.reply == "subscribed"
    assert res.state.frm and not res.state.approved and not res.state.pending_in


def test_unsubscribed_cancels_a_preapproval() -> None:
    st = outbound(S("None"), "subscribed").state
    st = outbound(st, "unsubscribed").state
    assert not st.approved
    res = inbound(st, "subscribe")
    assert res.deliver and res.state.pending_in


def test_full_handshake_reaches_both() -> None:
    romeo = juliet = SubState()
    romeo = outbound(romeo, "subscribe").state              # romeo asks
    juliet = inbound(juliet, "subscribe").state             # juliet: pending in
    juliet = outbound(juliet, "subscribed").state           # juliet approves: from
    romeo = inbound(romeo, "subscribed").state              # romeo: to
    juliet = outbound(juliet, "subscribe").state            # and asks back
    romeo = inbound(romeo, "subscribe").state
    romeo = outbound(romeo, "subscribed").state
    juliet = inbound(juliet, "subscribed").state
    assert romeo == juliet == SubState("both")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        outbound(SubState(), "probe")
    with pytest.raises(ValueError):
        inbound(SubState(), "available")
