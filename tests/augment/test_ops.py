"""Batched augmentation ops and pipelines: shapes, ranges, per-sample randomness, exactness."""

from __future__ import annotations

import math

import pytest
import torch

from ssdd.augment import ops
from ssdd.augment.pipelines import TwoViewConfig, ViewConfig, crop_flip, ssl_view, two_views


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 8, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand((b, 3, h, w), generator=_gen(seed))


def _copies(n: int = 64, size: int = 12) -> torch.Tensor:
    return _batch(1, size, size, seed=1).expand(n, -1, -1, -1).contiguous()


def _distinct(x: torch.Tensor) -> int:
    return int(torch.unique((x * 1e4).round().flatten(1), dim=0).shape[0])


# every op as a function of (x, generator)
OPS = {
    "random_crop": lambda x, g: ops.random_crop(x, 3, generator=g),
    "random_horizontal_flip": lambda x, g: ops.random_horizontal_flip(x, 0.5, generator=g),
    "random_resized_crop": lambda x, g: ops.random_resized_crop(x, x.shape[-1], generator=g),
    "random_color_jitter": lambda x, g: ops.random_color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.8, generator=g),
    "random_grayscale": lambda x, g: ops.random_grayscale(x, 0.5, generator=g),
    "random_solarize": lambda x, g: ops.random_solarize(x, 0.5, generator=g),
    "ssl_view": lambda x, g: ssl_view(x, ViewConfig(solarize_p=0.5), generator=g),
    "two_views_1": lambda x, g: two_views(x, TwoViewConfig(), generator=g)[0],
    "two_views_2": lambda x, g: two_views(x, TwoViewConfig(), generator=g)[1],
    "crop_flip": lambda x, g: crop_flip(x, 4, generator=g),
}


@pytest.mark.parametrize("name", list(OPS))
def test_op_keeps_shape_dtype_range_and_is_seeded(name):
    op = OPS[name]
    x = _batch(16)
    out = op(x, _gen(5))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert torch.equal(op(x, _gen(5)), out)  # same seed, same output
    assert not torch.equal(op(x, _gen(6)), out)  # another seed, another output
    assert torch.equal(x, _batch(16))  # the input is not modified in place


def test_two_views_differ_and_are_seeded():
    x = _batch(8)
    a1, b1 = two_views(x, TwoViewConfig(), generator=_gen(0))
    a2, b2 = two_views(x, TwoViewConfig(), generator=_gen(0))
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, b1)


def test_ssl_view_rejects_bad_jitter():
    with pytest.raises(ValueError, match="4 strengths"):
        ssl_view(_batch(2), ViewConfig(jitter=[0.4, 0.4]))


# ----------------------------------------------------------------------------- per-sample randomness
@pytest.mark.parametrize(
    "op",
    [
        lambda x, g: ops.random_resized_crop(x, x.shape[-1], generator=g),
        lambda x, g: ops.random_crop(x, 4, generator=g),
        lambda x, g: ops.random_color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=1.0, generator=g),
    ],
    ids=["resized_crop", "crop", "color_jitter"],
)
def test_per_sample_randomness(op):
    out = op(_copies(), _gen(0))
    assert _distinct(out) > 20


def test_flip_is_per_sample():
    x = _copies()
    out = ops.random_horizontal_flip(x, 0.5, generator=_gen(0))
    flipped = (out == x.flip(-1)).flatten(1).all(dim=1)
    kept = (out == x).flatten(1).all(dim=1)
    assert bool((flipped | kept).all())
    assert 10 < int(flipped.sum()) < 54


def test_p_zero_is_identity():
    x = _batch(16)
    g = _gen(0)
    assert torch.equal(ops.random_horizontal_flip(x, 0.0, generator=g), x)
    assert torch.equal(ops.random_grayscale(x, 0.0, generator=g), x)
    assert torch.equal(ops.random_solarize(x, 0.0, generator=g), x)
    assert torch.equal(ops.random_color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.0, generator=g), x)
    assert torch.equal(ops.random_crop(x, 0, generator=g), x)


def test_p_one_applies_to_every_sample():
    x = _batch(16)
    assert torch.equal(ops.random_horizontal_flip(x, 1.0, generator=_gen(0)), x.flip(-1))
    gray = ops.random_grayscale(x, 1.0, generator=_gen(0))
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    expected = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # torchvision's weights
    torch.testing.assert_close(gray[:, 0], expected)
    sol = ops.random_solarize(x, 1.0, generator=_gen(0))
    assert torch.equal(sol, torch.where(x >= 0.5, 1 - x, x))


# ----------------------------------------------------------------------------- random crop exactness
@pytest.mark.parametrize("padding", [1, 3])
def test_random_crop_is_shifted_window_of_padded_input(padding):
    x = _batch(6, 7, 9)
    out = ops.random_crop(x, padding, generator=_gen(2))
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    h, w = x.shape[-2:]
    offsets = set()
    for i in range(x.shape[0]):
        found = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                 if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])]
        assert found, f"sample {i} is not a window of the padded input"
        offsets.add(found[0])
    assert len(offsets) > 1


def test_random_crop_covers_all_offsets():
    # with 2p+1 = 3 offsets per axis, a large batch must reach the extremes (0 and 2p) too
    x = torch.zeros((400, 1, 3, 3))
    x[:, :, 1, 1] = 1.0  # the centre pixel marks where the window went
    out = ops.random_crop(x, 1, generator=_gen(0))
    positions = {tuple(torch.nonzero(o[0]).flatten().tolist()) for o in out}
    assert positions == {(r, c) for r in range(3) for c in range(3)}


# ----------------------------------------------------------------------------- resized crop
def test_random_resized_crop_full_box_is_identity():
    x = _batch(4, 10, 10)
    out = ops.random_resized_crop(x, 10, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=_gen(0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_crop_and_resize_whole_image_is_identity():
    x = _batch(3, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 3)
    torch.testing.assert_close(ops.crop_and_resize(x, boxes, 8), x, atol=1e-5, rtol=0)
    # a non-square image resized to a square keeps the shape contract
    wide = _batch(3, 8, 10)
    assert ops.crop_and_resize(wide, torch.tensor([[0.0, 0.0, 8.0, 10.0]] * 3), 8).shape == (3, 3, 8, 8)


def test_bicubic_crop_is_exact_on_whole_image_matches_torch_inside_and_stays_in_range():
    import torch.nn.functional as F

    x = _batch(2, 8, 8)
    whole = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2)
    torch.testing.assert_close(ops.crop_and_resize(x, whole, 8, "bicubic"), x, atol=1e-5, rtol=0)
    # upsampling the whole image: torch's bicubic resize (a = -0.75, edges replicated), clamped to [0, 1]
    ours = ops.crop_and_resize(x, whole, 16, "bicubic")
    reference = F.interpolate(x, size=16, mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    assert ours.min() >= 0 and ours.max() <= 1
    with pytest.raises(ValueError, match="interpolation"):
        ops.crop_and_resize(x, whole, 8, "nearest")


def test_crop_and_resize_quadrants():
    size = 8
    x = torch.zeros((2, 3, size, size))
    half = size // 2
    values = {(0, 0): 0.1, (0, 1): 0.3, (1, 0): 0.6, (1, 1): 0.9}
    for (qr, qc), v in values.items():
        x[:, :, qr * half : (qr + 1) * half, qc * half : (qc + 1) * half] = v
    for (qr, qc), v in values.items():
        boxes = torch.tensor([[qr * half, qc * half, half, half]] * 2, dtype=torch.float32)
        out = ops.crop_and_resize(x, boxes, half)
        assert out.shape == (2, 3, half, half)
        torch.testing.assert_close(out, torch.full_like(out, v), atol=1e-6, rtol=0)
    # different boxes per sample pick different quadrants
    boxes = torch.tensor([[0, 0, half, half], [half, half, half, half]], dtype=torch.float32)
    out = ops.crop_and_resize(x, boxes, 2)
    torch.testing.assert_close(out[0], torch.full_like(out[0], 0.1))
    torch.testing.assert_close(out[1], torch.full_like(out[1], 0.9))


@pytest.mark.parametrize(("height", "width", "scale", "ratio"), [
    (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),
    (24, 40, (0.2, 0.5), (0.5, 2.0)),
    (16, 16, (0.5, 1.0), (1.0, 1.0)),
])
def test_sample_resized_crop_boxes(height, width, scale, ratio):
    n = 500
    boxes = ops.sample_resized_crop_boxes(n, height, width, scale, ratio, _gen(0), torch.device("cpu"))
    assert boxes.shape == (n, 4)
    top, left, h, w = boxes.unbind(1)
    assert torch.equal(boxes, boxes.round())  # whole pixels
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    full = (h == height) & (w == width)  # the fallback (or a lucky full-size draw)
    h_, w_ = h[~full], w[~full]
    assert len(h_) > n // 2
    # the drawn (unrounded) sides lie within 0.5 px of the rounded ones, and satisfy the ranges exactly
    total = height * width
    assert ((w_ + 0.5) * (h_ + 0.5) >= scale[0] * total - 1e-6).all()
    assert ((w_ - 0.5) * (h_ - 0.5) <= scale[1] * total + 1e-6).all()
    assert ((w_ + 0.5) / (h_ - 0.5) >= ratio[0] - 1e-6).all()
    assert ((w_ - 0.5) / (h_ + 0.5) <= ratio[1] + 1e-6).all()
    # and the fractions actually spread over the range (not all one value)
    area = h_ * w_ / total
    assert float(area.max() - area.min()) > 0.3 * (scale[1] - scale[0])
    # the positions are spread over the image, not always centred
    assert len(set(top.tolist())) > 1 and len(set(left.tolist())) > 1


def test_sample_resized_crop_boxes_fallback_is_centred():
    # an area fraction above 1 can never fit, so every sample takes the centred fallback
    boxes = ops.sample_resized_crop_boxes(5, 20, 30, (2.0, 3.0), (1.0, 1.0), _gen(0), torch.device("cpu"))
    # input ratio 1.5 > 1.0: width clamped to height * 1.0
    expected = torch.tensor([[0.0, 5.0, 20.0, 20.0]] * 5)
    assert torch.equal(boxes, expected)


# ----------------------------------------------------------------------------- rotate90
def _rot_reference(x: torch.Tensor, k: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    k %= 4
    if k == 0:
        return x.clone()
    out_h, out_w = (w, h) if k % 2 else (h, w)
    out = torch.empty((*x.shape[:-2], out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            if k == 1:
                out[..., i, j] = x[..., j, w - 1 - i]
            elif k == 2:
                out[..., i, j] = x[..., h - 1 - i, w - 1 - j]
            else:
                out[..., i, j] = x[..., h - 1 - j, i]
    return out


def test_rotate90_direction_is_counter_clockwise():
    x = torch.tensor([[1, 2], [3, 4]])
    # counter-clockwise: the top-right element moves to the top-left
    assert ops.rotate90(x, 1).tolist() == [[2, 4], [1, 3]]


@pytest.mark.parametrize("k", [0, 1, 2, 3, -1, 5])
def test_rotate90_index_map(k):
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    out = ops.rotate90(x, k)
    assert torch.equal(out, _rot_reference(x, k))
    assert out.dtype == x.dtype


def test_rotate90_four_times_is_identity_and_keeps_uint8():
    x = torch.randint(0, 256, (3, 3, 6, 7), dtype=torch.uint8, generator=_gen(0))
    out = x
    for _ in range(4):
        out = ops.rotate90(out, 1)
    assert torch.equal(out, x)
    once = ops.rotate90(x, 1)
    assert once.dtype == torch.uint8 and once.shape == (3, 3, 7, 6)
    assert torch.equal(once, _rot_reference(x, 1))
    assert torch.equal(ops.rotate90(x, 3), ops.rotate90(x, -1))


# ----------------------------------------------------------------------------- colour ops
def test_hsv_round_trip():
    x = _batch(8, 9, 9)
    x[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # grey: zero saturation
    x[0, :, 0, 1] = 0.0  # black
    x[0, :, 0, 2] = torch.tensor([1.0, 0.0, 0.0])  # pure red: hue 0
    hsv = ops.rgb_to_hsv(x)
    assert hsv.min() >= 0 and hsv.max() <= 1
    torch.testing.assert_close(ops.hsv_to_rgb(hsv), x, atol=1e-5, rtol=0)
    # known values: pure red (0, 1, 1), pure green hue 1/3, pure blue hue 2/3
    rgb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]]).T.reshape(1, 3, 1, 4)
    hsv = ops.rgb_to_hsv(rgb)[0, :, 0].T
    torch.testing.assert_close(hsv, torch.tensor([[0, 1, 1], [1 / 3, 1, 1], [2 / 3, 1, 1], [0, 0, 0.5]]))


def test_adjust_hue_identity_and_shift():
    x = _batch(4)
    torch.testing.assert_close(ops.adjust_hue(x, torch.zeros(4)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(ops.adjust_hue(x, torch.ones(4)), x, atol=1e-5, rtol=0)  # a full turn
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    green = ops.adjust_hue(red, torch.tensor([1 / 3]))
    torch.testing.assert_close(green.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-5, rtol=0)


def test_adjust_saturation_brightness_contrast():
    x = _batch(4)
    gray = ops.adjust_saturation(x, torch.zeros(4))
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    torch.testing.assert_close(gray[:, :1], ops.grayscale(x))
    torch.testing.assert_close(ops.adjust_saturation(x, torch.ones(4)), x)
    assert torch.equal(ops.adjust_brightness(x, torch.ones(4)), x)
    torch.testing.assert_close(ops.adjust_brightness(x, torch.full((4,), 0.5)), x * 0.5)
    assert ops.adjust_brightness(x, torch.full((4,), 10.0)).max() <= 1.0
    torch.testing.assert_close(ops.adjust_contrast(x, torch.ones(4)), x)
    flat = ops.adjust_contrast(x, torch.zeros(4))
    assert torch.allclose(flat, flat.mean(dim=(1, 2, 3), keepdim=True).expand_as(flat))
    # per-sample factors: sample 0 unchanged, sample 1 darkened
    mixed = ops.adjust_brightness(x[:2], torch.tensor([1.0, 0.5]))
    assert torch.equal(mixed[0], x[0]) and torch.allclose(mixed[1], x[1] * 0.5)


def test_normalize_and_to_float():
    x = _batch(3, 4, 4)
    mean = torch.tensor([0.1, 0.5, 0.9])
    std = torch.tensor([0.2, 0.3, 0.4])
    out = ops.normalize(x, mean, std)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, c] - mean[c]) / std[c])
    u8 = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    f = ops.to_float(u8)
    assert f.dtype == torch.float32 and f.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_color_jitter_factors_are_within_range():
    # brightness only: each sample is scaled by one factor in [1 - b, 1 + b]
    x = torch.full((64, 3, 4, 4), 0.5)
    out = ops.random_color_jitter(x, 0.4, 0.0, 0.0, 0.0, p=1.0, generator=_gen(0))
    factors = out[:, 0, 0, 0] / 0.5
    assert (out == out[:, :1, :1, :1]).all()  # one factor per sample
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    assert factors.max() - factors.min() > 0.4
    assert math.isclose(float(factors.mean()), 1.0, abs_tol=0.1)


@pytest.mark.parametrize("strengths", [(0.4, 0.4, 0.2, 0.1), (0.4, 0.0, 0.2, 0.0), (0.0, 0.3, 0.0, 0.0),
                                       (0.0, 0.0, 0.0, 0.1), (0.0, 0.0, 0.0, 0.0)])
def test_branch_free_color_jitter_gives_the_plain_images_bit_for_bit(strengths):
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    orders = set()
    for seed in range(16):
        plain_gen, fast_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        plain = ops.random_color_jitter(x, *strengths, p=0.7, generator=plain_gen)
        fast = ops.random_color_jitter(x, *strengths, p=0.7, generator=fast_gen, branch_free=True)
        assert torch.equal(plain, fast), seed
        assert torch.equal(plain_gen.get_state(), fast_gen.get_state())  # the same numbers drawn
        gen = torch.Generator().manual_seed(seed)
        ops._rand((5, 6), gen, x.device)
        orders.add(tuple(torch.argsort(ops._rand((4,), gen, x.device)).tolist()))
    assert len(orders) > 1  # the seeds drew different orders, so the selection by drawn order was exercised


def test_branch_free_two_views_equal_the_plain_ones():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = two_views(x, TwoViewConfig(), torch.Generator().manual_seed(5))
    fast = two_views(x, TwoViewConfig(), torch.Generator().manual_seed(5), branch_free=True)
    assert all(torch.equal(a, b) for a, b in zip(plain, fast, strict=True))

@pytest.mark.parametrize("padding", [0, 2])
def test_crop_flip_split_into_draws_and_their_application_is_crop_flip(padding):
    """The fast distillation path draws the parameters and applies them apart: the same generator calls in the
    same order (the stream after them matches too) and the same pixels as crop_flip in one go."""
    from ssdd.augment.pipelines import crop_flip_at, crop_flip_draws

    x = _batch(16)
    plain_gen, split_gen = _gen(3), _gen(3)
    plain = crop_flip(x, padding, plain_gen)
    offsets, flips = crop_flip_draws(x.shape[0], padding, split_gen, x.device)
    assert torch.equal(crop_flip_at(x, padding, offsets, flips), plain)
    assert torch.equal(plain_gen.get_state(), split_gen.get_state())
    assert offsets.shape == (2, 16) and int(offsets.min()) >= 0 and int(offsets.max()) <= 2 * padding
    assert torch.equal(ops.crop_at(x, padding, offsets), ops.random_crop(x, padding, _gen(3)))
    assert torch.equal(ops.flip_where(x, ops.flip_draws(16, 0.5, _gen(4), x.device)),
                       ops.random_horizontal_flip(x, 0.5, _gen(4)))
