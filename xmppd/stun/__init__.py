"""STUN and TURN for calls: the ``ejabberd_stun`` listener (:mod:`.listener`)."""
