"""The MPilot LiteLLM plugin: Cohere's API, MPilot's auth and per-key governance on a LiteLLM proxy."""

__version__ = "0.3.0"  # also the package's (pyproject.toml reads it); CHANGELOG.md says what each release changed
