"""The one registry type behind models, segmenter parts, detectors and data-source adapters."""

from dataclasses import dataclass

import pytest

from chestlens.errors import ChestlensInputError
from chestlens.registry import Registry


@dataclass(frozen=True)
class Entry:
    name: str
    value: int = 0


def test_lookup_names_and_order():
    registry = Registry("widget", [Entry("b", 1), Entry("a", 2)])
    assert registry.get("a").value == 2
    assert registry.names() == ["a", "b"]  # sorted for messages and help
    assert [e.name for e in registry.values()] == ["b", "a"]  # registration order
    assert "a" in registry and "c" not in registry and len(registry) == 2


def test_unknown_name_is_one_line_listing_the_known_ones():
    with pytest.raises(ChestlensInputError, match=r"unknown widget 'c'; known: a, b") as error:
        Registry("widget", [Entry("a"), Entry("b")]).get("c")
    assert "\n" not in str(error.value)


def test_same_entry_twice_is_fine_a_different_one_is_refused():
    entry = Entry("a")
    registry = Registry("widget", [entry])
    assert registry.register(entry) is entry
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Entry("a", 1))


def test_every_built_in_registry_is_one():
    from chestlens.data.registry import _REGISTRY, adapters
    from chestlens.models.detection import DETECTORS
    from chestlens.models.registry import MODELS
    from chestlens.models.segmentation import ARCHITECTURES, ENCODERS

    assert adapters()  # loads the built-in adapters
    for registry in (MODELS, ARCHITECTURES, ENCODERS, DETECTORS, _REGISTRY):
        assert isinstance(registry, Registry) and len(registry) > 0
        name = registry.names()[0]
        assert registry.get(name).name == name
