"""What `config.yaml` names. LiteLLM may execute this file from its path, once per reference, so it
holds nothing but imports of the real package (whose state lives once in `sys.modules`)."""

from plugin.auth.hook import user_api_key_auth as mpilot_auth  # noqa: F401
from plugin.entry import cohere_v2_chat  # noqa: F401
