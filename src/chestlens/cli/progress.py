"""Progress of a long CT series on the terminal: the screener's slice callback as a tqdm bar."""

from __future__ import annotations

from types import TracebackType

from tqdm import tqdm


class SliceBar:
    """A :data:`~chestlens.pipeline.stages.SliceProgress` callback drawn as a tqdm bar on stderr.

    One pass per stage of each series (``lungs``, ``classify``, ``lesions``), from 0 to the stage's slice
    count; the bar is created on the first call, so screening radiographs never shows it. ``disable``
    (the CLI's ``-q``): never drawn. Use as a context manager, which closes the bar.
    """

    def __init__(self, *, disable: bool) -> None:
        self.disable = disable
        self.bar: tqdm | None = None
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.disable:
            return
        description = f"CT series: {stage}"
        if self.bar is None:
            self.bar = tqdm(total=total, desc=description, unit="slice", leave=False, dynamic_ncols=True)
        elif stage != self.stage or done < self.bar.n or total != self.bar.total:
            self.bar.reset(total=total)
            self.bar.set_description(description)
        self.stage = stage
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> SliceBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.close()
