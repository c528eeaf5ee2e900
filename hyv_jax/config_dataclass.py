"""Model configs are frozen dataclasses built from ml_collections sections."""

import dataclasses
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], values: Mapping, what: str) -> T:
    """`cls(**values)`, failing on unknown keys with the list of valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} config keys {unknown}; valid keys: {sorted(known)}")
    return cls(**dict(values))
