"""Test helper: validate an Adaptive Card against Microsoft's 1.5 schema and Teams' size limit."""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Dict, List

import jsonschema
from jsonschema.exceptions import best_match

from shared.teams.cards import MAX_MESSAGE_BYTES, message_size
from shared.teams.routing import iter_elements

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "adaptive-card-1.5.schema.json")


@functools.lru_cache(maxsize=1)
def validator() -> jsonschema.Draft6Validator:
    """A Draft 6 validator for the official Adaptive Card 1.5 schema (microsoft/AdaptiveCards, MIT)."""
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft6Validator.check_schema(schema)
    return jsonschema.Draft6Validator(schema)


def input_ids(card: Dict[str, Any]) -> List[str]:
    """Ids of every Input.* element in ``card``, in document order (duplicates kept)."""
    return [e.get("id") for e in iter_elements(card) if str(e.get("type", "")).startswith("Input.")]


def as_published_schema(card: Dict[str, Any]) -> Dict[str, Any]:
    """``card`` as the published 1.5 schema knows it: ``Input.ChoiceSet`` ``"style": "filtered"`` (Teams'
    static typeahead, msteams-docs task-modules-and-cards/cards/dynamic-search.md; in the renderer since
    adaptivecards 2.x, in the schema only from 1.6) becomes ``compact``, which is what a host that does not
    know it falls back to. Nothing else is changed."""
    copy = json.loads(json.dumps(card))
    for element in iter_elements(copy):
        if element.get("type") == "Input.ChoiceSet" and element.get("style") == "filtered":
            element["style"] = "compact"
    return copy


def assert_valid_card(card: Dict[str, Any]) -> None:
    """Fail (AssertionError) unless ``card`` is a valid top-level 1.5 card that fits in one Teams message."""
    error = best_match(validator().iter_errors(as_published_schema(card)))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise AssertionError(f"card does not match the Adaptive Card 1.5 schema at {where}: {error.message}")
    assert card.get("type") == "AdaptiveCard" and card.get("version") == "1.5", "top-level card must be an AdaptiveCard of version 1.5"
    assert card.get("$schema") == "http://adaptivecards.io/schemas/adaptive-card.json", "missing or wrong $schema"
    ids = input_ids(card)
    assert len(ids) == len(set(ids)), f"duplicate input ids: {ids}"
    size = message_size(card)
    assert size <= MAX_MESSAGE_BYTES, f"Teams message is {size} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
