"""The samplers in a child process of their own, so scraping never takes the load generator's GIL.

Parsing vLLM's /metrics page (about 53 KB) takes milliseconds of pure Python; on a thread of the load
generator's process each parse stalled its event loop and flagged every point client-limited
(benchmarks/sampler/RESULTS.md). `SamplerProcess` has the samplers' interface (`begin`, `end`, `rows`,
a context manager) and runs the real ones in a spawned child: commands and rows travel over a Pipe, and
rows come back only at `end()`, when no load is running, so nothing crosses while a point is measured.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from servesweep.metrics.sampler import PeriodicSampler

SamplerKind = Literal["prometheus", "gpu"]
_NICE = 10  # the child yields the CPU to the load generator when both want it (a late scrape costs nothing)


@dataclass(frozen=True)
class SamplerConfig:
    """What the child builds: a Prometheus scraper of `url`, or an NVML reader (picklable)."""

    kind: SamplerKind
    deployment_id: str
    interval_s: float
    url: str = ""
    prefixes: tuple[str, ...] = ("vllm:",)


@dataclass
class _Reply:
    rows: list[dict[str, Any]] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    error: str | None = None


# What the parent sends the child: ("begin", point_id), ("end", None) or ("stop", None).
_Command = tuple[Literal["begin"], str] | tuple[Literal["end", "stop"], None]
# The child's end of the pipe: it receives commands and sends replies.
_ChildEnd: TypeAlias = "Connection[_Reply, _Command]"


class SamplerError(RuntimeError):
    """The sampler process failed or stopped answering."""


class SamplerProcess:
    """The samplers of `configs`, running in a spawned child process for the life of the context."""

    def __init__(self, configs: list[SamplerConfig], reply_timeout_s: float = 60.0) -> None:
        self.configs = list(configs)
        self.rows: list[dict[str, Any]] = []
        self.unavailable: list[str] = []  # samplers that could not start, and why (e.g. no NVML)
        self._timeout = reply_timeout_s
        self._pipe: Any = None
        self._process: Any = None

    def __enter__(self) -> SamplerProcess:
        if not self.configs:
            return self
        context = multiprocessing.get_context("spawn")  # no fork: the parent holds threads and sockets
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(target=_child_main, args=(self.configs, child_end), daemon=True,
                                        name="servesweep-samplers")
        self._process.start()
        child_end.close()
        self.unavailable = self._call(None).unavailable
        return self

    def begin(self, point_id: str) -> None:
        """Tag the samples from now on with `point_id`, after one sample of the state before it."""
        if self._pipe is not None:
            self.rows.extend(self._call(("begin", point_id)).rows)  # those since the last point ended

    def end(self) -> None:
        """One sample of the state after the point; the point's rows (and any since) join `rows`."""
        if self._pipe is not None:
            self.rows.extend(self._call(("end", None)).rows)

    def __exit__(self, *exc: object) -> None:
        if self._pipe is None:
            return
        try:
            self.rows.extend(self._call(("stop", None)).rows)
        finally:
            self._pipe.close()
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
            self._pipe = None

    def _call(self, command: _Command | None) -> _Reply:
        """Send `command` (None: only wait for the start-up reply) and wait for the child's answer."""
        if command is not None:
            self._pipe.send(command)
        if not self._pipe.poll(self._timeout):
            raise SamplerError(f"sampler process gave no answer in {self._timeout:g} s")
        try:
            reply: _Reply = self._pipe.recv()
        except EOFError:
            raise SamplerError(f"sampler process exited (code {self._process.exitcode})") from None
        if reply.error is not None:
            raise SamplerError(f"sampler process: {reply.error}")
        return reply


def build_sampler(config: SamplerConfig) -> PeriodicSampler:
    """The sampler a config names (raises GpuUnavailable when NVML is not there)."""
    if config.kind == "gpu":
        from servesweep.metrics.gpu import GpuSampler

        return GpuSampler(config.deployment_id, config.interval_s)
    from servesweep.metrics.prometheus import MetricsSampler

    return MetricsSampler(config.url, config.deployment_id, config.interval_s, prefixes=config.prefixes)


def _child_main(configs: list[SamplerConfig], pipe: _ChildEnd) -> None:
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    try:
        _serve(configs, pipe)
    except Exception as error:  # reported to the parent, which raises it
        pipe.send(_Reply(error=repr(error)[:1000]))


def _serve(configs: list[SamplerConfig], pipe: _ChildEnd) -> None:
    from servesweep.metrics.gpu import GpuUnavailable

    samplers: list[PeriodicSampler] = []
    unavailable: list[str] = []
    for config in configs:
        try:
            samplers.append(build_sampler(config))
        except GpuUnavailable as error:
            unavailable.append(f"{config.kind} sampler for {config.deployment_id}: {error}")
    for sampler in samplers:
        sampler.__enter__()
    sent = [0] * len(samplers)  # rows of each sampler already sent to the parent
    running = True
    pipe.send(_Reply(unavailable=unavailable))
    try:
        while running:
            command = pipe.recv()
            if command[0] == "begin":  # the tag narrows the command: it carries the point's id
                for sampler in samplers:
                    sampler.begin(command[1])
            elif command[0] == "end":
                for sampler in samplers:
                    sampler.end()
            else:
                running = False
                _stop(samplers)  # joins the threads, so their last rows are in before the drain
            pipe.send(_Reply(rows=_drain(samplers, sent)))
    except EOFError:  # the parent went away: stop sampling
        pass
    finally:
        if running:
            _stop(samplers)


def _stop(samplers: list[PeriodicSampler]) -> None:
    for sampler in samplers:
        sampler.__exit__(None, None, None)


def _drain(samplers: list[PeriodicSampler], sent: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for index, sampler in enumerate(samplers):
        total = len(sampler.rows)
        rows.extend(sampler.rows[sent[index]:total])
        sent[index] = total
    return rows
