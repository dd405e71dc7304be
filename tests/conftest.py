import json
from importlib import resources

import pytest


@pytest.fixture(scope="session")
def canonical() -> dict:
    """../shared/reference/canonical.json, shipped with the package as ghostfast/data/canonical.json."""
    return json.loads(resources.files("ghostfast").joinpath("data/canonical.json").read_text())["models"]
