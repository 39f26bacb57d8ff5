"""Affiliations (long-lived, per bare JID) and roles (per visit), XEP-0045 section 5.

The rules here are the tables of XEP-0045 5.1.2, 5.2.1 and 9-10 as small functions.
"""

from __future__ import annotations

AFFILIATIONS = ("outcast", "none", "member", "admin", "owner")
ROLES = ("none", "visitor", "participant", "moderator")
AFF_RANK = {a: i for i, a in enumerate(AFFILIATIONS)}
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}


def default_role(affiliation: str, moderated: bool, members_by_default: bool) -> str:
    """The role an occupant gets on entering (5.1.1)."""
    if affiliation in ("owner", "admin"):
        return "moderator"
    if affiliation == "member":
        return "participant"
    if affiliation == "outcast":
        return "none"
    return "visitor" if moderated and not members_by_default else "participant"


def can_set_affiliation(actor: str, target_now: str, target_new: str) -> bool:
    """May an occupant with affiliation ``actor`` move ``target_now`` to ``target_new``?

    Owners may change anything; admins may grant or take away membership and
    ban, but never touch admins or owners (XEP-0045 9.x and 10.x).
    """
    if actor == "owner":
        return True
    if actor == "admin":
        below = ("outcast", "none", "member")
        return target_now in below and target_new in below
    return False


def can_set_role(actor_aff: str, actor_role: str, target_aff: str, target_role: str,
                 new_role: str) -> bool:
    """May the actor give ``new_role`` to the target (kick, voice, moderator)?"""
    if actor_role != "moderator":
        return False
    if new_role == "moderator" or target_role == "moderator":
        # granting or revoking moderation needs admin or owner (9.6, 9.7)
        if AFF_RANK[actor_aff] < AFF_RANK["admin"]:
            return False
    # nobody changes the role of someone at or above admin unless ranked above them
    if target_aff in ("admin", "owner") and AFF_RANK[target_aff] >= AFF_RANK[actor_aff]:
        return False
    return True
