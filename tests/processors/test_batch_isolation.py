"""A merged batch never fails a request for another request's content.

The exporter's encoder no longer fails on anything protobuf accepts (tests/exporters/
test_parity.py), so the fault here is injected: an export function that raises for any
batch holding a span named "bad", as a bug met by one client's data would.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.otlp_wire import make_request, make_span
from tracetables.collector.batch import SpanBatch
from tracetables.collector.component import ExportResult
from tracetables.collector.consumer import ConsumeResult
from tracetables.collector.errors import PermanentError, RetryableError
from tracetables.collector.processors.batch import BatchProcessor
from tracetables.collector.processors.config import BatchProcessorConfig


def _batch(name: str, spans: int = 3) -> SpanBatch:
    request = make_request(*(make_span(span_id=bytes([i + 1]) * 8, name=name) for i in range(spans)))
    return SpanBatch(list(request.resource_spans), spans)


async def _run(fault: type[Exception], names: list[str]) -> tuple[list[ConsumeResult | BaseException], list[int]]:
    """Send one request per name at once through one busy writer; returns answers and export sizes."""
    exported: list[int] = []
    gate = asyncio.Event()

    async def export(batch: SpanBatch) -> ExportResult:
        await gate.wait()  # the writer is busy until every request has arrived: they merge
        exported.append(batch.span_count)
        if any(s.name == "bad" for rs in batch.resource_spans for ss in rs.scope_spans for s in ss.spans):
            raise fault("the value 4111 1111 1111 1111 broke the encoder")
        return ExportResult()

    processor = BatchProcessor(BatchProcessorConfig(), export, writers=1)
    first = asyncio.create_task(processor.consume(_batch("warm-up")))
    await asyncio.sleep(0)  # the warm-up request takes the only writer
    rest = [asyncio.create_task(processor.consume(_batch(n))) for n in names]
    await asyncio.sleep(0.01)
    gate.set()
    answers = await asyncio.gather(first, *rest, return_exceptions=True)
    await processor.shutdown()
    return list(answers[1:]), exported


@pytest.mark.parametrize("fault", [ValueError, RuntimeError, PermanentError])
def test_one_requests_failure_is_its_own(fault: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    """The bad request alone is refused (as permanent: 400 / INVALID_ARGUMENT); the others are stored."""
    caplog.set_level(logging.INFO)
    answers, exported = asyncio.run(_run(fault, ["good1", "bad", "good2", "good3"]))
    assert isinstance(answers[1], PermanentError)
    assert [a for i, a in enumerate(answers) if i != 1] == [ConsumeResult()] * 3
    assert exported[0] == 3 and exported[1] == 12  # warm-up alone, then the four merged
    assert sorted(exported[2:]) == [3, 3, 3, 3]  # then each alone
    assert "4111" not in caplog.text  # the log names sizes and the error's type, never content
    if fault is not PermanentError:
        assert "could not be stored: " + fault.__name__ in caplog.text


def test_a_store_outage_fails_every_request_retryably() -> None:
    """A RetryableError is about the store: every merged request gets it (503 / UNAVAILABLE), no split."""
    answers, exported = asyncio.run(_run(RetryableError, ["bad", "good"]))
    assert all(isinstance(a, RetryableError) for a in answers)
    assert exported == [3, 6]
