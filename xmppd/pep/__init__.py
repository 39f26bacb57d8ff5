"""Personal eventing (XEP-0163 PEP): a publish-subscribe service at every account,
what OMEMO (XEP-0384), user avatars (XEP-0084), bookmarks (XEP-0402), user tune and
mood use. See :mod:`xmppd.pep.module` and docs/pep.md."""
