"""``np.einsum``'s subscripts read into labels: what each operand axis and each output axis is called.

Both of NumPy's spellings are read: the string (``"ij,jk->ik"``, ``"...ij,...jk"``, implicit
output when there is no ``->``) and the interleaved operand/sublist form
(``np.einsum(a, [0, 1], b, [1, 2], [0, 2])``). A label is an int: a letter is its place in
``LETTERS`` (NumPy's order: ``A``-``Z`` then ``a``-``z``, so a sublist's ``k`` is ``LETTERS[k]``
and an implicit output sorts the same way), and the axes an ellipsis stands for are labelled
``ELLIPSIS + j``, ``j`` counted from the right, so that ellipses of different ranks broadcast as
NumPy aligns them. Nothing here knows of traced values: it reads strings, lists and shapes.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from chainrule.errors import ShapeError

LETTERS = string.ascii_uppercase + string.ascii_lowercase
ELLIPSIS = len(LETTERS)  # the label of an ellipsis' last axis; the one before is ELLIPSIS + 1, ...


@dataclass(frozen=True)
class Subscripts:
    """The labels of every operand's axes and of the output's, and each label's size.

    A label of size 1 on one operand and ``n`` on another broadcasts, as in NumPy; ``sizes``
    holds the broadcast size."""

    inputs: tuple[tuple[int, ...], ...]
    output: tuple[int, ...]
    sizes: dict[int, int]


def split_operands(args: tuple) -> tuple[list, list, list | None]:
    """``np.einsum``'s positional arguments as (operands, input terms, output term or None).

    A term is a list of labels, with ``...`` (Python's Ellipsis) where the subscripts have one."""
    if not args:
        raise ShapeError("np.einsum needs subscripts and at least one operand")
    if isinstance(args[0], str):
        text = args[0].replace(" ", "")
        inputs_text, arrow, output_text = text.partition("->")
        if "->" in output_text:
            raise ShapeError(f"np.einsum subscripts {args[0]!r}: '->' must appear once, between inputs and output")
        terms = [_term_of_text(term) for term in inputs_text.split(",")]
        output = _term_of_text(output_text) if arrow else None
        operands = list(args[1:])
    else:  # operand, sublist, operand, sublist, ..., [output sublist]
        operands = list(args[0::2])
        terms = [_term_of_sublist(sublist) for sublist in args[1::2]]
        output = _term_of_sublist(operands.pop()) if len(args) % 2 else None
    if len(terms) != len(operands):
        raise ShapeError(f"np.einsum subscripts name {len(terms)} operands, but {len(operands)} were given")
    return operands, terms, output


def _term_of_text(text: str) -> list:
    """The labels of one comma-separated term of a subscripts string."""
    term: list = []
    rest = text
    while rest:
        if rest.startswith("..."):
            term.append(Ellipsis)
            rest = rest[3:]
            continue
        if rest[0] not in LETTERS:
            raise ShapeError(f"np.einsum subscripts may hold only letters and '...', got {rest[0]!r} in {text!r}")
        term.append(LETTERS.index(rest[0]))
        rest = rest[1:]
    return term


def _term_of_sublist(sublist) -> list:
    term: list = []
    for item in sublist:
        if item is Ellipsis:
            term.append(Ellipsis)
        elif isinstance(item, (int, np.integer)) and 0 <= item < len(LETTERS):
            term.append(int(item))
        else:
            raise ShapeError(f"np.einsum sublist labels are ints in [0, {len(LETTERS)}) or Ellipsis, got {item!r}")
    return term


def label_text(label: int) -> str:
    """How the user wrote ``label``: its letter, or ``...`` for an axis of an ellipsis."""
    return LETTERS[label] if label < ELLIPSIS else "..."


def read_subscripts(terms: list, output: list | None, shapes: list[tuple[int, ...]]) -> Subscripts:
    """The labels of each operand axis and of the output, checked against the operands' shapes."""
    inputs = tuple(_labels_of_term(term, shape, k) for k, (term, shape) in enumerate(zip(terms, shapes)))
    broadcast_rank = max(
        (len(shape) - len(term) + 1 for term, shape in zip(terms, shapes) if Ellipsis in term), default=0
    )
    ellipsis_labels = tuple(ELLIPSIS + j for j in reversed(range(broadcast_rank)))
    if output is None:  # implicit: the broadcast axes, then the letters used once, sorted
        used = [label for labels in inputs for label in labels if label < ELLIPSIS]
        output_labels = ellipsis_labels + tuple(sorted(label for label in set(used) if used.count(label) == 1))
    else:
        output_labels = _output_labels(output, ellipsis_labels, set().union(*inputs))
    return Subscripts(inputs, output_labels, _label_sizes(inputs, shapes))


def _labels_of_term(term: list, shape: tuple[int, ...], operand: int) -> tuple[int, ...]:
    if term.count(Ellipsis) > 1:
        raise ShapeError(f"np.einsum: the subscripts of operand {operand} have more than one '...'")
    if Ellipsis not in term:
        if len(term) != len(shape):
            raise ShapeError(
                f"np.einsum: operand {operand} has {len(shape)} axes (shape {list(shape)}) "
                f"but its subscripts name {len(term)}"
            )
        return tuple(term)
    at = term.index(Ellipsis)
    broadcast_rank = len(shape) - (len(term) - 1)
    if broadcast_rank < 0:
        raise ShapeError(
            f"np.einsum: operand {operand} has {len(shape)} axes (shape {list(shape)}) "
            f"but its subscripts name {len(term) - 1} besides '...'"
        )
    return tuple(term[:at]) + tuple(ELLIPSIS + j for j in reversed(range(broadcast_rank))) + tuple(term[at + 1 :])


def _output_labels(output: list, ellipsis_labels: tuple, input_labels: set) -> tuple[int, ...]:
    if output.count(Ellipsis) > 1:
        raise ShapeError("np.einsum: the output subscripts have more than one '...'")
    if Ellipsis not in output and ellipsis_labels:
        raise ShapeError(
            "np.einsum: the operands' '...' stands for axes the output does not name; "
            "put '...' in the output subscripts (or sum those axes away first)"
        )
    at = output.index(Ellipsis) if Ellipsis in output else len(output)
    labels = tuple(output[:at]) + ellipsis_labels + tuple(output[at + 1 :])
    for label in labels:
        if labels.count(label) > 1:
            raise ShapeError(f"np.einsum: output subscript {label_text(label)!r} appears more than once")
        if label not in input_labels:
            raise ShapeError(f"np.einsum: output subscript {label_text(label)!r} names no input axis")
    return labels


def _label_sizes(inputs: tuple, shapes: list) -> dict[int, int]:
    """Each label's size: equal on every axis it labels, except that 1 broadcasts (across operands)."""
    sizes: dict[int, int] = {}
    for operand, (labels, shape) in enumerate(zip(inputs, shapes)):
        for axis, (label, size) in enumerate(zip(labels, shape)):
            first = labels.index(label)
            if first != axis and shape[first] != size:
                raise ShapeError(
                    f"np.einsum: subscript {label_text(label)!r} is repeated in operand {operand} "
                    f"on axes of sizes {shape[first]} and {size}; a diagonal needs equal sizes"
                )
            known = sizes.get(label, 1)
            if size != known and 1 not in (size, known):
                raise ShapeError(
                    f"np.einsum: subscript {label_text(label)!r} has size {size} in operand {operand} "
                    f"(shape {list(shape)}) but {known} elsewhere"
                )
            sizes[label] = size if known == 1 else known
    return sizes
