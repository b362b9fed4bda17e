"""badge-gateway: badge taps to ONSS attendance registrations, durable first."""

__version__ = "0.1.0"
