"""The supervisor: builds the parts from a config, owns every task, and has one shutdown path.

    tail ──batches──▶ pipeline ──events──▶ router ──▶ outputs
      ▲                                                  │ acknowledgements
      └──────── registry ◀──── ledgers ◀─────────────────┘

Dispatch is a plain function call per batch: no queue hop and no coroutine per line.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ccf_agent import __version__
from ccf_agent.acks import Flow, Ledger
from ccf_agent.alerts.engine import AlertEngine
from ccf_agent.batch import Batch
from ccf_agent.conditions import condition_fields
from ccf_agent.config import LISTEN_OFF, AlertsConfig, Config, ConfigError, OutputConfig, load_config
from ccf_agent.credentials import LOG_SCRUBBER, config_secrets
from ccf_agent.fsutil import open_plain, state_dir_problem
from ccf_agent.ops import business, notify
from ccf_agent.ops.snapshot import (
    COMMON_OUTPUT_KEYS,
    EndpointState,
    FileState,
    InputState,
    OutputState,
    Snapshot,
    TapState,
)
from ccf_agent.ops.tap import Taps
from ccf_agent.outputs.base import Output
from ccf_agent.outputs.deadletter import DeadLetters
from ccf_agent.outputs.registry import output_type
from ccf_agent.pipeline.process import Pipeline
from ccf_agent.pipeline.redact import Redactor
from ccf_agent.registry import Registry
from ccf_agent.router import Router
from ccf_agent.tail.source import TailInput

if TYPE_CHECKING:
    from ccf_agent.ops.server import StatusServer

log = logging.getLogger("ccf_agent")


def build_output(cfg: OutputConfig, dead: DeadLetters) -> Output:
    return output_type(cfg.type).create(cfg, dead)


def _refused(config: Config, path: tuple[str | int, ...], why: Exception | str) -> ConfigError:
    message = why.strerror if isinstance(why, OSError) and why.strerror else str(why)
    if config.error_at is None:
        return ConfigError(config.path, None, "", message)
    return config.error_at(path, message)


def build_outputs(config: Config, dead: DeadLetters) -> dict[str, Output]:
    """Every output of the config. A constructor's refusal (a TLS file that holds no certificate, a
    combination only the module knows is wrong) is a ConfigError at that output's line."""
    outputs = {}
    for name, cfg in config.outputs.items():
        try:
            outputs[name] = build_output(cfg, dead)
        except (ValueError, OSError) as e:
            raise _refused(config, ("outputs", name), str(e).removeprefix(f"output {name}: ")) from e
    return outputs


def preflight(config: Config) -> None:
    """Build what `run` builds from a config, offline (no file written, no connection made), so that
    `check` and a reload refuse what the constructors themselves would refuse."""
    # Its owner is checked by `run` itself: `check` run by root for a service user cannot tell.
    problem = state_dir_problem(config.state_dir, check_owner=os.geteuid() != 0)
    if problem:
        raise _refused(config, ("state_dir",), problem)
    build_outputs(config, DeadLetters(config.state_dir))  # DeadLetters touches the disk only to write
    for i, inp in enumerate(config.inputs):
        try:
            Pipeline(inp, config.hostname, config.processors)
        except (ValueError, TypeError, OSError) as e:  # TypeError: fields orjson cannot encode
            raise _refused(config, ("inputs", i), e) from e


def _lock_state_dir(state_dir: Path) -> int | None:
    """An exclusive lock on `state_dir/lock`, held while the agent runs (released by the kernel
    even on kill -9); None when another process holds it."""
    fd = open_plain(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class Agent:
    """Runs generations: each is one config's inputs, outputs and alerts. SIGHUP ends a generation
    the same way shutdown does (stop reading, deliver what is in flight, save offsets) and starts
    the next from the new config; the registry, and so every offset, carries over."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.time()
        self.state_dir = Path(config.state_dir)
        self.registry = Registry(self.state_dir)
        self.dead = DeadLetters(self.state_dir)
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self.records_in = 0
        self.exit_code = 0
        self.reloads = 0
        self.last_reload_error: str | None = None
        self.status_server: StatusServer | None = None  # once running
        self.taps = Taps()  # `ccf-agent tap` clients: they stay attached across reloads
        self._build(config)

    def _build(self, config: Config) -> None:
        self.config = config
        LOG_SCRUBBER.add(config_secrets(config))  # a reload's new credentials too; old ones stay hidden
        self.outputs: dict[str, Output] = build_outputs(config, self.dead)
        # max_inflight_bytes bounds what each output holds unacknowledged (Output.budget); reading a
        # file pauses only while an output its records go to holds that much. The global bound is
        # what all of them may hold together.
        self.flow = Flow(config.max_inflight_bytes * max(1, len(self.outputs)))
        for out in self.outputs.values():
            out.budget = config.max_inflight_bytes
            out.room_listeners.append(self._room_again)
        self.router = Router(config.routes, config.default_output)
        self._targets = [[self.outputs[n] for n in t] for t in self.router.targets]
        self._tap_targets = tuple(zip(self.router.names, self.router.targets, strict=True))
        self.taps.names = {"input": tuple(i.id for i in config.inputs), "route": tuple(self.router.names),
                           "output": tuple(self.outputs)}
        # Records reach the rules already redacted; the engine redacts notifications once more.
        redact = config.processors.redact
        guard = Redactor(redact).redact_record if redact.enabled else None
        self.alerts = AlertEngine(config.alerts or AlertsConfig(), self.state_dir, redact=guard,
                                  log=logging.getLogger("ccf_agent.alerts"))
        self.inputs: list[TailInput] = []
        self.pipelines: dict[str, Pipeline] = {}

    # ------------------------------------------------------------------ the hot path

    def _projection(self) -> tuple[str, ...]:
        """The record fields anything after the pipeline reads: routes, business metrics, alert
        conditions and names from the record (an index's or topic's `%{[service]}`, a Kafka key
        field). (An alert notice's sample is read from the shipped document, not the record.)"""
        fields = set(business.FIELDS)
        for out in self.outputs.values():
            fields |= out.record_fields()
        for route in self.config.routes:
            fields |= condition_fields(route.when.spec)
        for rule in self.config.alerts.rules if self.config.alerts is not None else ():
            fields |= condition_fields(rule.when.spec)
            if rule.of is not None:
                fields |= condition_fields(rule.of.spec)
        return tuple(sorted(fields))

    def _dispatcher(self, input_id: str, pipeline: Pipeline) -> Callable[[Batch], None]:
        process, assign, targets = pipeline.process, self.router.assign, self._targets
        taps, tap_targets = self.taps, self._tap_targets
        count_business = business.observe
        observe = self.alerts.observe if self.config.alerts is not None else None
        projected = pipeline.projected

        def dispatch(batch: Batch) -> None:
            events = process(batch)
            count_business(events.records, events.times, batch.path)
            token = batch.token
            self.records_in += len(events.docs)
            if events.docs:
                if observe is not None:
                    observe(events.records, events.times, events.docs if projected else None)
                buckets = assign(events.records)
                bound: list[Output] = []
                for k, indices in enumerate(buckets):
                    if indices:
                        for out in targets[k]:
                            out.submit(events, indices, token)
                            bound.append(out)
                if token is not None:
                    token.ledger.bound_for = bound  # whose room reading this file waits for
                if taps.clients:  # the whole cost of `ccf-agent tap` while nobody taps
                    taps.offer(input_id, events.docs, buckets, tap_targets)
            if token is not None:
                token.done()  # the reader's own share: the batch is fully handed over

        return dispatch

    async def wait_for_room(self) -> None:
        """Backpressure for every file: reading pauses while all outputs together hold too much."""
        await self.flow.wait_for_room()

    @staticmethod
    def room_for(ledger: Ledger) -> bool:
        """Backpressure per file: its next chunk is read only while every output its latest records
        went to has room. A throttled output holds back the files that feed it, not the others:
        payouts.log, routed only to payouts, is read and shipped while the logs output waits."""
        return all(out.has_room for out in ledger.bound_for)

    def _room_again(self) -> None:
        for inp in self.inputs:
            inp.room_again()

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._stop.set()
        self._reload.set()

    def request_reload(self) -> None:
        self._reload.set()

    async def run(self) -> int:
        try:
            self.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            problem = state_dir_problem(self.state_dir)
            lock = None if problem else _lock_state_dir(self.state_dir)
        except OSError as e:  # a link planted at lock, a directory we may not create
            problem = f"{e.filename or self.state_dir}: {e.strerror}"
        if problem:
            log.critical("refusing state_dir: %s", problem)
            return 2
        if lock is None:
            log.critical("another ccf-agent is running with state_dir %s: two agents would ship every record "
                         "twice and overwrite each other's offsets; stop it or use another state_dir",
                         self.state_dir)
            return 2
        try:
            return await self._run()
        finally:
            os.close(lock)

    async def _run(self) -> int:
        first_run = not self.registry.path.exists()
        self.registry.load()
        business.METRICS.load(self.state_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if self.config.status_listen not in LISTEN_OFF:
            # aiohttp's server half (~1 MB of RSS) only in an agent that serves the endpoint
            from ccf_agent.ops.server import StatusServer
            self.status_server = StatusServer(self.config.status_listen, self.snapshot, self.taps)
            await self.status_server.start()
        server = self.status_server
        self._up = asyncio.Event()  # set once the first generation's inputs and outputs run
        try:
            # Process-wide tasks live in this group; each generation's tasks in a group of their own.
            async with asyncio.TaskGroup() as tg:
                notifier = tg.create_task(notify.notify_loop(self.snapshot, up=self._up), name="notify")
                try:
                    while True:
                        await self._generation(first_run)
                        first_run = False
                        if self._stop.is_set() or self.exit_code:
                            break
                        self._reload.clear()
                        self._apply_reload()
                finally:
                    notifier.cancel()  # last: the watchdog pings through every drain
        finally:
            if server is not None:
                await server.stop()
            self.registry.save()
            business.METRICS.save_if_dirty(self.state_dir)
        return self.exit_code

    def _apply_reload(self) -> None:
        try:
            new = load_config(self.config.path)
            preflight(new)
        except ConfigError as e:
            self.last_reload_error = str(e)
            log.error("reload rejected, keeping the running config: %s", e)
            self._build(self.config)
            return
        if new.state_dir != self.config.state_dir:
            self.last_reload_error = "state_dir cannot change on reload (restart the service)"
            log.error("reload rejected, keeping the running config: %s", self.last_reload_error)
            self._build(self.config)
            return
        self.reloads += 1
        self.last_reload_error = None
        log.info("reloaded %s: %d inputs, %d outputs, %d routes", new.path, len(new.inputs), len(new.outputs),
                 len(new.routes))
        self._build(new)

    def _reads_ahead(self) -> bool:
        """agent.read_ahead; `auto`: when this process may run on more than one CPU (on one, the
        thread would only add its handoffs)."""
        if self.config.read_ahead is not None:
            return self.config.read_ahead
        return len(os.sched_getaffinity(0)) > 1

    async def _generation(self, first_run: bool) -> None:
        """One config's tasks, from start to a drained stop (shutdown or reload)."""
        projection = self._projection()
        for inp in self.config.inputs:
            pipeline = self.pipelines[inp.id] = Pipeline(inp, self.config.hostname, self.config.processors)
            pipeline.project(projection)
            self.inputs.append(TailInput(inp, self.registry, self.flow, self._dispatcher(inp.id, pipeline),
                                         self.wait_for_room, has_room=self.room_for, first_run=first_run,
                                         scan_spec=pipeline.scan_spec() if self._reads_ahead() else None))
        try:
            async with asyncio.TaskGroup() as tg:
                output_tasks = [tg.create_task(o.run(), name=f"output:{o.name}") for o in self.outputs.values()]
                input_tasks = [tg.create_task(i.run(), name=f"input:{i.cfg.id}") for i in self.inputs]
                others = [tg.create_task(self._flush_registry(), name="registry"),
                          tg.create_task(self.alerts.run(), name="alerts"),
                          tg.create_task(self._tick_alerts(), name="alert-timers")]
                log.info("ccf-agent %s running: %d inputs, %d outputs, state in %s", __version__,
                         len(self.inputs), len(self.outputs), self.state_dir)
                if self._up.is_set():
                    notify.ready("reloaded")  # ends the RELOADING=1 state
                self._up.set()  # the first READY=1 comes from notify_loop
                await self._reload.wait()
                why = "shutting down" if self._stop.is_set() else "reloading"
                if self._stop.is_set():
                    notify.stopping()
                else:
                    notify.reloading()
                log.info("%s: stop reading, deliver what is in flight, save offsets", why)
                for t in input_tasks:
                    t.cancel()
                await asyncio.gather(*input_tasks, return_exceptions=True)
                deadline = asyncio.get_running_loop().time() + self.config.shutdown_timeout
                for o in self.outputs.values():
                    if not await o.drain(deadline):
                        log.warning("output %s: %d records not delivered before the shutdown timeout; "
                                    "they will be read again", o.name, o.queued_docs)
                for t in (*output_tasks, *others):
                    t.cancel()
        except* Exception as eg:
            for e in eg.exceptions:
                log.critical("fatal: %s", e, exc_info=e)
            self.exit_code = 1
        finally:
            self.alerts.close()
            self.registry.save()

    async def _tick_alerts(self) -> None:
        if self.config.alerts is None:
            return
        while True:
            await asyncio.sleep(0.25)
            self.alerts.tick(time.time())

    async def _flush_registry(self) -> None:
        # The files are written and fsynced in a thread: a slow disk must not stall shipping.
        while True:
            await asyncio.sleep(self.config.registry_flush_interval)
            if self.registry.dirty:
                await asyncio.to_thread(self.registry.write, self.registry.snapshot())
            if business.METRICS.dirty:
                await asyncio.to_thread(business.METRICS.write, self.state_dir, business.METRICS.snapshot())

    # ------------------------------------------------------------------ the ops surface's view

    def snapshot(self) -> Snapshot:
        """The parts' counters now, for status, /health, /metrics and systemd's STATUS= line (ops
        renders it and never reads the agent). Cheap: counters, plus an fstat per open file."""
        server = self.status_server
        return Snapshot(
            taken_at=time.time(), pid=os.getpid(), config_path=os.path.abspath(self.config.path),
            started=self.started, state_dir=str(self.state_dir), environment=_environment(self.config),
            records_in=self.records_in, inflight_bytes=self.flow.inflight,
            backpressure_pauses=self.flow.paused_waits, dead_letters=self.dead.count,
            registry_error=self.registry.last_error, reloads=self.reloads, last_reload_error=self.last_reload_error,
            inputs=tuple(self._input_state(i) for i in self.inputs),
            outputs=tuple(_output_state(o) for o in self.outputs.values()),
            routes=tuple(zip(self.router.names, self.router.matched, strict=True)),
            endpoint=None if server is None else EndpointState(server.refused, server.cut, server.malformed),
            alerts=self.alerts.status() if self.config.alerts is not None else None,
            tap=TapState(len(self.taps.clients), self.taps.sent, self.taps.total_dropped()),
        )

    def _input_state(self, i: TailInput) -> InputState:
        pipeline = self.pipelines.get(i.cfg.id)
        return InputState(
            id=i.cfg.id, bytes_read=i.bytes_read, bytes_read_ahead=i.bytes_read_ahead, lost_bytes=i.lost_bytes,
            lost_files=i.lost_files,
            open_files=len(i.readers), malformed=pipeline.malformed if pipeline is not None else 0,
            counters=dict(pipeline.counters) if pipeline is not None else {},
            files=tuple(FileState(**cast(dict[str, Any], f)) for f in i.status()),
        )


def _output_state(o: Output) -> OutputState:
    status, stats = o.status(), o.stats
    return OutputState(
        name=o.name, type=o.cfg.type, healthy=o.healthy, queued_docs=o.queued_docs, queued_bytes=o.queued_bytes,
        in_flight=o.in_flight, docs_acked=stats.docs_acked, docs_retried=stats.docs_retried,
        docs_dead=stats.docs_dead, duplicates=stats.duplicates, requests=stats.requests,
        request_errors=stats.request_errors, docs_per_second_1m=status["docs_per_second_1m"],
        last_error=stats.last_error, last_error_at=stats.last_error_at, last_ok_at=stats.last_ok_at,
        latency_buckets=tuple(stats.latency_buckets), latency_sum=stats.latency_sum,
        details={k: v for k, v in status.items() if k not in COMMON_OUTPUT_KEYS},
    )


def _environment(config: Config) -> str | None:
    """The `environment` field the inputs add to every record (config.example.yaml sets one)."""
    for inp in config.inputs:
        env = inp.fields.get("environment")
        if isinstance(env, str):
            return env
    return None
