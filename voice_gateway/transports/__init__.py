"""Thin transports: each translates one wire format to and from a CallSession."""
