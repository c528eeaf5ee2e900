"""ml_collections configs, and loading one from a path with `key=value` overrides."""

import ast
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import ml_collections

CONFIG_DIR = Path(__file__).parent


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Runs `get_config()` of a config file, then applies overrides such as
    `transformer.hidden_size=64` (values parsed as Python literals, else kept as strings)."""
    path = Path(path)
    if not path.exists() and (CONFIG_DIR / path.name).exists():
        path = CONFIG_DIR / path.name
    if not path.exists():
        raise FileNotFoundError(f"config {path} does not exist; configs live in {CONFIG_DIR}")
    if path.suffix != ".py":
        raise ValueError(f"config {path} is not a Python file; pass one of {CONFIG_DIR}/*.py")
    spec = importlib.util.spec_from_file_location(f"hyv_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(f"{path} is not a config file (it defines no get_config()); pass one of {CONFIG_DIR}/*.py")
    config = module.get_config()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"config override {item!r} must look like key.path=value")
        _set(config, key, raw)
    return config


def _set(config: ml_collections.ConfigDict, dotted: str, raw: str) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
        if name not in node:
            raise KeyError(f"unknown config key {dotted!r}: {name!r} is not one of {sorted(node.keys())}")
        node = node[name]
    if leaf not in node:
        raise KeyError(f"unknown config key {dotted!r}: {leaf!r} is not one of {sorted(node.keys())}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if isinstance(node[leaf], tuple) and isinstance(value, list):
        value = tuple(value)
    try:
        node[leaf] = value
    except TypeError:  # ml_collections keeps each field's type
        kind = type(node[leaf]).__name__
        raise ValueError(f"config override {dotted}={raw}: {raw!r} is not {'an' if kind[0] in 'aeiou' else 'a'} {kind} "
                         f"(the default is {node[leaf]!r})") from None
