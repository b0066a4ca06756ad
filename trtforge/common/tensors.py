"""One input or output of a model: name, numpy dtype name, shape with named dynamic dimensions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: a dimension: int (static), str (named dynamic dimension) or None (unknown)
Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, numpy dtype name, shape (str = named dynamic dim, None = unknown)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        """Axes whose size is not fixed by the model."""
        return tuple(i for i, d in enumerate(self.shape) if not (isinstance(d, int) and d > 0))
