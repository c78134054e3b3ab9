"""Test-wide settings. Under CI (the CI environment variable is set) hypothesis is derandomised: every
CI run draws the same examples, so a green run cannot turn red by chance; locally each run explores anew."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
