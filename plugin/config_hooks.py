"""What `config.yaml` names. LiteLLM may execute this file from its path, once per reference, so it
holds nothing but what the real package gives (whose state lives once in `sys.modules`): the plugin's
hook and callback, or their fail-closed stand-ins on a LiteLLM release the plugin does not support."""

from plugin.release import load_plugin

mpilot_auth, cohere_v2_chat = load_plugin()
