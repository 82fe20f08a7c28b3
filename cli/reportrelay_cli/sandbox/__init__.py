"""Local HTTP simulators of the report providers, for tests, the demo and the local runner.

Each simulator follows its vendor document closely enough that the real adapter can run against it, and
adds fault knobs (throttling, 503s, broken downloads, expiring tokens) that the real services produce
only on a bad day. They are test tooling: plain HTTP on 127.0.0.1, no persistence, no real security.
"""
