"""Put on a proxy's PYTHONPATH by tests: LiteLLM's release, as the plugin reads it, becomes
MPILOT_TEST_LITELLM_RELEASE. The releases it stands for cannot all be installed (1.107.0 is gone from
the registry); the plugin's answer to them is what is tested, on the real proxy of the installed release."""

import os
from importlib import metadata

_pretended = os.environ.get("MPILOT_TEST_LITELLM_RELEASE")
if _pretended:
    _installed = metadata.version

    def version(name: str) -> str:
        return _pretended if name == "litellm" else _installed(name)

    metadata.version = version
