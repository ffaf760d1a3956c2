"""The one place that reaches into the LiteLLM proxy's internals.

Everything here names a LiteLLM proxy object or function; the rest of the plugin speaks through these few
functions, so a LiteLLM upgrade is a change to this package. Each difference between supported releases
is a small adapter that names the release that changed it. By concern:

    app       where the plugin's routes sit in the proxy's app, and what LiteLLM takes them for
    calls     one call through LiteLLM's request processing: auth, hooks, router, failures, stream ends, deadlines
    keys      who is calling: the config, the models a request names, the key store, model access, the ledger
    cost      what a call may cost, for its reservation
    releases  adapters for LiteLLM's Cohere stream reader and its filled-in finish reasons
    models    the model list and tokenizers of the Cohere models and tokenize routes
"""

from .app import (
    LitellmView,
    costs_nothing,
    litellm_release,
    methods_served_at,
    mount,
    mount_after_plugin_routes,
    mount_as,
    mount_without_model_calls,
    reaches_no_model,
    register_callback,
    served_paths,
    warm_up,
)
from .calls import (
    bound_each_try,
    call_id,
    caller_or_refusal,
    complete,
    embed,
    error_from_exception,
    limit_request_bodies,
    rerank,
    stream_error_timed_out,
)
from .cost import (
    bound_cost_nanos,
    estimate_cost_nanos,
)
from .keys import (
    Caller,
    admin_caller,
    auth_refusal,
    is_admin,
    is_master_key,
    is_refusal,
    key_caller,
    ledger_file,
    litellm_key_spend,
    litellm_tracks_spend,
    make_ledger,
    may_call_model,
    mpilot_settings,
    redis_expected,
    requested_models,
    reservation_in,
    reservation_of,
    route_of,
    route_spends,
    settlement_in,
    settlement_of,
    store_key,
    virtual_key_in,
    virtual_key_of,
    with_reservation,
)
from .models import (
    ModelTokenizer,
    model_groups,
    model_tokenizer,
)
from .releases import (
    CohereSSEReader,
    notice_cut_off_streams,
    read_cohere_sse_streams,
    served_by_cohere,
)

__all__ = [
    "LitellmView",
    "costs_nothing",
    "litellm_release",
    "methods_served_at",
    "mount",
    "mount_after_plugin_routes",
    "mount_as",
    "mount_without_model_calls",
    "reaches_no_model",
    "register_callback",
    "served_paths",
    "warm_up",
    "bound_each_try",
    "call_id",
    "caller_or_refusal",
    "limit_request_bodies",
    "complete",
    "embed",
    "error_from_exception",
    "rerank",
    "stream_error_timed_out",
    "bound_cost_nanos",
    "estimate_cost_nanos",
    "Caller",
    "admin_caller",
    "auth_refusal",
    "is_admin",
    "is_master_key",
    "is_refusal",
    "key_caller",
    "ledger_file",
    "litellm_key_spend",
    "litellm_tracks_spend",
    "make_ledger",
    "may_call_model",
    "mpilot_settings",
    "redis_expected",
    "requested_models",
    "reservation_in",
    "reservation_of",
    "settlement_in",
    "settlement_of",
    "route_of",
    "route_spends",
    "store_key",
    "virtual_key_in",
    "virtual_key_of",
    "with_reservation",
    "ModelTokenizer",
    "model_groups",
    "model_tokenizer",
    "CohereSSEReader",
    "notice_cut_off_streams",
    "read_cohere_sse_streams",
    "served_by_cohere",
]
