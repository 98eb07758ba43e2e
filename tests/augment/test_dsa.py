"""DSA ops (KRR-ST's augmentation of labelled sets): each op against its formula, determinism, one op per batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssdd.augment import dsa as dsa_module
from ssdd.augment.dsa import DSA_OPS, DSAParams, affine, cutout_mask, dsa, rotation_matrices, translate


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _twin(generator: torch.Generator) -> torch.Generator:
    """A generator in the same state: it draws what `generator` is about to draw."""
    twin = torch.Generator()
    twin.set_state(generator.get_state())
    return twin


def _images(b: int = 64, size: int = 32, seed: int = 1) -> torch.Tensor:
    """Normalised-looking images, every pixel away from 0 so a zeroed pixel is recognisable."""
    return torch.rand((b, 3, size, size), generator=_gen(seed)) * 2 + 0.5


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Hand-written reference: out[i, j] = image[i + dy, j + dx], zero outside (loops over pixels)."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[:, i, j] = image[:, i + dy, j + dx]
    return out


# ----------------------------------------------------------------------------- flip
def test_flip_flips_exactly_the_images_whose_draw_is_below_the_probability():
    x, g = _images(), _gen(3)
    chosen = torch.rand(x.shape[0], generator=_twin(g)) < 0.5
    out = DSA_OPS["flip"](x, g, DSAParams())
    assert 0 < int(chosen.sum()) < x.shape[0]
    assert torch.equal(out[chosen], x[chosen].flip(3))
    assert torch.equal(out[~chosen], x[~chosen])
    assert torch.equal(DSA_OPS["flip"](x, _gen(), DSAParams(flip=1.0)), x.flip(3))
    assert torch.equal(DSA_OPS["flip"](x, _gen(), DSAParams(flip=0.0)), x)


# ----------------------------------------------------------------------------- crop
def test_translate_matches_a_hand_written_shift_with_zero_fill():
    x = _images(3, 6)
    dy, dx = torch.tensor([1, -2, 0]), torch.tensor([-3, 0, 6])
    out = translate(x, dy, dx)
    for b in range(3):
        assert torch.equal(out[b], _shifted(x[b], int(dy[b]), int(dx[b])))


def test_crop_is_an_integer_translation_within_an_eighth_of_the_side():
    x, g = _images(16, 16), _gen(5)
    twin = _twin(g)
    dy = torch.randint(-2, 3, (16,), generator=twin)  # int(16 * 0.125 + 0.5) = 2
    dx = torch.randint(-2, 3, (16,), generator=twin)
    out = DSA_OPS["crop"](x, g, DSAParams())
    for b in range(16):
        assert torch.equal(out[b], _shifted(x[b], int(dy[b]), int(dx[b])))
    assert (dy != 0).any() and (dx != 0).any()
    assert ((out == 0).flatten(1).any(1) == ((dy != 0) | (dx != 0))).all()  # zeros only where it moved


# ----------------------------------------------------------------------------- cutout
def test_cutout_mask_zeroes_the_stated_square():
    mask = cutout_mask(torch.tensor([3, 0]), torch.tensor([3, 5]), (2, 2), (6, 6))[:, 0]
    expected = torch.ones(2, 6, 6, dtype=torch.bool)
    expected[0, 2:4, 2:4] = False  # centre 3: rows 3 - 1 and 3
    expected[1, 0:1, 4:6] = False  # centre 0: row -1 is cut off; centre 5: columns 4 and 5
    assert torch.equal(mask, expected)


def test_cutout_zeroes_one_half_side_rectangle_per_image_clipped_at_the_border():
    x, g = _images(256, 32), _gen(7)
    out = DSA_OPS["cutout"](x, g, DSAParams())
    zero = (out == 0).all(dim=1)  # (B, H, W)
    assert torch.equal(out * 1, x * (~zero)[:, None])  # everything else untouched
    full = 0
    for b in range(zero.shape[0]):
        rows = zero[b].any(1).nonzero().flatten()
        cols = zero[b].any(0).nonzero().flatten()
        assert len(rows) and len(cols) and len(rows) <= 16 and len(cols) <= 16
        assert rows[-1] - rows[0] + 1 == len(rows) and cols[-1] - cols[0] + 1 == len(cols)  # contiguous
        assert int(zero[b].sum()) == len(rows) * len(cols)  # a rectangle
        if 0 < rows[0] and rows[-1] < 31 and 0 < cols[0] and cols[-1] < 31:
            assert len(rows) == 16 and len(cols) == 16  # int(32 * 0.5 + 0.5) a side when inside
            full += 1
    assert full > 0 and zero[:, 0].any() and zero[:, -1].any()  # some inside, some cut at either border


# ----------------------------------------------------------------------------- scale and rotate
def test_scale_one_and_rotate_zero_are_the_identity():
    x = _images(8, 16)
    assert torch.allclose(DSA_OPS["scale"](x, _gen(), DSAParams(scale=1.0)), x, atol=1e-5)
    assert torch.allclose(DSA_OPS["rotate"](x, _gen(), DSAParams(rotate=0.0)), x, atol=1e-5)


def test_affine_by_hand_half_width_scale_and_quarter_turn():
    x = torch.arange(25.0).view(1, 1, 5, 5).expand(1, 3, 5, 5)
    zoom = affine(x, torch.tensor([[[0.5, 0.0], [0.0, 1.0]]]))  # corners aligned: column c reads 1 + c / 2
    assert torch.allclose(zoom[0, 0, 2], torch.tensor([11.0, 11.5, 12.0, 12.5, 13.0]), atol=1e-5)
    turned = affine(x, rotation_matrices(torch.tensor([math.pi / 2])))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4)  # anticlockwise


def _per_image_affine(x: torch.Tensor, rows: list[list[list[float]]]) -> torch.Tensor:
    """Reference formula, one image at a time: affine_grid + grid_sample with corners aligned."""
    outs = []
    for image, m in zip(x, rows, strict=True):
        theta = torch.tensor([[m[0][0], m[0][1], 0.0], [m[1][0], m[1][1], 0.0]]).unsqueeze(0)
        grid = F.affine_grid(theta, [1, *image.shape], align_corners=True)
        outs.append(F.grid_sample(image[None], grid, align_corners=True)[0])
    return torch.stack(outs)


def test_scale_draws_each_axis_between_the_inverse_ratio_and_the_ratio():
    x, g = _images(8, 16), _gen(11)
    twin = _twin(g)
    sx = torch.rand(8, generator=twin) * (1.2 - 1 / 1.2) + 1 / 1.2
    sy = torch.rand(8, generator=twin) * (1.2 - 1 / 1.2) + 1 / 1.2
    expected = _per_image_affine(x, [[[float(a), 0.0], [0.0, float(b)]] for a, b in zip(sx, sy, strict=True)])
    assert torch.allclose(DSA_OPS["scale"](x, g, DSAParams()), expected, atol=1e-5)


def test_rotate_draws_an_angle_within_fifteen_degrees():
    x, g = _images(8, 16)[:, :, 2:14], _gen(13)  # 12 x 16: corner alignment matters off the square
    angles = (torch.rand(8, generator=_twin(g)) - 0.5) * 2 * 15 / 180 * math.pi
    rows = [[[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]] for a in angles.tolist()]
    out = DSA_OPS["rotate"](x, g, DSAParams())
    assert torch.allclose(out, _per_image_affine(x, rows), atol=1e-5)
    assert not torch.allclose(out, x, atol=1e-2)


# ----------------------------------------------------------------------------- colour
def test_color_is_brightness_then_channel_mean_saturation_then_contrast():
    x, g = torch.randn(6, 3, 5, 5, generator=_gen(2)), _gen(17)
    twin = _twin(g)
    ub, us, uc = (torch.rand(6, generator=twin).view(-1, 1, 1, 1) for _ in range(3))
    y = x + (ub - 0.5) * 1.0
    m = y.mean(dim=1, keepdim=True)  # the mean over channels, per pixel (not luma)
    y = (y - m) * (us * 2.0) + m
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - m) * (uc + 0.5) + m
    assert torch.allclose(DSA_OPS["color"](x, g, DSAParams()), y, atol=1e-5)


def test_color_with_neutral_factors_by_hand():
    x = torch.tensor([[[[0.0]], [[3.0]], [[6.0]]]])  # one pixel, channel mean 3
    # brightness 0 adds nothing; saturation 0 gives the channel mean everywhere; contrast then keeps it
    out = DSA_OPS["color"](x, _gen(), DSAParams(brightness=0.0, saturation=0.0))
    assert torch.allclose(out, torch.full_like(x, 3.0))


# ----------------------------------------------------------------------------- the single mode
def test_same_generator_state_gives_the_same_batches():
    x = _images(16, 16)
    g1, g2 = _gen(21), _gen(21)
    first = [dsa(x, g1) for _ in range(12)]
    second = [dsa(x, g2) for _ in range(12)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, [dsa(x, _gen(22)) for _ in range(12)], strict=True))


def test_each_batch_gets_exactly_one_operation(monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    for name in list(DSA_OPS):
        monkeypatch.setitem(dsa_module.DSA_OPS, name, lambda x, g, p, name=name: calls.append(name) or x)
    g = _gen(23)
    for n in range(1, 121):
        dsa(_images(2, 8), g)
        assert len(calls) == n
    assert set(calls) == {"color", "crop", "cutout", "flip", "scale", "rotate"}
    assert max(calls.count(c) for c in set(calls)) < 40  # uniform: 20 each on average


def test_dsa_output_is_the_chosen_operation_applied_with_per_image_parameters():
    x, g = _images(32, 16), _gen(29)
    for _ in range(12):
        twin = _twin(g)
        name = list(DSA_OPS)[int(torch.randint(0, 6, (1,), generator=twin))]
        expected = DSA_OPS[name](x, twin, DSAParams())
        assert torch.equal(dsa(x, g), expected), name
