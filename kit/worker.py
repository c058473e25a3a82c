"""A wakeable background loop: the shape of every relay, sender, indexer and scheduler in the platform."""

import asyncio
import contextlib
import logging

log = logging.getLogger("minsheng.worker")


class BackgroundWorker:
    """Runs `run_round()` whenever woken, and at least every `poll_seconds`, until stopped.

    A failing round is logged and retried after `retry_seconds`; cancelling stops the loop. Subclasses
    implement `run_round` and `poll_seconds`, and may extend `stop` to hand work back.
    """

    worker_name = "worker"
    retry_seconds = 1.0

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def poll_seconds(self) -> float:
        """The longest wait between two rounds."""
        raise NotImplementedError

    async def run_round(self) -> None:
        """One round of work."""
        raise NotImplementedError

    def wake(self) -> None:
        """Run a round now."""
        self._wake.set()

    def start(self) -> None:
        """Start the loop as a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.worker_name)

    async def stop(self) -> None:
        """Stop the loop (waits for the current round to be cancelled)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                self._wake.clear()
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s round failed; retrying", self.worker_name)
                await asyncio.sleep(self.retry_seconds)
