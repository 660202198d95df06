"""Overload by time: a request is refused at once when the queue ahead would take too long to write.

The writer here is a stand-in that commits at most 2,000 spans a second (it sleeps 50 ms per
100-span batch; a loaded machine only makes it slower). With a 0.2-s budget, at most about
400 queued spans are admitted ahead of a request, so a burst of 30 requests must see
refusals; with the check off (0) none is refused. Nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.otlp_wire import make_request, make_span
from tracetables.collector.batch import SpanBatch
from tracetables.collector.component import ExportResult
from tracetables.collector.consumer import ConsumeResult
from tracetables.collector.errors import OverloadedError
from tracetables.collector.processors.batch import BatchProcessor
from tracetables.collector.processors.config import BatchProcessorConfig


def _batch(n: int) -> SpanBatch:
    request = make_request(*(make_span(span_id=(i + 1).to_bytes(8, "big"), name=f"r{n}") for i in range(100)))
    return SpanBatch(list(request.resource_spans), 100)


async def _burst(max_queue_wait: timedelta) -> tuple[list[ConsumeResult | BaseException], int]:
    committed = 0

    async def export(batch: SpanBatch) -> ExportResult:
        nonlocal committed
        await asyncio.sleep(0.05 * batch.span_count / 100)
        committed += batch.span_count
        return ExportResult()

    config = BatchProcessorConfig(
        send_batch_size=100, send_batch_max_size=100, timeout=timedelta(milliseconds=1), max_queue_wait=max_queue_wait
    )
    processor = BatchProcessor(config, export, writers=1)
    for n in range(3):  # the rate is learnt from exports of full batches
        await processor.consume(_batch(n))
    answers = await asyncio.gather(*(processor.consume(_batch(n)) for n in range(3, 33)), return_exceptions=True)
    await processor.shutdown()
    return list(answers), committed


def test_a_burst_past_the_budget_is_refused_at_once_and_the_rest_stored() -> None:
    answers, committed = asyncio.run(_burst(timedelta(milliseconds=200)))
    refused = [a for a in answers if isinstance(a, OverloadedError)]
    accepted = [a for a in answers if isinstance(a, ConsumeResult)]
    assert len(refused) + len(accepted) == len(answers)  # nothing else: no other failure
    assert refused, "30 requests behind a 2,000-spans/s writer fit a 0.2-s budget"
    assert len(accepted) <= 10  # about 400 spans fit the budget; 10 is generous
    assert all(r.retry_after >= 1.0 and "s to write" in str(r) for r in refused)
    assert committed == 300 + 100 * len(accepted)  # every acknowledged span written


def test_with_the_check_off_the_burst_waits_instead() -> None:
    answers, committed = asyncio.run(_burst(timedelta(0)))
    assert all(isinstance(a, ConsumeResult) for a in answers)
    assert committed == 3300


@pytest.mark.parametrize("value", ["-1s"])
def test_a_negative_budget_is_a_config_error(value: str) -> None:
    from tracetables.collector.config import parse_config
    from tracetables.collector.errors import ConfigError

    text = (
        "receivers:\n  otlp:\n    protocols:\n      http: {endpoint: 127.0.0.1:0}\n"
        f"processors:\n  batch: {{max_queue_wait: {value}}}\n"
        "exporters:\n  debug: {}\n"
        "service:\n  pipelines:\n    traces: {receivers: [otlp], processors: [batch], exporters: [debug]}\n"
    )
    with pytest.raises(ConfigError, match=r"processors\.batch\.max_queue_wait"):
        parse_config(text, {})
