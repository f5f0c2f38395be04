"""Settings for the whole suite.

Hypothesis: no deadline per example. A deadline is a timing assertion, and on a loaded machine (CI, or several test
runs at once) an example that takes 60 us alone can take 300 ms; what the property tests check is behaviour.
"""
from hypothesis import settings

settings.register_profile("pktlab", deadline=None)
settings.load_profile("pktlab")
