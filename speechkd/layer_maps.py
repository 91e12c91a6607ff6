"""Which teacher layers initialise (and supervise) the layers of a layer-pruned student.

A student with ``n_student`` layers is initialised by copying ``n_student`` *maximally spaced*
layers of an ``n_teacher``-layer teacher (Shleifer & Rush 2020, "Pre-trained Summarization
Distillation"; the joint speech/text ST KD recipe applies it to the speech encoder, the text
encoder and the decoder). :func:`layer_map` resolves, in this order:

1. the maps the ST KD paper states for its 12-layer teacher: 12→6 ``{0, 2, 4, 7, 9, 11}``,
   12→8 ``{0, 2, 3, 5, 6, 8, 9, 11}``, 12→2 ``{0, 11}`` (:data:`PAPER_LAYER_MAPS`; 12→2 keeps the
   last layer, where the distill-bart table copies ``[0, 6]``);
2. the published distill-bart table ``LAYERS_TO_COPY`` for 12- (BART), 16- (Pegasus) and
   6-layer (Marian) teachers (:data:`DISTILL_BART_LAYERS_TO_COPY`);
3. otherwise evenly spaced layers that keep the first and the last one:
   ``floor(i·(n_teacher − 1)/(n_student − 1) + 1/2)`` for ``i = 0 … n_student − 1`` (rounding
   halves up) when ``n_student ≥ 2``, and ``[0]`` (the first layer, as in the table) when
   ``n_student == 1``. Since the step is ≥ 1 the result is strictly increasing, starts at 0 and
   ends at ``n_teacher − 1``; it reproduces all three paper maps.

``n_student == n_teacher`` is always the identity; ``n_student > n_teacher``, non-positive or
non-integer sizes raise :class:`~speechkd.errors.ConfigError`.
"""

from __future__ import annotations

from speechkd.errors import ConfigError

PAPER_LAYER_MAPS: dict[int, dict[int, tuple[int, ...]]] = {
    12: {
        2: (0, 11),
        6: (0, 2, 4, 7, 9, 11),
        8: (0, 2, 3, 5, 6, 8, 9, 11),
    },
}
"""Teacher depth → student depth → teacher layers, as stated in the joint ST KD paper (§2.2)."""

DISTILL_BART_LAYERS_TO_COPY: dict[int, dict[int, tuple[int, ...]]] = {
    12: {
        1: (0,),
        2: (0, 6),
        3: (0, 6, 11),
        4: (0, 4, 8, 11),
        6: (0, 2, 4, 7, 9, 11),
        9: (0, 1, 2, 4, 5, 7, 9, 10, 11),
        12: tuple(range(12)),
    },
    16: {
        1: (0,),
        2: (0, 15),
        3: (0, 8, 15),
        4: (0, 5, 10, 15),
        6: (0, 3, 6, 9, 12, 15),
        8: (0, 2, 4, 6, 8, 10, 12, 15),
        9: (0, 1, 3, 5, 7, 9, 11, 13, 15),
        12: (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 15),
        16: tuple(range(16)),
    },
    6: {1: (0,), 2: (0, 5), 3: (0, 2, 5), 4: (0, 1, 3, 5), 6: tuple(range(6))},
}
"""``LAYERS_TO_COPY`` of transformers' seq2seq-distillation example (Shleifer & Rush 2020)."""


def _check_sizes(n_teacher: int, n_student: int) -> None:
    for name, value in (("n_teacher", n_teacher), ("n_student", n_student)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an int, got {value!r}")
        if value <= 0:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if n_student > n_teacher:
        raise ConfigError(
            f"n_student={n_student} exceeds n_teacher={n_teacher}: a student cannot copy more "
            "layers than the teacher has"
        )


def evenly_spaced_layers(n_teacher: int, n_student: int) -> list[int]:
    """The general rule alone (no table look-up): see the module docstring, rule 3."""
    _check_sizes(n_teacher, n_student)
    if n_student == 1:
        return [0]
    # integer arithmetic: floor(i*(n_t-1)/(n_s-1) + 1/2) == (2*i*(n_t-1) + (n_s-1)) // (2*(n_s-1))
    span, steps = n_teacher - 1, n_student - 1
    return [(2 * i * span + steps) // (2 * steps) for i in range(n_student)]


def layer_map(n_teacher: int, n_student: int) -> list[int]:
    """The teacher layers (0-based, increasing) that initialise student layers 0 … n_student − 1.

    Paper maps first, then the distill-bart table, then :func:`evenly_spaced_layers`.
    """
    _check_sizes(n_teacher, n_student)
    if n_student == n_teacher:
        return list(range(n_teacher))
    for table in (PAPER_LAYER_MAPS, DISTILL_BART_LAYERS_TO_COPY):
        layers = table.get(n_teacher, {}).get(n_student)
        if layers is not None:
            return list(layers)
    return evenly_spaced_layers(n_teacher, n_student)


def supervision_map(n_teacher: int, n_student: int) -> list[int]:
    """The teacher layer each student layer is compared with in feature / relation KD.

    Student layer ``l`` is compared with the teacher layer it was copied from, so this is
    :func:`layer_map` (unlike distill-bart's ``LAYERS_TO_SUPERVISE``, which pairs students with
    later teacher layers).
    """
    return layer_map(n_teacher, n_student)
