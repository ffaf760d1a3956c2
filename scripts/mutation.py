"""Mutation run: do the unit tests notice small changes to the translation, token/key and money code?

Each mutant is one small change to one file (a comparison, `and`/`or`, `not` dropped, an arithmetic
operator, a constant anywhere, tables and keyword arguments included, a `return` value, a deleted
statement), made on the file's syntax tree and loaded in place of the real module while the unit tests
that execute the changed line run (`pytest -x`: first the tests that killed the definition's earlier
mutants, then the fastest). A mutant is killed when a test fails (or it hangs past its timeout), survives
when they all pass. Not mutated: docstrings, imports, function annotations, f-string text (messages),
logging calls, `__all__`, `Protocol` bodies, the ledger's Lua scripts (`NOT_PYTHON`).

Not a library: mutmut 3 mutates only inside functions (not the error tables or pydantic `Field` bounds)
and cosmic-ray changes no strings and deletes no statements; this is small and reaches both.

    scripts/mutate                      # every file; prints the table and the surviving mutants
    scripts/mutate plugin/cohere/errors.py --workers 1
    scripts/mutate --markdown           # the table as docs/testing.md shows it

Unit tests only (in process, no proxy): `UNIT_TESTS`. Per-test line coverage comes from one traced run
of them (`sys.settrace`), which picks the tests for each mutant and says which mutants sit on lines no
unit test executes (they count as survivors in the score, and are left out of the score on covered lines).
Each mutant runs in a forked child of this process (third-party imports are warm), in its own process
group, with a timeout. The ledger's tests need a Redis: this process starts one redis-server per worker
before forking, hands each child one (`MPILOT_TEST_REDIS_PORT`, which tests/conftest.py's `redis_port`
honours) and empties it after the child, so no mutant sees what another left. Their Redis Cluster runs are
left out (`DESELECTED`).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import importlib.abc
import importlib.util
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

TARGETS = [
    "plugin/cohere/schema.py",
    "plugin/cohere/request.py",
    "plugin/cohere/response.py",
    "plugin/cohere/stream.py",
    "plugin/cohere/citations.py",
    "plugin/cohere/errors.py",
    "plugin/cohere/wire.py",
    "plugin/cohere/embed.py",
    "plugin/cohere/rerank.py",
    "plugin/cohere/models.py",
    "plugin/cohere/tokenize.py",
    "plugin/auth/tokens.py",
    "plugin/limits/keys.py",
    "plugin/limits/ledger.py",
    "plugin/limits/allowance.py",
    "plugin/auth/spend.py",
]

# The in-process tests of these files (tests/test_ledger.py's Redis runs use the redis-server this process
# starts, see `_RedisServers`).
UNIT_TESTS = [
    "tests/test_translate_request.py",
    "tests/test_translate_response.py",
    "tests/test_translate_stream.py",
    "tests/test_translate_citations.py",
    "tests/test_citation_markup.py",
    "tests/test_wire.py",
    "tests/test_errors.py",
    "tests/test_translate_embed.py",
    "tests/test_translate_rerank.py",
    "tests/test_translate_models.py",
    "tests/test_jwt_verifier.py",
    "tests/test_virtual_keys.py",
    "tests/test_ledger.py",
    "tests/test_allowance.py",
    "tests/test_ledger_steps.py",
    "tests/test_allowance_edges.py",
    "tests/test_spend_settlement.py",
    "tests/test_spend_memory.py",
]

# Tests of UNIT_TESTS not run here: tests/test_ledger.py's runs on a 3-master Redis Cluster (one started in
# each mutant's child would take 2.5 s; RedisLedger's Python side is the same as on one redis-server).
DESELECTED = ("[cluster]",)

# Module-level constants that are not Python logic, by file: the ledger's Lua scripts. Each script's
# behaviour is pinned by tests/test_ledger.py against a real Redis (a mutant's "" script would only show
# that Redis refuses an empty script); what Python passes to them is mutated.
NOT_PYTHON: dict[str, frozenset[str]] = {
    "plugin/limits/ledger.py": frozenset({"_RATE_WINDOW", "_HOLDS", "_ADMIT", "_SETTLE", "_GIVE_BACK", "_RATE",
                                        "_RENAME"}),
}

# Mutants that cannot change what the code does, by (file, definition, the changed line, change), each with
# why. Keep this short and honest: a mutant listed here is never run, and an entry that matches no mutant
# any more (the line changed) is reported, to be checked again.
_LEDGER = "plugin/limits/ledger.py"
_TYPE_ONLY = "a type alias: nothing checks a Literal's values at run time"
_NEVER_PURGED = "any time before the clock's last second purges at the next step, 0.0 and 1.0 alike"
_NO_TOTALS_YET = "a file below version 2 has no `held` table until this transaction makes it: nothing to delete"
_SIGN = "`sign` is 1 or -1"
_UNUSED = "a name in the anchor's slot that the script never touches; any suffix is as unused"
_ABSENT = "the scripts take any negative number for a limit that is absent"
_NO_BUDGET = "the script reads it only where a budget is given (its limit is then >= 0)"
_EPOCH = "`oldest` is a Unix second of the clock, or -1: never 0"
_NO_STEPS = "with no reservation and nothing to add, no owner is collected: no step runs either way"
_HOLDING = "the hold's id is passed only to the step of the hold's owner, and there a reservation is set"
_NOTHING_BACK = "with nothing to give back the script changes nothing (one round trip more)"
_HOLD_IFF_AMOUNT = "a ledger makes a reservation exactly where the amount is > 0"
_TASK_KEPT = ("keeps a reference to the running give-back so it is not collected half way; a test cannot make "
              "the collector run at that moment")
_STATUSES = "400 and 500 are kept by the rule for statuses outside the set as well"
_UNREACHED = "400 and 500 are in the set of kept statuses: they never reach this rule"
_DEFAULT_4XX = "without this entry a 4xx gets the same default (and 401's own entry comes later in the literal)"
_COHERE_STATUSES = "_COHERE_STATUSES = frozenset({400, 401, 402, 403, 404, 422, 429, 498, 499, 500, 501, 503, 504})"
_STATUS_RULE = "return 500 if upstream_status >= 500 or upstream_status < 400 else 400"
_TEXT_INDEX = "self._text_index = 0  # the content index of the text block, which citations point into"
_TYPE_UNREAD = "the default of a `type` nothing reads: the translation writes 'function' itself"
_SET_WHEN_OPENED = "set when the text block opens, and a citation only follows text already sent"
_NOT_A_TAG_PREFIX = "elif not final and len(text) - lt < len(CLOSE) and (OPEN.startswith(text[lt:])"
_CURVES = 'return _EC_ALGORITHMS.get({"secp256r1": "P-256", "secp384r1": "P-384"}.get(key.curve.name, ""), frozenset())'
EQUIVALENT: dict[tuple[str, str, str, str], str] = {
    ("plugin/cohere/errors.py", "<module>", _COHERE_STATUSES, "400 -> 401"): _STATUSES,
    ("plugin/cohere/errors.py", "<module>", _COHERE_STATUSES, "500 -> 501"): _STATUSES,
    ("plugin/cohere/errors.py", "cohere_status", _STATUS_RULE, "`>=` -> `>` in `upstream_status >= 500`"): _UNREACHED,
    ("plugin/cohere/errors.py", "cohere_status", _STATUS_RULE, "`<` -> `<=` in `upstream_status < 400`"): _UNREACHED,
    ("plugin/cohere/errors.py", "cohere_status", _STATUS_RULE, "500 -> 501 in `upstream_status >= 500`"): _UNREACHED,
    ("plugin/cohere/errors.py", "cohere_status", _STATUS_RULE, "400 -> 401 in `upstream_status < 400`"): _UNREACHED,
    ("plugin/cohere/errors.py", "<module>", '400: "invalid_request_error",', "400 -> 401"): _DEFAULT_4XX,
    ("plugin/cohere/errors.py", "<module>", '422: "invalid_request_error",', "422 -> 423"): _DEFAULT_4XX,
    ("plugin/cohere/errors.py", "<module>", '400: "invalid_request",', "400 -> 401"): _DEFAULT_4XX,
    ("plugin/cohere/errors.py", "call_failure_message",
     'said = _LITELLM_WRAPPING.sub("", text, count=1)', "1 -> 2 in `count=`"):
        "the pattern is anchored at the start (^): it cannot match a second time",
    ("plugin/cohere/errors.py", "call_failure_message",
     "said = _ROUTER_FALLBACK_NOTE.split(said, maxsplit=1)[0].strip() or text", "1 -> 2 in `maxsplit=`"):
        "only the first piece is kept, and it is the same however many splits follow",
    ("plugin/cohere/errors.py", "<module>", 'NON_FINITE_NUMBER = "non_finite_number"', "'non_finite_number' -> ''"):
        "the name is only compared with itself: schema.py raises it, errors.py reads it",
    ("plugin/cohere/errors.py", "<module>", 'BOTH_SPELLINGS = "both_spellings"', "'both_spellings' -> ''"):
        "the name is only compared with itself: schema.py raises it, errors.py reads it",
    ("plugin/cohere/schema.py", "_finite_numbers",
     'NON_FINITE_NUMBER, "{number} is not a JSON number", {"number": item, "at": (*at, key)})',
     "'{number} is not a JSON number' -> '' in argument 2 of `pydantic_core.PydanticCustomError`"):
        "errors.from_validation_error words this error itself and never reads its `msg`",
    ("plugin/cohere/schema.py", "<module>", 'RequestT = TypeVar("RequestT", bound=BaseModel)',
     "'RequestT' -> '' in argument 1 of `TypeVar`"): "a type variable's name is only its repr, for type checkers",
    ("plugin/cohere/schema.py", "parse_body", "problems = error.errors(include_url=False)",
     "False -> True in `include_url=`"): "only `type` is read here, never `url`",
    ("plugin/cohere/schema.py", "parse_body",
     'decoded = None if any(problem["type"] == "json_invalid" for problem in problems) else _decoded(body)',
     "'json_invalid' -> '' in `problem['type'] == 'json_invalid'`"):
        "a body that is not JSON decodes to None either way; the check only saves parsing it twice",
    ("plugin/cohere/errors.py", "from_validation_error", "problems = error.errors(include_url=False)",
     "False -> True in `include_url=`"): "only `loc`, `type`, `msg`, `ctx` and `input` are read, never `url`",
    ("plugin/cohere/response.py", "<module>", '"stop": "COMPLETE",', "'stop' -> ''"):
        "without the entry, 'stop' gets the default, COMPLETE",
    ("plugin/cohere/response.py", "finish_reason", 'return _FINISH_REASONS.get(openai_reason or "stop", "COMPLETE")',
     "'stop' -> '' in `openai_reason or 'stop'`"): "no reason then gets the default, COMPLETE, as 'stop' does",
    ("plugin/cohere/response.py", "spans_from_annotations", 'url = str(cited.get("url") or "")',
     "'' -> 'XX' in `cited.get('url') or ''`"): "'XX', like '', does not start with 'source:'",
    ("plugin/cohere/schema.py", "ToolCall", 'type: Literal["function"] = "function"', "'function' -> ''"):
        _TYPE_UNREAD,
    ("plugin/cohere/schema.py", "Tool", 'type: Literal["function"] = "function"', "'function' -> ''"): _TYPE_UNREAD,
    ("plugin/cohere/stream.py", "CohereStream.__init__", _TEXT_INDEX, "delete `self._text_index = 0`"):
        _SET_WHEN_OPENED,
    ("plugin/cohere/stream.py", "CohereStream.__init__", _TEXT_INDEX, "0 -> 1"): _SET_WHEN_OPENED,
    ("plugin/cohere/stream.py", "CohereStream.__init__", "self._openai_tool_index: int | None = None",
     "delete `self._openai_tool_index: int | None = None`"): "read only while a tool call is open, which sets it",
    ("plugin/cohere/citations.py", "CitationMarkup._scan", "if gt >= 0:", "`>=` -> `>` in `gt >= 0`"):
        "`rest` starts with `<co:` or `</co`: `>` is never at 0",
    ("plugin/cohere/citations.py", "CitationMarkup._scan", "if gt >= 0:", "0 -> 1 in `gt >= 0`"):
        "`rest` starts with `<co:` or `</co`: `>` is never at 0",
    ("plugin/cohere/citations.py", "CitationMarkup._scan", _NOT_A_TAG_PREFIX,
     "`<` -> `<=` in `len(text) - lt < len(CLOSE)`"):
        "4 characters that begin `<co:` or `</co` are those tags, which the branch before takes",
    ("plugin/cohere/request.py", "_messages", "with_documents: bool = True) -> list[dict[str, Any]]:",
     "True -> False"): "its one caller always passes it",
    ("plugin/auth/tokens.py", "_algorithms_for_public_key", _CURVES,
     "'' -> 'XX' in argument 2 of `{'secp256r1': 'P-256', 'secp384r1': '...`"):
        "a curve that is not in the table gets no algorithms either way",
    ("plugin/auth/tokens.py", "JwksCache._wants_refresh", "return False", "`return False` -> `return None`"):
        "its caller only tests its truth",
    ("plugin/limits/keys.py", "VirtualKey", 'source: Literal["config", "proxy"]', "'config' -> ''"):
        "a dataclass does not check its annotations",
    ("plugin/limits/keys.py", "VirtualKey", 'source: Literal["config", "proxy"]', "'proxy' -> ''"):
        "a dataclass does not check its annotations",
    ("plugin/limits/keys.py", "_datetime", 'parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))',
     "'+00:00' -> '' in argument 2 of `str(value).replace`"):
        "Python 3.11 reads `Z` itself; a time without a zone is taken as UTC anyway",
    # The money code: ledger.py (its Python side), allowance.py, spend.py.
    (_LEDGER, "<module>", 'Refusal = Literal["requests", "tokens", "budget"]', "'requests' -> ''"): _TYPE_ONLY,
    (_LEDGER, "<module>", 'Refusal = Literal["requests", "tokens", "budget"]', "'tokens' -> ''"): _TYPE_ONLY,
    (_LEDGER, "<module>", 'Refusal = Literal["requests", "tokens", "budget"]', "'budget' -> ''"): _TYPE_ONLY,
    (_LEDGER, "SqliteLedger.__init__", "self._purged_at = 0.0", "0.0 -> 1.0"): _NEVER_PURGED,
    (_LEDGER, "SqliteLedger._run", "self._purged_at = now if _sqlite_purge(db, now) else 0.0",
     "0.0 -> 1.0 in `now if _sqlite_purge(db, now) else 0.0`"): _NEVER_PURGED,
    (_LEDGER, "SqliteLedger.check", "db = sqlite3.connect(path, timeout=30, isolation_level=None)",
     "30 -> 31 in `timeout=`"): "how long a proxy's start waits for a file another process is bringing up to date",
    (_LEDGER, "SqliteLedger.check", "db.close()", "delete `db.close()`"):
        "the connection is closed when it is collected, at the end of the call; nothing was left open in it",
    (_LEDGER, "_sqlite_prepare", "if version < SCHEMA_VERSION:", "`<` -> `<=` in `version < SCHEMA_VERSION`"):
        "bringing a file of this version up to date again changes nothing: every statement is IF NOT EXISTS and "
        "the totals are summed again from the same holds",
    (_LEDGER, "_sqlite_prepare", 'db.execute("DELETE FROM held")', "delete `db.execute('DELETE FROM held')`"):
        _NO_TOTALS_YET,
    (_LEDGER, "_sqlite_prepare", 'db.execute("DELETE FROM held")',
     "'DELETE FROM held' -> '' in argument 1 of `db.execute`"): _NO_TOTALS_YET,
    (_LEDGER, "_sqlite_drop_holds", "if not holds:", "delete `if not holds: return`"):
        "with no holds, every statement after it runs over an empty list",
    (_LEDGER, "_sqlite_add_held", "if sign < 0:", "`<` -> `<=` in `sign < 0`"): _SIGN,
    (_LEDGER, "_sqlite_add_held", "if sign < 0:", "0 -> 1 in `sign < 0`"): _SIGN,
    (_LEDGER, "_sqlite_admit", "requests_used = 0", "0 -> 1"):
        "read only where a requests limit is set, and then always assigned first",
    (_LEDGER, "_granted", "if limits.batch <= 1 or limits.tokens is not None:", "`<=` -> `<` in `limits.batch <= 1`"):
        "a batch of one goes on to grant min(1, ...) and then at least 1: one either way",
    (_LEDGER, "_sqlite_give_back", "if reservation is not None and nanos > 0:", "`>` -> `>=` in `nanos > 0`"):
        "taking 0 nano-dollars from a hold changes no row (a total is dropped only at 0, and a hold is never 0)",
    (_LEDGER, "_sqlite_give_back", "if requests is not None and requests[2] > 0:", "`>` -> `>=` in `requests[2] > 0`"):
        "taking 0 requests from a second changes no row (no second is ever counted at 0)",
    (_LEDGER, "RedisLedger.admit", 'unused = near(anchor, "unused")', "'unused' -> '' in argument 2 of `near`"):
        _UNUSED,
    (_LEDGER, "RedisLedger.admit", "holds = _holds_of(budget.counter) if budget is not None else (unused,) * 3",
     "3 -> 4 in `(unused,) * 3`"): "a name more after the six the script reads: it never reads KEYS[7]",
    (_LEDGER, "RedisLedger.admit",
     "requests, tokens = limits.requests or (unused, -1), limits.tokens or (unused, -1)", "1 -> 2 in `-1`"): _ABSENT,
    (_LEDGER, "RedisLedger.admit",
     "args=[repr(now), RATE_WINDOW_SECONDS, requests[1], tokens[1], budget.limit if budget else -1,",
     "1 -> 2 in `-1`"): _ABSENT,
    (_LEDGER, "RedisLedger.admit", "ttl = budget.ttl if budget else 0", "0 -> 1 in `budget.ttl if budget else 0`"):
        _NO_BUDGET,
    (_LEDGER, "RedisLedger.admit", 'budget.amount if budget else 0, ttl, reservation or "",',
     "0 -> 1 in `budget.amount if budget else 0`"): _NO_BUDGET,
    (_LEDGER, "RedisLedger.admit", 'budget.amount if budget else 0, ttl, reservation or "",',
     "'' -> 'XX' in `reservation or ''`"): "the id is written only where an amount is reserved, and then it is set",
    (_LEDGER, "RedisLedger.admit",
     "budget.spent_elsewhere if budget else 0, limits.batch, BATCH_ROOM, SWEEP_MOST, repr(now + ttl)])",
     "0 -> 1 in `budget.spent_elsewhere if budget else 0`"): _NO_BUDGET,
    (_LEDGER, "RedisLedger.admit", "retry_after=_retry_after(None if int(oldest) < 0 else int(oldest), now))",
     "0 -> 1 in `int(oldest) < 0`"): _EPOCH,
    (_LEDGER, "RedisLedger.admit", "retry_after=_retry_after(None if int(oldest) < 0 else int(oldest), now))",
     "`<` -> `<=` in `int(oldest) < 0`"): _EPOCH,
    (_LEDGER, "RedisLedger.settle", "if reservation is None and (amount <= 0 or not counters):",
     "delete `if reservation is None and (amount <= 0 or not counters):...`"): _NO_STEPS,
    (_LEDGER, "RedisLedger.settle", "if reservation is None and (amount <= 0 or not counters):",
     "`or` -> `and` in `amount <= 0 or not counters`"): _NO_STEPS,
    (_LEDGER, "RedisLedger.settle", "if reservation is None and (amount <= 0 or not counters):",
     "`<=` -> `<` in `amount <= 0`"): _NO_STEPS,
    (_LEDGER, "RedisLedger.settle", 'hold, part = _split_part(reservation) if reservation else ("", None)',
     "'' -> 'XX'"): _HOLDING,
    (_LEDGER, "RedisLedger.settle",
     'args=[SETTLED_MEMORY_SECONDS, hold if holding else "", "" if part is None else part, amount,',
     "'' -> 'XX' in `hold if holding else ''`"): "an owner's step that holds nothing: its counters' slot has no "
                                                 "hold named XX",
    (_LEDGER, "RedisLedger.settle", "for name, ttl in counters if amount > 0 else ():", "`>` -> `>=` in `amount > 0`"):
        "a step of 0 nano-dollars only marks the settlement in the counters' slot: the script adds nothing at 0",
    (_LEDGER, "RedisLedger.give_back", "hold = _split_part(reservation)[0] if reservation and nanos > 0 else None",
     "`>` -> `>=` in `nanos > 0`"): "the script takes nothing from a hold when nanos is 0",
    (_LEDGER, "RedisLedger.give_back", "if hold is None and (requests is None or requests[2] <= 0):",
     "delete `if hold is None and (requests is None or requests[2] <= 0...`"): _NOTHING_BACK,
    (_LEDGER, "RedisLedger.give_back", "if hold is None and (requests is None or requests[2] <= 0):",
     "`<=` -> `<` in `requests[2] <= 0`"): _NOTHING_BACK,
    (_LEDGER, "RedisLedger.give_back", 'counter, second, count = requests or ("", 0, 0)', "'' -> 'XX'"):
        "on one server the name is unread without requests; on a cluster its other slot fails the step (pinned by "
        "the cluster run of tests/test_ledger.py, not run here)",
    (_LEDGER, "RedisLedger.give_back", 'counter, second, count = requests or ("", 0, 0)', "0 -> 1"):
        "without requests the unused hash has no second to take from",
    (_LEDGER, "RedisLedger.give_back",
     'await self._give_back(keys=[*_holds_of(anchor), counter or near(anchor, "unused")],',
     "'unused' -> '' in argument 2 of `near`"): _UNUSED,
    (_LEDGER, "RedisLedger.give_back", 'args=[hold or "", nanos, second, count])', "'' -> 'XX' in `hold or ''`"):
        "no hold is named XX: taking from it changes nothing",
    (_LEDGER, "RedisLedger.rename",
     'async for name in self._client.scan_iter(match=prefix.replace("[", "\\\\[") + "*", count=1000):',
     "1000 -> 1001 in `count=`"): "how many names each SCAN round trip asks for, not which",
    (_LEDGER, "RedisLedger.rename", 'await self._client.set(RENAMED_MARK, "1")',
     "'1' -> '' in argument 2 of `self._client.set`"): "the mark is read for being there, not for its value",
    ("plugin/limits/allowance.py", "Allowances.keep",
     "amount = limits.budget.amount if limits.budget is not None else 0",
     "0 -> 1 in `limits.budget.amount if limits.budget...`"):
        "without a budget there is no hold: what is given back of it is skipped by every ledger",
    ("plugin/limits/allowance.py", "Allowances.keep",
     "own = part_of(admission.reservation, amount, 0) if admission.reservation and amount > 0 else None",
     "`and` -> `or` in `admission.reservation and amount > 0`"): _HOLD_IFF_AMOUNT,
    ("plugin/limits/allowance.py", "Allowances.keep",
     "own = part_of(admission.reservation, amount, 0) if admission.reservation and amount > 0 else None",
     "`>` -> `>=` in `amount > 0`"): _HOLD_IFF_AMOUNT,
    ("plugin/limits/allowance.py", "Allowances._give_back", "self._giving_back.add(task)",
     "delete `self._giving_back.add(task)`"): _TASK_KEPT,
    ("plugin/limits/allowance.py", "Allowances._give_back", "task.add_done_callback(self._giving_back.discard)",
     "delete `task.add_done_callback(self._giving_back.discard)`"): _TASK_KEPT,
    ("plugin/auth/spend.py", "<module>", "_REMEMBERED = 10_000  # call ids remembered so that a call is settled once",
     "10000 -> 10001"): "how many names are remembered; tests/test_spend_memory.py pins that the oldest go",
}

# Third-party modules the tests import, loaded once here so that each forked child starts warm (LiteLLM's
# proxy takes 8 s: tests/test_virtual_keys.py reaches the auth hook). Nothing of `plugin` or `tests` is
# imported in this process: a child imports them fresh, with its mutant.
_WARM = ["pytest", "anyio.pytest_plugin", "_hypothesis_pytestplugin", "hypothesis", "pydantic", "jwt",
         "cryptography.hazmat.primitives.asymmetric.rsa", "httpx", "yaml", "starlette.applications", "uvicorn",
         "cohere", "litellm.proxy.proxy_server"]


# ---------------------------------------------------------------------------------------------- mutants

@dataclass(frozen=True)
class Mutant:
    file: str  # relative to the repository
    index: int  # the node's position in `ast.walk` order of the file's tree
    operator: str
    line: int
    lines: frozenset[int]  # executing any of these means a test reaches the change
    import_time: bool  # the change takes effect when the module is imported (module or class body)
    where: str  # the enclosing definition, `<module>` at the top
    code: str  # the changed line, stripped
    change: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.file, self.where, self.code, self.change


_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_BINARY: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
    ast.Mod: ast.Mult,
}
_SYMBOL = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in",
           ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
           ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.And: "and", ast.Or: "or"}


def _short(node: ast.AST, limit: int = 60) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _changed_constant(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.0
    if isinstance(value, str):
        return "" if value else "XX"
    if isinstance(value, bytes):
        return b"" if value else b"XX"
    return None


@dataclass
class _Context:
    parents: dict[ast.AST, tuple[ast.AST, str, int | None]] = field(default_factory=dict)
    skipped: set[ast.AST] = field(default_factory=set)  # subtrees never mutated


def _tree(source: str, file: str = "") -> tuple[ast.Module, list[ast.AST], _Context]:
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    context = _Context()
    for node in nodes:
        for name, value in ast.iter_fields(node):
            if isinstance(value, list):
                for position, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        context.parents[child] = (node, name, position)
            elif isinstance(value, ast.AST):
                context.parents[value] = (node, name, None)
    scripts = NOT_PYTHON.get(file, frozenset())
    for node in nodes:
        for skip in _not_mutated(node, context):
            context.skipped.update(ast.walk(skip))
        if isinstance(node, ast.Assign) and isinstance(context.parents.get(node, (None,))[0], ast.Module) \
                and any(isinstance(target, ast.Name) and target.id in scripts for target in node.targets):
            context.skipped.update(ast.walk(node))
    return tree, nodes, context


def _not_mutated(node: ast.AST, context: _Context) -> Iterator[ast.AST]:
    """Subtrees that are not behaviour: docstrings, imports, function annotations (never evaluated under
    `from __future__ import annotations`; class-level ones are kept: pydantic reads them), message text in
    f-strings, what is logged, `__all__`, the body of a `Protocol` class."""
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
            and isinstance(node.body[0].value.value, str):
        yield node.body[0]
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.JoinedStr)):
        yield node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        arguments = node.args
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                         *(a for a in (arguments.vararg, arguments.kwarg) if a is not None)]:
            if argument.annotation is not None:
                yield argument.annotation
        if node.returns is not None:
            yield node.returns
    if isinstance(node, ast.AnnAssign) and _in_function_body(node, context):
        yield node.annotation
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute) \
            and isinstance(node.value.func.value, ast.Name) and node.value.func.value.id == "log":
        yield node
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
        yield node
    if isinstance(node, ast.ClassDef) and any(isinstance(base, ast.Name) and base.id == "Protocol"
                                              for base in node.bases):
        yield from node.body  # a typing.Protocol's members are for type checkers: nothing calls them


def _in_function_body(node: ast.AST, context: _Context) -> bool:
    while node in context.parents:
        parent, name, _ = context.parents[node]
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and name == "body":
            return True
        node = parent
    return False


def _where(node: ast.AST, context: _Context) -> str:
    names = []
    while node in context.parents:
        node = context.parents[node][0]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
    return ".".join(reversed(names)) or "<module>"


def _statement(node: ast.AST, context: _Context) -> ast.stmt | None:
    while not isinstance(node, ast.stmt):
        if node not in context.parents:
            return None
        node = context.parents[node][0]
    return node


def _variants(node: ast.AST, context: _Context) -> Iterator[tuple[str, str, Callable[[ast.AST, _Context], None]]]:
    """(operator, change, apply) for each mutant of `node`; `apply` changes a fresh tree's copy of it."""
    if isinstance(node, ast.Compare):
        for position, op in enumerate(node.ops):
            if type(op) in _COMPARE:
                new = _COMPARE[type(op)]
                change = f"`{_SYMBOL[type(op)]}` -> `{_SYMBOL[new]}` in `{_short(node)}`"
                yield "compare", change, _set_compare(position, new)
    elif isinstance(node, ast.BoolOp):
        new_op = ast.Or if isinstance(node.op, ast.And) else ast.And
        change = f"`{_SYMBOL[type(node.op)]}` -> `{_SYMBOL[new_op]}` in `{_short(node)}`"
        yield "boolean", change, lambda n, _: setattr(n, "op", new_op())
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        new_binary = _BINARY[type(node.op)]
        change = f"`{_SYMBOL[type(node.op)]}` -> `{_SYMBOL[new_binary]}` in `{_short(node)}`"
        yield "arithmetic", change, lambda n, _: setattr(n, "op", new_binary())
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not", f"`{_short(node)}` -> `{_short(node.operand)}`", _replace_with_operand
    elif isinstance(node, ast.Constant) and _changed_constant(node.value) is not None:
        new_value = _changed_constant(node.value)
        yield "constant", f"{node.value!r} -> {new_value!r}{_within(node, context)}", _replace_constant(new_value)
    elif isinstance(node, ast.Return) and node.value is not None \
            and not (isinstance(node.value, ast.Constant) and node.value.value is None):
        yield "return", f"`{_short(node)}` -> `return None`", _return_none
    elif isinstance(node, ast.Continue):
        yield "loop", "`continue` -> `break`", _replace_statement(ast.Break)
    # Any statement inside a class or a function, but `pass` and `return` (`return None` covers it).
    if isinstance(node, ast.stmt) and not isinstance(node, (ast.Pass, ast.Return)):
        parent, _, position = context.parents[node]
        if position is not None and not isinstance(parent, ast.Module):
            yield "delete", f"delete `{_short(node)}`", _replace_statement(ast.Pass)


def _within(node: ast.AST, context: _Context) -> str:
    """Where a constant sits, when that tells it apart from others on its line: ` in `x >= 500``."""
    parent, name, position = context.parents[node]
    if isinstance(parent, ast.keyword):
        return f" in `{parent.arg}=`"
    if isinstance(parent, ast.Call) and name == "args" and position is not None:
        return f" in argument {position + 1} of `{_short(parent.func, 40)}`"
    if isinstance(parent, ast.expr) and not isinstance(parent, (ast.Dict, ast.Set, ast.List, ast.Tuple)):
        return f" in `{_short(parent, 40)}`"
    return ""


def _set_compare(position: int, new: type[ast.cmpop]) -> Callable[[ast.AST, _Context], None]:
    def apply(node: ast.AST, _: _Context) -> None:
        assert isinstance(node, ast.Compare)
        node.ops[position] = new()
    return apply


def _put(context: _Context, old: ast.AST, new: ast.AST) -> None:
    parent, name, position = context.parents[old]
    ast.copy_location(new, old)
    if position is None:
        setattr(parent, name, new)
    else:
        getattr(parent, name)[position] = new


def _replace_with_operand(node: ast.AST, context: _Context) -> None:
    assert isinstance(node, ast.UnaryOp)
    _put(context, node, node.operand)


def _replace_constant(value: object) -> Callable[[ast.AST, _Context], None]:
    def apply(node: ast.AST, context: _Context) -> None:
        _put(context, node, ast.Constant(value=value))
    return apply


def _return_none(node: ast.AST, context: _Context) -> None:
    assert isinstance(node, ast.Return)
    node.value = ast.copy_location(ast.Constant(value=None), node)


def _replace_statement(kind: type[ast.stmt]) -> Callable[[ast.AST, _Context], None]:
    def apply(node: ast.AST, context: _Context) -> None:
        _put(context, node, kind())
    return apply


def mutants_of(file: str) -> list[Mutant]:
    source = (ROOT / file).read_text()
    source_lines = source.splitlines()
    _, nodes, context = _tree(source, file)
    found = []
    for index, node in enumerate(nodes):
        if node in context.skipped:
            continue
        for operator, change, _apply in _variants(node, context):
            statement = _statement(node, context)
            lines = {node.lineno, statement.lineno} if statement is not None else {node.lineno}
            if operator != "delete" and isinstance(node, ast.expr):
                lines |= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            found.append(Mutant(file, index, operator, node.lineno, frozenset(lines),
                                not _in_function_body(node, context), _where(node, context),
                                source_lines[node.lineno - 1].strip(), change))
    return found


def mutated_code(mutant: Mutant) -> Any:
    source = (ROOT / mutant.file).read_text()
    tree, nodes, context = _tree(source, mutant.file)
    node = nodes[mutant.index]
    for operator, change, apply in _variants(node, context):
        if (operator, change) == (mutant.operator, mutant.change):
            apply(node, context)
            break
    else:
        raise LookupError(f"mutant not found again: {mutant}")
    ast.fix_missing_locations(tree)
    return compile(tree, str(ROOT / mutant.file), "exec")


# --------------------------------------------------------------------------- running tests in a child

def _module_name(file: str) -> str:
    return file.removesuffix(".py").replace("/", ".")


class _MutantLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, name: str, path: str, code: Any) -> None:
        self._name, self._path, self._code = name, path, code

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self._name:
            return None
        return importlib.util.spec_from_file_location(fullname, self._path, loader=self)

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        exec(self._code, module.__dict__)


class _Select:
    """A pytest plugin: only these tests, in this order."""

    def __init__(self, nodeids: list[str] | None) -> None:
        self._order = {nodeid: n for n, nodeid in enumerate(nodeids)} if nodeids is not None else None

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        if self._order is None:
            left_out = [item for item in items if any(part in item.nodeid for part in DESELECTED)]
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if item not in left_out]
            return
        order = self._order
        kept = sorted((item for item in items if item.nodeid in order), key=lambda item: order[item.nodeid])
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in order])
        items[:] = kept


def _pytest(test_files: list[str], nodeids: list[str] | None, plugins: list[Any], first_failure: bool) -> int:
    import pytest
    from hypothesis import HealthCheck, Phase, settings

    # Reproducible, no example database to replay or fill, no shrinking (a failure is all we need).
    settings.register_profile("mutation", database=None, derandomize=True,
                              phases=[Phase.explicit, Phase.reuse, Phase.generate],
                              suppress_health_check=list(HealthCheck))
    settings.load_profile("mutation")
    args = [*test_files, "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-header"]
    if first_failure:  # a mutant's run: the first failure kills it; no assertion rewriting, no traceback
        args += ["-x", "--assert=plain", "--tb=no"]
    return int(pytest.main(args, plugins=[_Select(nodeids), *plugins]))


def _child(run: Callable[[], int], output: str | None = None, redis_port: int | None = None) -> int:
    """Fork; the child runs `run` in its own process group with its output discarded (or in `output`), its
    tests' Redis the server at `redis_port`."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        os.setpgid(0, 0)
        if redis_port is not None:
            os.environ["MPILOT_TEST_REDIS_PORT"] = str(redis_port)
        sink = os.open(output or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        code = run()
    except BaseException:  # noqa: BLE001  # whatever went wrong, the child must only exit
        import traceback

        traceback.print_exc()
        code = 3
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None when it ran past `timeout` (then it is killed)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            _kill(pid)
            return None
        time.sleep(0.02)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


class _RedisServers:
    """One redis-server per worker, started before any child is forked; a child is handed one no other
    child uses (`take`), which is emptied once it is done (`done`): keys one mutant left (a counter a
    mutated rename did not move, holds of a child killed mid-test) cannot change what the next one sees."""

    def __init__(self, count: int, folder: str) -> None:
        server = shutil.which("redis-server")
        if server is None:
            sys.exit("redis-server is missing (tests/test_ledger.py needs one): scripts/test installs it")
        self._processes: list[subprocess.Popen[bytes]] = []
        self._free: list[int] = []
        for port in _free_ports(count):
            self._processes.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", folder, "--dbfilename", f"{port}.rdb"], stdout=subprocess.DEVNULL))
            self._free.append(port)
        deadline = time.monotonic() + 10
        for port in self._free:
            while _redis_says(port, "PING") != b"+PONG":
                if time.monotonic() > deadline:
                    sys.exit(f"redis-server on port {port} did not start")
                time.sleep(0.02)

    def take(self) -> int:
        return self._free.pop(0)

    def done(self, port: int) -> None:
        if _redis_says(port, "FLUSHALL", "SYNC") != b"+OK":
            sys.exit(f"redis-server on port {port} could not be emptied")
        self._free.append(port)

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.wait(timeout=10)


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.add(probe.getsockname()[1])
    return sorted(ports)


def _redis_says(port: int, *command: str) -> bytes | None:
    """The first line of a redis-server's answer to `command`, None when it does not answer."""
    request = f"*{len(command)}\r\n" + "".join(f"${len(word)}\r\n{word}\r\n" for word in command)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(request.encode())
            answer = b""
            while not answer.endswith(b"\r\n"):
                chunk = connection.recv(256)
                if not chunk:
                    return None
                answer += chunk
    except OSError:
        return None
    return answer.split(b"\r\n", 1)[0]


# ------------------------------------------------------------------------------------- line coverage

@dataclass
class Coverage:
    lines: dict[str, dict[str, set[int]]]  # test -> file -> lines it executed
    durations: dict[str, float]  # test -> seconds

    def tests_for(self, mutant: Mutant) -> list[str]:
        if mutant.import_time:  # a table, a class body, a default: every test that runs code of the file
            tests = [test for test, by_file in self.lines.items() if by_file.get(mutant.file)]
        else:
            tests = [test for test, by_file in self.lines.items() if by_file.get(mutant.file, set()) & mutant.lines]
        return sorted(tests, key=lambda test: (self.durations.get(test, 0.0), test))

    def covered(self, mutant: Mutant) -> bool:
        return bool(self.tests_for(mutant))


def _trace_run(test_files: list[str], out: str) -> int:
    import pytest

    targets = {str(ROOT / file): file for file in TARGETS}
    lines: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    durations: dict[str, float] = defaultdict(float)
    current = ["<collection>"]

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            lines[current[0]][targets[frame.f_code.co_filename]].add(frame.f_lineno)
        return local

    def call(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in targets else None

    class Recorder:
        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Any:
            current[0] = item.nodeid
            try:
                return (yield)
            finally:
                current[0] = "<between tests>"

        def pytest_runtest_logreport(self, report: Any) -> None:
            durations[report.nodeid] += report.duration

    sys.settrace(call)
    try:
        code = _pytest(test_files, None, [Recorder()], first_failure=False)
    finally:
        sys.settrace(None)
    tests = {test: {file: sorted(found) for file, found in by_file.items()}
             for test, by_file in lines.items() if not test.startswith("<")}
    Path(out).write_text(json.dumps({"lines": tests, "durations": durations}))
    return code


def line_coverage(test_files: list[str], servers: _RedisServers) -> Coverage:
    with tempfile.TemporaryDirectory() as folder:
        out, log = f"{folder}/coverage.json", f"{folder}/pytest.log"
        port = servers.take()
        code = _wait(_child(lambda: _trace_run(test_files, out), log, port), 900)
        servers.done(port)
        if code != 0:
            sys.exit(f"the unit tests do not pass unchanged (exit {code}):\n{Path(log).read_text()[-3000:]}")
        data = json.loads(Path(out).read_text())
    lines = {test: {file: set(found) for file, found in by_file.items()} for test, by_file in data["lines"].items()}
    durations = {test: seconds for test, seconds in data["durations"].items()}
    for test in durations:
        lines.setdefault(test, {})
    return Coverage(lines, durations)


# ------------------------------------------------------------------------------------------ the run

@dataclass
class Result:
    mutant: Mutant
    outcome: str  # killed, timeout, survived, uncovered, excluded, error
    tests: int = 0
    seconds: float = 0.0
    killer: str | None = None  # the test that failed first


class _FirstFailure:
    """A pytest plugin: writes the id of the first failing test to `path`."""

    def __init__(self, path: str) -> None:
        self._path = path

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed and not os.path.exists(self._path):
            Path(self._path).write_text(report.nodeid)


def _run_mutant(mutant: Mutant | None, tests: list[str], killer_file: str, file: str = "") -> int:
    """The tests against `mutant` (None: against `file` unchanged, through the same loader)."""
    for name in [name for name in sys.modules if name.split(".")[0] in ("plugin", "tests")]:
        del sys.modules[name]
    if mutant is not None:
        file, code = mutant.file, mutated_code(mutant)
    else:
        code = compile((ROOT / file).read_text(), str(ROOT / file), "exec")
    sys.meta_path.insert(0, _MutantLoader(_module_name(file), str(ROOT / file), code))
    files = sorted({test.split("::")[0] for test in tests})
    return _pytest(files, tests, [_FirstFailure(killer_file)], first_failure=True)


def check_harness(files: list[str], coverage: Coverage, servers: _RedisServers) -> None:
    """Each file, unchanged but loaded as a mutant is, must pass all its tests: else a "kill" could be the
    harness's doing."""
    with tempfile.TemporaryDirectory() as folder:
        for file in files:
            tests = sorted({test for test, by_file in coverage.lines.items() if by_file.get(file)})
            if not tests:  # no unit test runs its code: every mutant of it is uncovered
                continue
            port = servers.take()
            pid = _child(lambda f=file, t=tests: _run_mutant(None, t, f"{folder}/failed", f), redis_port=port)
            code = _wait(pid, 60 + 3 * sum(coverage.durations.get(test, 0.0) for test in tests))
            servers.done(port)
            if code != 0:
                failed = Path(f"{folder}/failed").read_text() if os.path.exists(f"{folder}/failed") else "?"
                sys.exit(f"{file} unchanged, loaded as a mutant, fails its tests (exit {code}, first {failed})")


class _Killers:
    """The tests that killed earlier mutants of a definition (then of its file) run first: a test that
    catches one change to a function tends to catch the next."""

    def __init__(self) -> None:
        self._by_place: dict[tuple[str, str], list[str]] = defaultdict(list)

    def order(self, mutant: Mutant, tests: list[str]) -> list[str]:
        first = [*self._by_place[mutant.file, mutant.where], *self._by_place[mutant.file, ""]]
        selected = set(tests)
        ahead = list(dict.fromkeys(test for test in first if test in selected))
        return ahead + [test for test in tests if test not in set(ahead)]

    def killed(self, mutant: Mutant, test: str) -> None:
        for place in ((mutant.file, mutant.where), (mutant.file, "")):
            known = self._by_place[place]
            if test in known:
                known.remove(test)
            known.insert(0, test)
            del known[5:]


def run(mutants: list[Mutant], coverage: Coverage, workers: int, progress: bool,
        servers: _RedisServers) -> list[Result]:
    results: list[Result] = []
    queue: list[tuple[Mutant, list[str]]] = []
    for mutant in mutants:
        if mutant.key in EQUIVALENT:
            results.append(Result(mutant, "excluded"))
        elif not coverage.covered(mutant):
            results.append(Result(mutant, "uncovered"))
        else:
            queue.append((mutant, coverage.tests_for(mutant)))
    running: dict[int, tuple[Mutant, list[str], float, float, str, int]] = {}
    total, done = len(queue), 0
    killers = _Killers()
    serial = itertools.count()
    queue.sort(key=lambda item: (TARGETS.index(item[0].file), item[0].line))  # a definition's mutants together
    with tempfile.TemporaryDirectory() as folder:
        while queue or running:
            while queue and len(running) < workers:
                mutant, tests = queue.pop(0)
                tests = killers.order(mutant, tests)
                expected = sum(coverage.durations.get(test, 0.0) for test in tests)
                killer_file = f"{folder}/{next(serial)}"
                port = servers.take()
                pid = _child(lambda m=mutant, t=tests, k=killer_file: _run_mutant(m, t, k), redis_port=port)
                timeout = 10 + 2 * expected  # the durations were traced: slower
                running[pid] = (mutant, tests, time.monotonic(), timeout, killer_file, port)
            time.sleep(0.02)
            for pid in list(running):
                mutant, tests, started, timeout, killer_file, port = running[pid]
                finished, status = os.waitpid(pid, os.WNOHANG)
                elapsed = time.monotonic() - started
                if finished:
                    code = os.waitstatus_to_exitcode(status)
                    outcome = {0: "survived", 1: "killed", 2: "killed"}.get(code, "error")
                elif elapsed > timeout:
                    _kill(pid)
                    outcome = "timeout"
                else:
                    continue
                del running[pid]
                servers.done(port)
                done += 1
                killer = Path(killer_file).read_text() if os.path.exists(killer_file) else None
                if outcome == "killed" and killer:
                    killers.killed(mutant, killer)
                results.append(Result(mutant, outcome, len(tests), elapsed, killer))
                if progress:
                    print(f"[{done}/{total}] {outcome:8} {mutant.file}:{mutant.line} {mutant.change}",
                          file=sys.stderr)
    return results


def summary(results: list[Result], files: list[str]) -> list[dict[str, Any]]:
    rows = []
    for file in files:
        mine = [r for r in results if r.mutant.file == file and r.outcome != "excluded"]
        killed = sum(r.outcome in ("killed", "timeout") for r in mine)
        covered = [r for r in mine if r.outcome != "uncovered"]
        rows.append({"file": file, "mutants": len(mine), "killed": killed, "covered": len(covered),
                     "score": killed / len(mine) if mine else 1.0,
                     "covered_score": killed / len(covered) if covered else 1.0})
    return rows


def _percent(value: float) -> str:
    return f"{math.floor(100 * value)}%"  # rounded down: 100% only when every mutant was killed


def report(results: list[Result], files: list[str], markdown: bool, show_uncovered: bool) -> bool:
    rows = summary(results, files)
    mutants, killed = sum(r["mutants"] for r in rows), sum(r["killed"] for r in rows)
    covered = sum(r["covered"] for r in rows)
    total = {"file": "total", "mutants": mutants, "killed": killed, "covered": covered,
             "score": killed / mutants if mutants else 1.0, "covered_score": killed / covered if covered else 1.0}
    if markdown:
        print("| file | mutants | killed | score | on covered lines |")
        print("|---|---:|---:|---:|---:|")
        for row in [*rows, total]:
            name = f"`{row['file']}`" if row is not total else "total"
            print(f"| {name} | {row['mutants']:,} | {row['killed']:,} | {_percent(row['score'])} "
                  f"| {_percent(row['covered_score'])} |")
    else:
        print(f"{'file':32} {'mutants':>8} {'killed':>7} {'covered':>8} {'score':>6} {'on covered lines':>17}")
        for row in [*rows, total]:
            print(f"{row['file']:32} {row['mutants']:8} {row['killed']:7} {row['covered']:8} "
                  f"{_percent(row['score']):>6} {_percent(row['covered_score']):>17}")
    shown = ("survived", "error", "uncovered") if show_uncovered else ("survived", "error")
    listed = sorted((r for r in results if r.outcome in shown), key=lambda r: (r.mutant.file, r.mutant.line))
    if listed:
        print("\nSurviving mutants:" if not show_uncovered else "\nSurviving and uncovered mutants:")
        for r in listed:
            print(f"  {r.mutant.file}:{r.mutant.line} [{r.mutant.where}] {r.outcome}: {r.mutant.change}")
    excluded = [r for r in results if r.outcome == "excluded"]
    if excluded:
        print(f"\nExcluded as equivalent: {len(excluded)} (see EQUIVALENT in scripts/mutation.py)")
    return all(row["covered_score"] >= 0.9 for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help=f"files to mutate (default: all of {len(TARGETS)})")
    parser.add_argument("--workers", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--markdown", action="store_true", help="print the table as docs/testing.md has it")
    parser.add_argument("--uncovered", action="store_true", help="also list mutants no unit test reaches")
    parser.add_argument("--progress", action="store_true", help="one line per mutant as it finishes")
    parser.add_argument("--json", metavar="PATH", help="write every mutant's outcome here")
    options = parser.parse_args(argv)
    files = [str(Path(f).resolve().relative_to(ROOT)) if Path(f).is_absolute() else f for f in options.files] \
        or TARGETS
    unknown = sorted(set(files) - set(TARGETS))
    if unknown:
        parser.error(f"not a mutation target: {unknown}; targets: {TARGETS}")

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no cost-map download when a test imports LiteLLM
    for name in _WARM:
        importlib.import_module(name)
    if threading.active_count() > 1:  # a forked child gets no copy of them, and may inherit their locks held
        sys.exit(f"importing {_WARM} started threads: {threading.enumerate()}; cannot fork safely")
    gc.freeze()  # the garbage collector of each child then skips all of that (pytest collects at its end: 1 s)

    started = time.monotonic()
    mutants = [mutant for file in files for mutant in mutants_of(file)]
    keys = Counter(mutant.key for mutant in mutants_of_all())
    for key in EQUIVALENT:
        if keys[key] == 0:
            print(f"warning: EQUIVALENT entry matches no mutant (its line changed?): {key}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        servers = _RedisServers(options.workers, folder)
        try:
            coverage = line_coverage(UNIT_TESTS, servers)
            print(f"{len(mutants)} mutants in {len(files)} files; {len(coverage.durations)} unit tests "
                  f"({sum(coverage.durations.values()):.1f} s)", file=sys.stderr)
            check_harness(files, coverage, servers)
            results = run(mutants, coverage, options.workers, options.progress, servers)
        finally:
            servers.stop()
    if options.json:
        Path(options.json).write_text(json.dumps([{**r.mutant.__dict__, "lines": sorted(r.mutant.lines),
                                                   "outcome": r.outcome, "tests": r.tests, "seconds": r.seconds,
                                                   "killer": r.killer}
                                                  for r in results], indent=1))
    good = report(results, files, options.markdown, options.uncovered)
    print(f"\n{time.monotonic() - started:.0f} s with {options.workers} workers", file=sys.stderr)
    return 0 if good else 1


def mutants_of_all() -> list[Mutant]:
    return [mutant for file in TARGETS for mutant in mutants_of(file)]


if __name__ == "__main__":
    sys.exit(main())
