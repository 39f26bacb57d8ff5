"""Client-to-server streams: stream machine, SASL, bind, TCP and TLS transport."""
