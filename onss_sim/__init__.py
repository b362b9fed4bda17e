"""A local simulator of the ONSS presence-registration web service (docs/onss-api.md).

Used by tests, benchmarks and the demo; the product (gateway/, drivers/) never imports it.
"""
