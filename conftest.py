"""Root pytest configuration: hypothesis profiles and the claims plugin.

Profiles (choose with the environment variable ``HYPOTHESIS_PROFILE``):

* ``default``  - fast local runs (few examples, no deadline: torch's first call is slow).
* ``ci``       - chosen automatically when ``CI`` is set: derandomized, so a run is reproducible,
                 no deadline, failing examples printed as reproducible blobs.
* ``thorough`` - many more examples for a deep run before a release.
"""

import os

import torch
from hypothesis import HealthCheck, settings

pytest_plugins = ("verification.plugin", "pytest_faq_conformance")

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

settings.register_profile("default", max_examples=20, **_COMMON)
settings.register_profile("ci", max_examples=20, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=400, print_blob=True, **_COMMON)

_profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
settings.load_profile(_profile)

# Two cores are shared by pytest-xdist workers; one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)
