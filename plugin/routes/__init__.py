"""The plugin's HTTP routes, one module per Cohere endpoint group: auth -> validate -> translate -> LiteLLM ->
translate back. Translation lives in `plugin.cohere`; everything that touches LiteLLM in `plugin.host`."""
