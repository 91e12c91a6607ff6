"""Teacher → student layer maps for layer-pruned students."""

from __future__ import annotations

import pytest

import speechkd
from speechkd.errors import ConfigError
from speechkd.layer_maps import (
    DISTILL_BART_LAYERS_TO_COPY,
    PAPER_LAYER_MAPS,
    evenly_spaced_layers,
    layer_map,
    supervision_map,
)


@pytest.mark.parametrize(
    ("n_student", "expected"),
    [
        (6, [0, 2, 4, 7, 9, 11]),
        (8, [0, 2, 3, 5, 6, 8, 9, 11]),
        (2, [0, 11]),
    ],
)
def test_the_papers_maps_from_a_12_layer_teacher(n_student, expected):
    assert speechkd.layer_map(12, n_student) == expected
    assert PAPER_LAYER_MAPS[12][n_student] == tuple(expected)


@pytest.mark.parametrize(
    ("n_teacher", "n_student", "expected"),
    [
        (12, 1, [0]),
        (12, 3, [0, 6, 11]),
        (12, 4, [0, 4, 8, 11]),
        (12, 9, [0, 1, 2, 4, 5, 7, 9, 10, 11]),
        (16, 1, [0]),
        (16, 2, [0, 15]),
        (16, 3, [0, 8, 15]),
        (16, 4, [0, 5, 10, 15]),
        (16, 6, [0, 3, 6, 9, 12, 15]),
        (16, 8, [0, 2, 4, 6, 8, 10, 12, 15]),
        (16, 9, [0, 1, 3, 5, 7, 9, 11, 13, 15]),
        (16, 12, [0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 15]),
        (6, 1, [0]),
        (6, 2, [0, 5]),
        (6, 3, [0, 2, 5]),
        (6, 4, [0, 1, 3, 5]),
    ],
)
def test_distill_bart_table_entries(n_teacher, n_student, expected):
    assert layer_map(n_teacher, n_student) == expected


def test_paper_maps_take_precedence_over_the_table():
    # distill-bart copies [0, 6] for 12 -> 2; the ST KD paper keeps the last layer
    assert DISTILL_BART_LAYERS_TO_COPY[12][2] == (0, 6)
    assert layer_map(12, 2) == [0, 11]


def test_general_rule_reproduces_the_paper_maps_and_is_not_used_for_table_entries():
    for n_student, layers in PAPER_LAYER_MAPS[12].items():
        assert evenly_spaced_layers(12, n_student) == list(layers)
    assert evenly_spaced_layers(12, 4) == [0, 4, 7, 11]  # round(11/3)=4, round(22/3)=7
    assert layer_map(12, 4) == [0, 4, 8, 11]  # table entry wins
    assert layer_map(24, 4) == [0, 8, 15, 23]  # no entry: general rule (7.67 -> 8, 15.33 -> 15)
    assert layer_map(9, 3) == [0, 4, 8]
    assert layer_map(5, 4) == [0, 1, 3, 4]  # 4/3 -> 1, 8/3 -> 3
    assert layer_map(3, 2) == [0, 2]
    assert layer_map(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced_layers(4, 3) == [0, 2, 3]  # 1.5 rounds half up to 2


@pytest.mark.parametrize("n_teacher", [1, 2, 3, 5, 6, 7, 9, 12, 16, 24, 25, 48])
def test_general_rule_properties_for_every_student_size(n_teacher):
    for n_student in range(1, n_teacher + 1):
        for layers in (layer_map(n_teacher, n_student), evenly_spaced_layers(n_teacher, n_student)):
            assert len(layers) == n_student
            assert all(a < b for a, b in zip(layers, layers[1:], strict=False))
            assert layers[0] == 0
            assert all(0 <= i < n_teacher for i in layers)
            if n_student >= 2:
                assert layers[-1] == n_teacher - 1
        if n_student >= 2:
            # maximally spaced: gaps differ by at most one layer
            gaps = [
                b - a
                for a, b in zip(
                    evenly_spaced_layers(n_teacher, n_student),
                    evenly_spaced_layers(n_teacher, n_student)[1:],
                    strict=False,
                )
            ]
            assert max(gaps) - min(gaps) <= 1


@pytest.mark.parametrize("n", [1, 2, 6, 7, 12, 16, 24])
def test_equal_depth_is_the_identity(n):
    assert layer_map(n, n) == list(range(n))


def test_supervision_map_pairs_each_student_layer_with_its_source_layer():
    for n_teacher, n_student in [(12, 6), (12, 8), (12, 2), (16, 12), (24, 12), (7, 3)]:
        assert supervision_map(n_teacher, n_student) == layer_map(n_teacher, n_student)
    assert speechkd.supervision_map(12, 6) == [0, 2, 4, 7, 9, 11]


def test_returned_lists_are_fresh_copies():
    first = layer_map(12, 6)
    first[0] = 99
    assert layer_map(12, 6)[0] == 0


@pytest.mark.parametrize(
    ("n_teacher", "n_student", "fragment"),
    [
        (12, 13, "exceeds"),
        (12, 0, "n_student"),
        (12, -1, "n_student"),
        (0, 0, "n_teacher"),
        (12.0, 6, "n_teacher"),
        (12, True, "n_student"),
        ("12", 6, "n_teacher"),
    ],
)
def test_invalid_sizes_raise_config_error(n_teacher, n_student, fragment):
    with pytest.raises(ConfigError, match=fragment):
        layer_map(n_teacher, n_student)
    with pytest.raises(ConfigError):
        supervision_map(n_teacher, n_student)
