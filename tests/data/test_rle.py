"""The RLE codec against hand-checked examples, the SIIM reference algorithm and random round trips."""

from __future__ import annotations

import numpy as np
import pytest
from siim_reference import reference_mask2rle, reference_rle2mask

from chestlens.data.rle import decode_rle, encode_rle, parse_rle
from chestlens.errors import ChestlensInputError

# The example of the SIIM-ACR data page (a 1024x1024 image, relative RLE).
SIIM_PAGE_EXAMPLE = "387620 23 996 33 986 43 977 51 968 58 962 65 956 70 952 74 949 76 946 79"

# 3 rows x 4 cols; set pixels (row, col): (2,0), (0,1), (1,1), (1,3), (2,3).
# Column-major flat order: col 0 -> 0 0 1, col 1 -> 1 1 0, col 2 -> 0 0 0, col 3 -> 0 1 1,
# i.e. one run at flat 2..4 and one at flat 10..11.
HAND_MASK = np.array(
    [
        [0, 1, 0, 0],
        [0, 1, 0, 1],
        [1, 0, 0, 1],
    ],
    dtype=bool,
)


def reference_kaggle_encode(mask: np.ndarray) -> str:
    """Kaggle's standard EncodedPixels by its definition: pixel 1 is (1,1), 2 is (2,1), ..."""
    rows, cols = mask.shape
    pairs, number, run_start, run_length = [], 0, 0, 0
    for col in range(cols):
        for row in range(rows):
            number += 1
            if mask[row, col]:
                if run_length == 0:
                    run_start = number
                run_length += 1
            elif run_length:
                pairs += [run_start, run_length]
                run_length = 0
    if run_length:
        pairs += [run_start, run_length]
    return " ".join(map(str, pairs))


def random_masks():
    rng = np.random.default_rng(20190627)
    shapes = [(1, 1), (1, 9), (9, 1), (3, 4), (4, 3), (17, 31), (64, 48), (48, 64)]
    for shape in shapes:
        for density in (0.02, 0.3, 0.5, 0.9):
            yield rng.random(shape) < density
        # blobs: runs that span column boundaries
        blob = np.zeros(shape, dtype=bool)
        blob[shape[0] // 3 :, : max(1, shape[1] // 2)] = True
        yield blob


def test_hand_checked_siim_example():
    assert encode_rle(HAND_MASK, convention="siim") == "2 3 5 2"
    np.testing.assert_array_equal(decode_rle("2 3 5 2", (3, 4), convention="siim"), HAND_MASK)


def test_hand_checked_kaggle_example():
    assert encode_rle(HAND_MASK, convention="kaggle") == "3 3 11 2"
    np.testing.assert_array_equal(decode_rle("3 3 11 2", (3, 4), convention="kaggle"), HAND_MASK)


def test_kaggle_definition_example():
    # "'1 3 10 5' implies pixels 1,2,3,10,11,12,13,14 ... 1 is pixel (1,1), 2 is pixel (2,1)"
    mask = decode_rle("1 3 10 5", (5, 3), convention="kaggle")
    expected = np.zeros((5, 3), dtype=bool)
    for row, col in [(0, 0), (1, 0), (2, 0), (4, 1), (0, 2), (1, 2), (2, 2), (3, 2)]:
        expected[row, col] = True
    np.testing.assert_array_equal(mask, expected)


def test_siim_data_page_example_hand_checked():
    mask = decode_rle(SIIM_PAGE_EXAMPLE, (1024, 1024), convention="siim")
    # first run: flat 387620 = column 378 * 1024 + row 548, 23 pixels down that column
    assert mask[548:571, 378].all() and not mask[547, 378] and not mask[571, 378]
    assert mask[:, 378].sum() == 23
    # second run starts 996 pixels after the first ends: flat 388639 = column 379, row 543
    assert mask[543:576, 379].all() and mask[:, 379].sum() == 33
    values = [int(v) for v in SIIM_PAGE_EXAMPLE.split()]
    assert mask.sum() == sum(values[1::2])
    assert encode_rle(mask, convention="siim") == SIIM_PAGE_EXAMPLE


def test_decode_matches_siim_reference_rle2mask():
    expected = reference_rle2mask(SIIM_PAGE_EXAMPLE, 1024, 1024).T > 0
    np.testing.assert_array_equal(decode_rle(SIIM_PAGE_EXAMPLE, (1024, 1024)), expected)


@pytest.mark.parametrize("index", range(40))
def test_random_round_trips_and_references(index):
    mask = list(random_masks())[index]
    rows, cols = mask.shape
    for convention in ("siim", "kaggle"):
        text = encode_rle(mask, convention=convention)
        np.testing.assert_array_equal(decode_rle(text, (rows, cols), convention=convention), mask)
    siim = encode_rle(mask, convention="siim")
    # SIIM's rle2mask(rle, width=cols, height=rows).T is the same mask
    np.testing.assert_array_equal(reference_rle2mask(siim, cols, rows).T > 0, mask)
    if not mask.T.ravel()[-1]:  # SIIM's mask2rle drops a run that reaches the last pixel
        assert reference_mask2rle(mask.T.astype(np.uint8) * 255, cols, rows) == ("" if siim == "-1" else siim)
    assert encode_rle(mask, convention="kaggle") == reference_kaggle_encode(mask)


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (4, 3), (7, 2)])
def test_edge_masks(shape):
    rows, cols = shape
    size = rows * cols
    empty = np.zeros(shape, dtype=bool)
    full = np.ones(shape, dtype=bool)
    cases = {"empty": (empty, "-1", ""), "full": (full, f"0 {size}", f"1 {size}")}
    first = empty.copy()
    first[0, 0] = True
    last = empty.copy()
    last[-1, -1] = True
    cases["first pixel"] = (first, "0 1", "1 1")
    cases["last pixel"] = (last, f"{size - 1} 1", f"{size} 1")
    for mask, siim, kaggle in cases.values():
        assert encode_rle(mask, convention="siim") == siim
        assert encode_rle(mask, convention="kaggle") == kaggle
        np.testing.assert_array_equal(decode_rle(siim, shape, convention="siim"), mask)
        np.testing.assert_array_equal(decode_rle(kaggle, shape, convention="kaggle"), mask)


def test_run_wraps_from_bottom_of_one_column_to_top_of_next():
    mask = np.zeros((5, 3), dtype=bool)
    mask[4, 0] = mask[0, 1] = True  # flat 4 and 5: one run in column-major order
    assert encode_rle(mask, convention="siim") == "4 2"
    assert encode_rle(mask, convention="kaggle") == "5 2"
    mask = np.zeros((5, 3), dtype=bool)
    mask[0, 0] = mask[0, 1] = True  # same row, adjacent columns: two runs, 5 pixels apart
    assert encode_rle(mask, convention="siim") == "0 1 4 1"
    assert encode_rle(mask, convention="kaggle") == "1 1 6 1"


def test_empty_spellings_and_integer_masks():
    for text in ("-1", " -1", "", "  "):
        assert not decode_rle(text, (2, 3)).any()
        assert not decode_rle(text, (2, 3), convention="kaggle").any()
    assert encode_rle(np.array([[0, 255], [0, 0]], dtype=np.uint8)) == "2 1"


def test_overlapping_kaggle_runs_are_united():
    mask = decode_rle("1 3 2 3", (2, 3), convention="kaggle")
    assert mask.sum() == 4


@pytest.mark.parametrize(
    ("text", "convention", "reason"),
    [
        ("1 2 3", "siim", "odd number"),
        ("1 a", "siim", "non-integer"),
        ("1.5 2", "kaggle", "non-integer"),
        ("-3 2", "siim", "negative"),
        ("0 2", "kaggle", "below 1"),
        ("3 0", "siim", "length below 1"),
        ("10 5", "siim", "past the 3x4 image"),
        ("5 3 5 2", "siim", "past the 3x4 image"),
        ("12 2", "kaggle", "past the 3x4 image"),
    ],
)
def test_bad_strings_raise_input_error(text, convention, reason):
    with pytest.raises(ChestlensInputError, match=reason):
        decode_rle(text, (3, 4), convention=convention)


def test_runs_may_end_exactly_at_the_last_pixel():
    assert decode_rle("10 2", (3, 4))[-2:, -1].all()
    assert decode_rle("11 2", (3, 4), convention="kaggle")[-2:, -1].all()


def test_parse_rle_and_argument_checks():
    assert parse_rle(" 3 4 ").tolist() == [3, 4]
    assert parse_rle("-1").size == 0
    with pytest.raises(ValueError, match="2-D"):
        encode_rle(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="convention"):
        decode_rle("1 1", (2, 2), convention="coco")  # type: ignore[arg-type]
