"""Who may call: the proxy's `custom_auth` hook for MPilot tokens and `sk-bf-` virtual keys.

| bearer token                  | result                                                           |
|-------------------------------|------------------------------------------------------------------|
| `sk-bf-...`                   | the virtual key from `mpilot.virtual_keys` or the proxy's store  |
| MPilot JWT with `vk`          | the virtual key whose id (SHA-256 hex) `vk` names                |
| MPilot JWT with `role: admin` | a proxy admin, spend attributed to its `sub`                     |
| anything else                 | declined: LiteLLM's own auth decides (master key, UI, DB keys)   |

A virtual key is refused when blocked (403), expired (401), not allowed the requested model (403),
over its budget (402) or its requests or tokens per minute (429 with Retry-After), counted in the
plugin's ledger. Messages name the key by its id prefix, never the key or token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
from fastapi import Request

from .. import host
from ..cohere.errors import redact
from ..limits.allowance import BATCH, Allowances
from ..limits.guard import StoreGuard
from ..limits.journal import Journal, Settlement
from ..limits.keys import (
    EARLIER_SPEND_PREFIX,
    KEY_PREFIX,
    VirtualKey,
    config_keys,
    key_id_of,
    limit_settings,
    renamed_spend_counter,
)
from ..limits.ledger import (
    Admission,
    Budget,
    Ledger,
    Limits,
    SqliteLedger,
    StoreBusy,
    StoreUnavailable,
    patience,
    to_dollars,
    to_nanos,
)
from .tokens import MPilotJwtVerifier, TokenRejected, jwt_settings, looks_like_jwt

log = logging.getLogger("mpilot.auth")
KEY_INFO_PATH = "/mpilot/key/info"
BOUND_ROOM = 100  # a bound is reserved while a budget has room for this many such reservations
ROOMS_KEPT = 10_000  # budgets (of a key, in a window) whose room this process remembers
FINISHED_KEPT = 10_000  # reservations whose end this process remembers
STORE_RETRY_SECONDS = 1  # Retry-After of a request refused while the ledger's store is unavailable
STORE_DOWN_MESSAGE = "the limits store of this proxy is unavailable; retry shortly"
ALONE = "alone:"  # a reservation made in this process's own ledger while the store was down (`local`)


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class MPilotAuth:
    batch = BATCH  # admissions asked of the ledger in one step, where it has room (see `allowance`)

    def __init__(self, settings: dict[str, Any]) -> None:
        self.jwt = jwt_settings(settings.get("jwt"))
        self.verifier = MPilotJwtVerifier(self.jwt)
        self.keys = config_keys(settings.get("virtual_keys"))
        self.limits = limit_settings(settings.get("limits"))
        self._ledger: StoreGuard | None = None
        self._journal: Journal | None = None
        self._alone: SqliteLedger | None = None  # `on_store_down: local`: this process's counts meanwhile
        self._renamed: asyncio.Task[None] | None = None  # the earlier layout's counters, moved once
        self._store_down = False  # since the guard said so: its return is logged
        self._started = False
        self._journal_full = False  # logged once until the journal takes settlements again
        self._replays: set[asyncio.Task[None]] = set()
        self._soon: asyncio.Task[None] | None = None  # a replay of what a settlement that would not wait journalled
        # budget counter -> what this process last saw left of it, and the reservation it last made there
        self._room: dict[str, tuple[int, int]] = {}
        self.allowances = Allowances()
        self._finished: OrderedDict[str, None] = OrderedDict()  # reservations settled or released here

    def ledger(self) -> StoreGuard:
        """Where limits are counted: Redis when the proxy has one (every proxy shares it), else the
        SQLite file every worker of this machine shares; each step within `store_timeout` seconds
        (`guard`). Chosen on first use: LiteLLM finds a Redis named only by REDIS_HOST after it loads
        the plugin."""
        if self._ledger is None:
            self._ledger = StoreGuard(host.make_ledger(self.limits.ledger_path), self.limits.store_timeout,
                                      self._store_changed)
        return self._ledger

    def journal(self) -> Journal:
        """Where spend answered while the store is down waits for it (a folder beside the ledger's file)."""
        if self._journal is None:
            self._journal = Journal(host.ledger_file(self.limits.journal_path), self.limits.journal_max_bytes)
        return self._journal

    async def store(self) -> Ledger:
        """The ledger, once this process has moved the earlier layout's spend counters to today's names
        (every process does, at its first step; a step after the first waits for nothing). A step waits
        for the move `store_timeout` seconds at most: the store is unavailable to it until then."""
        ledger = self.ledger()
        if self._renamed is None:
            self._renamed = asyncio.ensure_future(self._rename(ledger))
        if not self._renamed.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._renamed), self.limits.store_timeout)
            except TimeoutError:
                raise StoreUnavailable(f"{ledger.kind} ledger: still moving an earlier release's counters") from None
        return ledger

    async def _rename(self, ledger: Ledger) -> None:
        try:
            moved = await ledger.rename(renamed_spend_counter, EARLIER_SPEND_PREFIX)
        except BaseException:
            self._renamed = None  # tried again at the next step
            raise
        if moved:
            log.warning("MPilot limits: moved %d spend counters of an earlier release to today's names", moved)

    def _store_changed(self, up: bool, reason: str | None) -> None:
        """The guard's news, once per change: a line in the log; when the store answers (the first time,
        and after an outage), what the journal holds is settled."""
        if not up:
            self._store_down = True
            if self.limits.on_store_down == "local":
                log.error("MPilot limits store unavailable (%s): limited keys are admitted by this proxy alone, "
                          "from the counts it last saw, until it is back; their spend is journalled", reason)
            else:
                log.error("MPilot limits store unavailable (%s): limited keys are refused with 503 until it is "
                          "back; spend answered meanwhile is journalled", reason)
            return
        self._alone = None  # the store counts again; what this process counted alone is in the journal
        task = asyncio.get_running_loop().create_task(self._replay(was_down=self._store_down))
        self._store_down = False
        self._replays.add(task)
        task.add_done_callback(self._replays.discard)

    async def _replay(self, was_down: bool) -> None:
        try:
            settled = await self.journal().replay(self.ledger())
        except StoreUnavailable:
            return  # down again: the guard says so, and its next answer replays the rest
        except OSError as error:
            log.error("MPilot limits: the spend journal %s could not be read (%s)", self.journal().folder, error)
            return
        if was_down or settled:
            log.warning("MPilot limits store answers: %d journalled settlements counted", settled)

    def first_request(self) -> None:
        """At this process's first request (LiteLLM has chosen its Redis by then): if processes before it
        left journals, the store is asked now, and its first answer settles them (`_store_changed`)."""
        if self._started:
            return
        self._started = True
        try:
            if not self.journal().left_behind():
                return
            task = asyncio.get_running_loop().create_task(self.ledger().ready())
        except Exception as error:  # noqa: BLE001  # never this request's failure: the next answer replays them
            log.warning("MPilot limits: journals left by earlier processes not replayed yet (%s)", type(error).__name__)
            return
        self._replays.add(task)
        task.add_done_callback(self._replays.discard)

    def store_failed(self, error: StoreUnavailable) -> Refused:
        return Refused(503, STORE_DOWN_MESSAGE, headers={"retry-after": str(STORE_RETRY_SECONDS)})

    async def authenticate(self, request: Request, token: str) -> Any:
        """A caller for LiteLLM, or None to let LiteLLM's own auth decide."""
        if token.startswith(KEY_PREFIX):
            if host.is_master_key(token):
                return None  # an operator chose an sk-bf- master key: LiteLLM's own auth knows it
            key = await self.find_key(key_id_of(token))
            if key is None:
                raise Refused(401, "unknown virtual key")
            return await self.admit(key, request)
        if looks_like_jwt(token) and self._is_mpilot_token(token):
            try:
                claims = await self.verifier.verify(token)
            except TokenRejected as rejection:
                raise Refused(401, str(rejection)) from None
            if claims.is_admin:
                return host.admin_caller(claims.subject)
            key = await self.find_key(claims.virtual_key_id or "")
            if key is None:
                raise Refused(401, "MPilot token names an unknown virtual key")
            return await self.admit(key, request)
        return None

    def _is_mpilot_token(self, token: str) -> bool:
        """MPilot's tokens carry our issuer, a `vk` or a `role`; other JWTs (LiteLLM UI sessions,
        LiteLLM's own JWT auth) are left to LiteLLM."""
        try:
            peek = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Refused(401, "malformed bearer token") from None
        return ("vk" in peek or "role" in peek
                or (self.jwt.issuer is not None and peek.get("iss") == self.jwt.issuer))

    async def find_key(self, key_id: str) -> VirtualKey | None:
        return self.keys.get(key_id) or await host.store_key(key_id)

    async def admit(self, key: VirtualKey, request: Request) -> Any:
        """The checks LiteLLM's own auth makes for a key, then the key's limits in the ledger: requests
        and tokens per minute, and its budget, with the call's cost reserved until it is settled."""
        now = datetime.now(UTC)
        if key.blocked:
            raise Refused(403, f"virtual key {key.display_id} is blocked")
        if key.expired(now):
            raise Refused(401, f"virtual key {key.display_id} has expired")
        models = await host.requested_models(request)
        caller = host.key_caller(key)
        for model in models:
            if not await host.may_call_model(caller, model):
                raise Refused(403, f"virtual key {key.display_id} may not use model {model!r}")
        # The key's own info, and LiteLLM's routes that cannot spend, are free of the key's limits. The
        # plugin's Cohere routes all count, those that reach no model (model lists, tokenizing) too: a
        # request a minute each, and a key out of budget is refused there as well. They, and LiteLLM's
        # token-counting routes, reserve nothing: no call's end would settle it.
        route = host.route_of(request)
        costs_nothing = host.costs_nothing(route)
        if route == KEY_INFO_PATH or not key.has_limits or not (costs_nothing or host.route_spends(route)):
            return caller
        budget, estimated = None, True
        if key.max_budget is not None:
            counter = key.spend_counter(now)
            estimate, estimated = await self.reservation(key, counter, request, models) \
                if models and not costs_nothing else (0, True)
            spent_elsewhere = 0 if self.tracks_spend(key) else to_nanos(await host.litellm_key_spend(key))
            budget = Budget(counter, to_nanos(key.max_budget), estimate, self.limits.reservation_ttl_seconds,
                            spent_elsewhere)
        # A batch of admissions, where the ledger alone keeps the key's spend (see `allowance`).
        limits = Limits(requests=(key.requests_counter, key.rpm_limit) if key.rpm_limit is not None else None,
                        tokens=(key.tokens_counter, key.tpm_limit) if key.tpm_limit is not None else None,
                        budget=budget, batch=self.batch if budget is None or self.tracks_spend(key) else 1)
        admission = self.allowances.take(limits)
        if admission is None:
            try:
                await self.allowances.end(limits, await self.store())
                admission, limits = await self._admit(self.allowances.sized(limits), key, request, models,
                                                      estimated)
            except StoreUnavailable as error:
                if self.limits.on_store_down != "local":
                    raise self.store_failed(error) from None
                admission, limits = await self._admit_alone(limits, error)
        if admission.refused_by == "requests":
            raise Refused(429, f"virtual key {key.display_id} has reached its limit of {key.rpm_limit} requests "
                               f"per minute; retry in {admission.retry_after} s",
                          headers={"retry-after": str(admission.retry_after)})
        if admission.refused_by == "tokens":
            raise Refused(429, f"virtual key {key.display_id} has used {admission.used} of its {key.tpm_limit} "
                               f"tokens per minute; retry in {admission.retry_after} s",
                          headers={"retry-after": str(admission.retry_after)})
        if admission.refused_by == "budget" and limits.budget is not None:
            raise Refused(402, _budget_refusal(key, limits.budget, admission))
        return host.with_reservation(caller, admission.reservation)

    async def _admit(self, limits: Limits, key: VirtualKey, request: Request, models: list[str],
                     estimated: bool) -> tuple[Admission, Limits]:
        """A step of the ledger for `limits`, and the limits it took (a refused bound is retried with
        LiteLLM's estimate); a batch it grants is kept as an allowance."""
        ledger = await self.store()
        admission = await ledger.admit(limits)
        budget = limits.budget
        if admission.refused_by == "budget" and budget is not None and not estimated:
            # The bound did not fit (another process spent meanwhile): LiteLLM's own estimate may.
            budget = replace(budget, amount=await self.estimate(key, request, models))
            limits = replace(limits, budget=budget)
            admission = await ledger.admit(limits)
        if budget is not None:
            self._remember_room(budget, admission)
        return self.allowances.keep(limits, admission, ledger), limits

    async def _admit_alone(self, limits: Limits, error: StoreUnavailable) -> tuple[Admission, Limits]:
        """`on_store_down: local`: the step in this process's own ledger, one request at a time, a budget
        counted from what this process last saw committed of it (refused, 503, where it saw nothing)."""
        budget = limits.budget
        if budget is not None:
            seen = self._room.get(budget.counter)
            if seen is None:
                raise self.store_failed(error) from None
            committed = budget.limit - seen[0]  # spent (elsewhere too) and held, as last seen
            budget = replace(budget, spent_elsewhere=max(budget.spent_elsewhere, committed))
        limits = replace(limits, budget=budget, batch=1)
        if self._alone is None:
            self._alone = SqliteLedger(Path(":memory:"))
        admission = await self._alone.admit(limits)
        if admission.reservation is not None:
            admission = replace(admission, reservation=ALONE + admission.reservation)
        return admission, limits

    async def reservation(self, key: VirtualKey, counter: str, request: Request, models: list[str]) -> tuple[int, bool]:
        """What to reserve of a key's budget for a call, and whether it is LiteLLM's own estimate (input tokens
        by its token counter). Far from the budget's end (room for `BOUND_ROOM` such reservations, as this
        process last saw it), the bound of a request that is all text (`host.bound_cost_nanos`) instead: never
        less, and no tokenizer (~0.6 ms a request). Near the end, first in a budget window, or for anything
        else: LiteLLM's estimate, so that concurrent calls near the end hold only what they may cost."""
        room, last = self._room.get(counter, (None, 0))
        # A bound is at least the estimate: where even the last reservation would not fit BOUND_ROOM times
        # (a small budget, or near its end), the bound is not worth making.
        if room is not None and room >= BOUND_ROOM * last:
            bound = await host.bound_cost_nanos(request, models, self.limits.default_max_tokens)
            if bound is not None and room >= BOUND_ROOM * bound:
                return bound, False
        return await self.estimate(key, request, models), True

    async def estimate(self, key: VirtualKey, request: Request, models: list[str]) -> int:
        return await host.estimate_cost_nanos(request, models, self.limits.default_max_tokens, key.team_id)

    def _remember_room(self, budget: Budget, admission: Admission) -> None:
        if admission.refused_by not in (None, "budget"):
            return  # refused by a rate limit before the budget was read
        if len(self._room) >= ROOMS_KEPT and budget.counter not in self._room:
            self._room.clear()
        taken = budget.amount * admission.granted if admission.refused_by is None else 0
        self._room[budget.counter] = (budget.limit - admission.spent - admission.held - taken, budget.amount)

    def tracks_spend(self, key: VirtualKey) -> bool:
        """Whether the plugin keeps this key's spend: always for config keys; for keys in the proxy's
        store only when LiteLLM itself does not (no database)."""
        return key.source == "config" or not host.litellm_tracks_spend()

    async def spend(self, key: VirtualKey, now: datetime) -> Decimal:
        """The key's spend in its current budget window, in dollars."""
        if self.tracks_spend(key):
            return to_dollars(await (await self.store()).spent(key.spend_counter(now)))
        return to_dollars(to_nanos(await host.litellm_key_spend(key)))

    async def counted_spend(self, counter: str) -> Decimal:
        return to_dollars(await (await self.store()).spent(counter))

    async def settle(self, key_id: str | None, reservation: str | None, cost: float, tokens: int,
                     call: str | None = None) -> None:
        """A call ended: its reservation is replaced by what it cost, and its tokens count per minute.
        `call` (the id the plugin gave the request, `host.settlement_of`) names the settlement: settled again
        under it, it counts once."""
        reservation = self._first_end(reservation)
        key = await self.find_key(key_id) if key_id else None
        counted = key.spend_counters(datetime.now(UTC)) if key is not None and self.tracks_spend(key) else []
        amount = to_nanos(cost) if key is not None and cost > 0 else 0
        if reservation is not None and reservation.startswith(ALONE):
            if self._alone is not None:  # what this process counts alone while the store is down
                await self._alone.settle(reservation[len(ALONE):], amount, counted, call)
            reservation = None  # the store never held it
        if reservation is None and (amount <= 0 or not counted):
            return
        await self._settle(Settlement(call or reservation or uuid.uuid4().hex, reservation, amount, tuple(counted)))
        if key is not None and key.tpm_limit is not None and tokens > 0:
            with contextlib.suppress(StoreUnavailable):  # tokens count a minute: nothing to keep past an outage
                await (await self.store()).add_to_rate(key.tokens_counter, tokens)

    async def _settle(self, settlement: Settlement) -> None:
        """In the ledger, or, while its store is down, in the journal until it is back."""
        try:
            await (await self.store()).settle(settlement.reservation, settlement.amount, settlement.counters,
                                              settlement.call)
        except StoreUnavailable as error:
            kept = self.journal().record(settlement)
            if not kept and not self._journal_full:
                log.error("MPilot limits: the spend journal %s is full or not writable: the spend of calls "
                          "answered from now on is not counted until it takes them again", self.journal().folder)
            self._journal_full = not kept
            if kept and isinstance(error, StoreBusy):
                self._replay_soon()  # the store is up: no outage's end will replay it

    def _replay_soon(self) -> None:
        """The journal settled in a moment, patiently (a settlement that would not wait went there)."""
        if self._soon is not None and not self._soon.done():
            return

        async def later() -> None:
            await asyncio.sleep(self.ledger().probe_every)
            with patience(True):
                await self._replay(was_down=False)

        self._soon = asyncio.get_running_loop().create_task(later())

    async def release(self, reservation: str | None) -> None:
        """A call that failed, or never started: its reservation is given back whole (while the store is
        down, it expires by itself)."""
        reservation = self._first_end(reservation)
        if reservation is None:
            return
        if reservation.startswith(ALONE):
            if self._alone is not None:
                await self._alone.settle(reservation[len(ALONE):], 0, [])
            return
        with contextlib.suppress(StoreUnavailable):
            await (await self.store()).settle(reservation, 0, [])

    def _first_end(self, reservation: str | None) -> str | None:
        """`reservation` the first time its call's end is seen, None after: a failed call's end reaches
        LiteLLM's failure hook and its failure log (and the route's own release), and a batch's part of a
        hold must be taken back once. A cost seen after a release still counts."""
        if reservation is None or reservation in self._finished:
            return None
        self._finished[reservation] = None
        if len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)
        return reservation


def _budget_refusal(key: VirtualKey, reserving: Budget, admission: Admission) -> str:
    budget, spent, held, estimate = reserving.limit, admission.spent, admission.held, reserving.amount
    if spent >= budget:
        return (f"virtual key {key.display_id} has exceeded its budget of {dollars(to_dollars(budget))} "
                f"(spent {dollars(to_dollars(spent))})")
    left = budget - spent - held
    return (f"virtual key {key.display_id} has {dollars(to_dollars(max(left, 0)))} of its "
            f"{dollars(to_dollars(budget))} budget left (spent {dollars(to_dollars(spent))}, "
            f"{dollars(to_dollars(held))} reserved by calls in flight); this request may cost up to "
            f"{dollars(to_dollars(estimate))}: set a lower max_tokens, or wait for calls in flight to end")


def dollars(amount: Decimal | float) -> str:
    """`$5.00`; small amounts keep their digits (`$0.00004`)."""
    amount = Decimal(str(amount)) if isinstance(amount, float) else amount
    if amount >= Decimal("0.01") or amount == 0:
        return f"${amount:,.2f}"
    return "$" + format(amount.normalize(), "f")


_auth: MPilotAuth | None = None


def mpilot_auth() -> MPilotAuth:
    """The plugin's auth, made from `config.yaml`'s `mpilot:` section on first use."""
    global _auth
    if _auth is None:
        _auth = MPilotAuth(host.mpilot_settings())
        log.info("MPilot auth: %d config virtual keys, JWTs %s", len(_auth.keys),
                 "accepted" if _auth.jwt.issuer and _auth.jwt.has_key_material else "not configured")
    return _auth


async def user_api_key_auth(request: Request, api_key: str) -> Any:
    """`general_settings.custom_auth`. Returns a caller, or None to decline (needs
    `custom_auth_settings.mode: auto`); a refusal ends the request with its status.

    Fails closed and loudly: a broken `mpilot:` section, or anything the hook did not expect, is a
    logged 500 refusal, never a decline that would hand an MPilot token to another auth."""
    if not isinstance(api_key, str) or not api_key:
        return None  # no token: LiteLLM's own auth answers (401, or a UI session cookie)
    try:
        auth = mpilot_auth()
    except (ValueError, TypeError) as error:
        log.error("MPilot auth is misconfigured: %s", error)
        raise host.auth_refusal(500, f"MPilot auth is misconfigured: {error}") from None
    try:
        auth.first_request()
        return await auth.authenticate(request, api_key)
    except Refused as refusal:
        raise host.auth_refusal(refusal.status, refusal.message, refusal.headers) from None
    except Exception as error:
        if host.is_refusal(error):
            raise
        log.error("MPilot auth failed unexpectedly (%s: %s); request refused", type(error).__name__,
                  redact(str(error)))
        raise host.auth_refusal(500, "MPilot auth could not check this request; it was refused") from None
