"""What a virtual key may do and how its limits are counted: keys and their settings, the ledger (spend,
reservations, rates) and its stores, their failure as a state, the journal of what the store could not take.
Pure of LiteLLM; imported by `host/` (below `auth/`), `auth/` and `routes/`."""
