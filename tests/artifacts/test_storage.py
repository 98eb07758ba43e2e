import pytest
import torch

from ssdd.artifacts.storage import BudgetError, check_budget, storage_of
from ssdd.distill.budget import samples_for_budget


def test_storage_sums_by_hand():
    stored = {"images": torch.zeros(10, 3, 32, 32), "targets": torch.zeros(10, 512, dtype=torch.float16)}
    report = storage_of(stored, (3, 32, 32))
    assert report.floats == 10 * 3072 + 10 * 512
    assert report.image_equivalents == pytest.approx(10 + 10 * 512 / 3072)
    assert report.bytes == 10 * 3072 * 4 + 10 * 512 * 2
    split = report.as_dict()["tensors"]
    assert split["images"]["image_equivalents"] == pytest.approx(10.0)
    assert split["targets"]["bytes"] == 10 * 512 * 2


def test_budget_check_says_by_how_much():
    report = storage_of({"images": torch.zeros(11, 3, 4, 4)}, (3, 4, 4))
    check_budget(report, 11)
    with pytest.raises(BudgetError, match=r"1\.00 over the budget of 10"):
        check_budget(report, 10)


def test_samples_for_budget():
    assert samples_for_budget(100, (3, 32, 32), 512) == 85  # 100 / (1 + 512/3072) = 85.7
    assert samples_for_budget(100, (3, 32, 32), 512, count_targets=False) == 100
    assert samples_for_budget(1000, (3, 32, 32), 128) == 960
    with pytest.raises(BudgetError, match="cannot hold one sample"):
        samples_for_budget(0.5, (3, 32, 32), 512)


def test_an_image_shape_without_pixels_is_one_line():
    import pytest

    from ssdd.artifacts.storage import image_floats

    assert image_floats((3, 16, 16)) == 768
    for shape in ((3, 0, 16), (3, 16), (3, -1, 4)):
        with pytest.raises(ValueError, match=r"^an image shape is \(channels, height, width\), each a whole number "
                                             r">= 1; got"):
            image_floats(shape)
