"""Thin transports: each is a caller leg (voice_gateway.calls.CallerLeg) translating one wire format."""
