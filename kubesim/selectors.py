"""Label and field selectors for kubesim: the shared parser (``kube.selectors``), with
its errors answered as ``400 BadRequest`` Status objects as kube-apiserver does."""

from __future__ import annotations

from kube.selectors import (
    EVERYTHING,
    NO_FIELDS,
    FieldSelector,
    LabelSelector,
    SelectorError,
    field_values,
)
from kube.selectors import parse_field_selector as _parse_fields
from kube.selectors import parse_label_selector as _parse_labels
from kubesim.errors import bad_request

Selector = LabelSelector | FieldSelector
extract_fields = field_values


def parse_label_selector(text: str | None) -> LabelSelector:
    try:
        return _parse_labels(text)
    except SelectorError as exc:
        raise bad_request(str(exc)) from exc


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    try:
        return _parse_fields(text, kind)
    except SelectorError as exc:
        raise bad_request(str(exc)) from exc


__all__ = ["EVERYTHING", "NO_FIELDS", "Selector", "extract_fields", "parse_field_selector",
           "parse_label_selector"]
