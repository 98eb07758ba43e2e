"""Predefined views are exact pixel permutations; upsampling is exact where it should be."""

import pytest
import torch

from ssdd.distill.lowrank import images_from_coefficients, upsample
from ssdd.distill.views import VIEWS, apply_views, check_views, random_views


def images(n: int = 5, size: int = 8, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=dtype)


def test_rotations_are_exact_permutations():
    x = images()
    assert torch.equal(VIEWS["rot90"](VIEWS["rot90"](x)), VIEWS["rot180"](x))
    assert torch.equal(VIEWS["rot90"](VIEWS["rot270"](x)), x)
    four = x
    for _ in range(4):
        four = VIEWS["rot90"](four)
    assert torch.equal(four, x)
    # rot90 counter-clockwise: the top row becomes the left column read bottom-up
    assert torch.equal(VIEWS["rot90"](x)[..., :, 0], x[..., 0, :].flip(-1))
    for name, view in VIEWS.items():
        out = view(x)
        assert out.shape == x.shape, name
        assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values), name  # same pixel values


def test_views_commute_with_uint8_conversion():
    x8 = (images() * 255).to(torch.uint8)
    for name, view in VIEWS.items():
        assert torch.equal(view(x8).float() / 255, view(x8.float() / 255)), name


def test_rotation_commutes_with_bilinear_upsampling():
    low = images(size=4)
    for name in ("rot90", "rot180", "rot270", "hflip"):
        assert torch.allclose(upsample(VIEWS[name](low), 8), VIEWS[name](upsample(low, 8)), atol=1e-6), name


def test_upsampling_is_linear_so_bases_can_be_upsampled_once():
    gen = torch.Generator().manual_seed(1)
    coefficients, bases, mean = torch.randn(6, 5, generator=gen), torch.randn(5, 48, generator=gen), torch.randn(48)
    direct = images_from_coefficients(coefficients, bases, mean, 4, 8)
    up_bases = upsample(bases.view(5, 3, 4, 4), 8).flatten(1)
    up_mean = upsample(mean.view(1, 3, 4, 4), 8).flatten(1)
    assert torch.allclose(direct.flatten(1), coefficients @ up_bases + up_mean, atol=1e-5)
    same_size = images_from_coefficients(coefficients, bases, mean, 4, 4)  # r == H: no resampling at all
    assert torch.equal(same_size.flatten(1), coefficients @ bases + mean)


def test_apply_views_is_view_major_and_random_views_pick_from_the_list():
    x = images(n=3)
    names = ["identity", "rot90", "hflip"]
    stacked = apply_views(x, names)
    assert stacked.shape[0] == 9
    assert torch.equal(stacked[:3], x) and torch.equal(stacked[3:6], VIEWS["rot90"](x))
    picked = random_views(images(n=64), names, torch.Generator().manual_seed(0))
    source = images(n=64)
    kinds = set()
    for i in range(64):
        kinds |= {n for n in names if torch.equal(picked[i], VIEWS[n](source[i : i + 1])[0])}
    assert kinds == set(names)
    assert torch.equal(random_views(x, ["identity"]), x)


@pytest.mark.parametrize("names, message", [
    (["rot90", "identity"], "start with 'identity'"), (["identity", "spin"], "unknown"),
    (["identity", "rot90", "rot90"], "repeats"), ([], "start with 'identity'")])
def test_bad_view_lists_are_rejected(names, message):
    with pytest.raises(ValueError, match=message):
        check_views(names)


def test_rotations_need_square_images():
    with pytest.raises(ValueError, match="square"):
        check_views(["identity", "rot90"], (3, 8, 16))
    assert check_views(["identity", "rot180", "hflip"], (3, 8, 16)) == ["identity", "rot180", "hflip"]


@pytest.mark.parametrize(("name", "reference"), [
    ("brightness_1.4", lambda tf, x: tf.adjust_brightness(x, 1.4)),
    ("contrast_0.6", lambda tf, x: tf.adjust_contrast(x, 0.6)),
    ("saturation_1.4", lambda tf, x: tf.adjust_saturation(x, 1.4)),
    ("hue_-0.1", lambda tf, x: tf.adjust_hue(x, -0.1)),
    ("hue_0.1", lambda tf, x: tf.adjust_hue(x, 0.1)),
    ("blur_3_0.5", lambda tf, x: tf.gaussian_blur(x, [3, 3], [0.5, 0.5])),
    ("blur_7_2.0", lambda tf, x: tf.gaussian_blur(x, [7, 7], [2.0, 2.0])),
])
def test_photometric_views_equal_torchvision_and_are_deterministic(name, reference):
    import torchvision.transforms.v2.functional as tf

    from ssdd.distill.views import describe_view, view_fn

    x = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    ours = view_fn(name)(x)
    torch.testing.assert_close(ours, reference(tf, x), atol=2e-5, rtol=0)
    assert torch.equal(ours, view_fn(name)(x)) and not describe_view(name)["exact_permutation"]
    u8 = (x * 255).round().to(torch.uint8)  # uint8 input is converted to [0, 1] floats
    torch.testing.assert_close(view_fn(name)(u8), view_fn(name)(u8.float() / 255))


@pytest.mark.parametrize(("bad", "said"), [
    ("brightness_0", "factor must be positive"), ("hue_0.7", r"\[-0\.5, 0\.5\]"), ("blur_4_1.0", "odd kernel"),
    ("blur_5_0", "positive sigma"), ("sharpen_2", "unknown augmentation"), ("contrast_x", "unknown augmentation")])
def test_invalid_photometric_views_are_one_line_errors(bad, said):
    with pytest.raises(ValueError, match=said):
        check_views(["identity", bad])


def test_describe_view_records_parameters():
    from ssdd.distill.views import describe_view

    assert describe_view("blur_5_1.0") == {"op": "gaussian_blur", "kernel": 5, "sigma": 1.0, "exact_permutation": False}
    assert describe_view("hue_-0.1") == {"op": "hue", "shift": -0.1, "exact_permutation": False}
    assert describe_view("rot90")["exact_permutation"]


@pytest.mark.parametrize("names", [["identity", "rot90", "hflip"], ["identity", "brightness_1.2", "rot180"],
                                   ["identity"]])
def test_random_views_split_and_sync_free_give_the_same_images(names):
    """view_draws + views_at is random_views (the same draws), and the sync-free form (every view computed on
    the whole batch and selected by torch.where) gives the same images: each view acts on each image alone."""
    from ssdd.distill.views import view_draws, views_at

    x = images(n=32)
    plain = random_views(x, names, torch.Generator().manual_seed(1))
    choice = view_draws(32, names, torch.Generator().manual_seed(1), x.device)
    assert torch.equal(views_at(x, names, choice), plain)
    assert torch.allclose(views_at(x, names, choice, sync_free=True), plain, atol=1e-6)
    if len(names) > 1:
        assert len(set(choice.tolist())) == len(names)  # every view drawn: the comparison covers each


@pytest.fixture
def own_registry(monkeypatch):
    """register_view writes into copies, so a test's views leave the module as it was."""
    from ssdd.distill import views

    monkeypatch.setattr(views, "VIEWS", dict(views.VIEWS))
    monkeypatch.setattr(views, "_REGISTERED", {})
    monkeypatch.setattr(views, "NEEDS_SQUARE", set(views.NEEDS_SQUARE))
    return views


def test_a_registered_view_is_named_like_a_built_in_one(own_registry):
    views = own_registry
    views.register_view("shift2", lambda x: x.roll(2, dims=-1), exact_permutation=True)
    views.register_view("invert", lambda x: 1 - x, exact_permutation=False, needs_square=True)
    x = images(4, dtype=torch.float32)
    u8 = (x * 255).round().to(torch.uint8)
    assert check_views(["identity", "shift2", "invert"], (3, 8, 8)) == ["identity", "shift2", "invert"]
    stacked = views.apply_views(u8, ["identity", "shift2"])
    assert stacked.dtype == torch.uint8 and torch.equal(stacked[4:], u8.roll(2, dims=-1))  # a permutation: exact
    assert torch.allclose(views.view_fn("invert")(u8), 1 - u8.float() / 255)  # given float images in [0, 1]
    assert views.describe_view("invert") == {"op": "invert", "exact_permutation": False}
    with pytest.raises(ValueError, match="need square images"):
        check_views(["identity", "invert"], (3, 8, 6))


@pytest.mark.parametrize("name, said", [("rot90", "already defined"), ("blur_5_1.0", "already defined"),
                                        ("two words", "a view name is a word"), ("", "a view name is a word")])
def test_a_view_that_cannot_be_registered_is_one_line(own_registry, name, said):
    with pytest.raises(ValueError, match=said):
        own_registry.register_view(name, lambda x: x, exact_permutation=True)


def test_an_unknown_view_names_the_plugin_variable(own_registry):
    with pytest.raises(ValueError, match=r"or a view a plugin registers \(SSDD_PLUGINS\)"):
        check_views(["identity", "shift2"])


@pytest.mark.parametrize("fn, exact, said", [
    (lambda x: x[..., :-1, :], True, r"view 'bad' \(a plugin's\) must return images of the shape it is given"),
    (lambda x: x.float(), True, "registered as a permutation, but it turns uint8 images into torch.float32"),
    (lambda x: x * 2.0, False, r"view 'bad' \(a plugin's\) must return images in \[0, 1\]"),
])
def test_a_plugins_view_that_changes_the_shape_or_leaves_0_to_1_is_refused_before_work(own_registry, fn, exact, said):
    own_registry.register_view("bad", fn, exact_permutation=exact)
    with pytest.raises(ValueError, match=said):
        check_views(["identity", "bad"], (3, 8, 8))
