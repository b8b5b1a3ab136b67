"""FiLM, vision backbones, random shift, video encoder, clip sampling (small images: fast on 2 cores)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtil.datasets.errors import UserError
from mtil.encoders.backbones import ResNet18Backbone, SmallCNN, make_backbone, random_shift
from mtil.encoders.film import FiLM
from mtil.encoders.video import (
    VideoEncoder,
    clip_indices,
    cosine_alignment_loss,
    pick_other_demo,
    sample_clip,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b: int = 2, size: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, size, size), generator=_gen(seed), dtype=torch.uint8)


# -- FiLM --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 6, 5, 4), (3, 6)])
def test_film_is_exactly_identity_at_init(shape):
    film = FiLM(cond_dim=7, channels=6)
    h = torch.randn(*shape, generator=_gen(0))
    z = torch.randn(3, 7, generator=_gen(1))
    assert torch.equal(film(h, z), h)


def test_film_learns_from_zero_init_and_then_passes_gradient_to_z():
    torch.manual_seed(0)
    film = FiLM(cond_dim=4, channels=3)
    h = torch.randn(5, 3, 6, 6)
    z = torch.randn(5, 4, requires_grad=True)
    target = torch.randn(5, 3, 6, 6)
    F.mse_loss(film(h, z), target).backward()
    # Zero init does not block learning: dL/dW = dL/d(gamma, beta) * z is nonzero ...
    assert film.linear.weight.grad.abs().sum() > 0 and film.linear.bias.grad.abs().sum() > 0
    # ... but with W = 0 nothing flows back into z yet (dL/dz = W^T dL/d(gamma, beta)).
    assert torch.count_nonzero(z.grad) == 0
    torch.optim.SGD(film.parameters(), lr=0.1).step()
    z.grad = None
    out = film(h, z)
    assert not torch.equal(out, h)  # one step later the task modulates the features
    F.mse_loss(out, target).backward()
    assert z.grad.abs().sum() > 0  # and the conditioning encoder upstream receives gradient


# -- backbones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["small_cnn", "resnet18"])
def test_backbone_shape_and_film_after_every_block(kind):
    torch.manual_seed(0)
    net = make_backbone(kind, cond_dim=8, out_dim=16)
    x, z = _images(), torch.randn(2, 8)
    out = net(x, z)
    assert out.shape == (2, 16) and out.dtype == torch.float32
    assert len(net.films) == 4
    # Untrained FiLM = no conditioning: another z gives the very same features.
    assert torch.equal(net(x, torch.randn(2, 8)), out)
    # Every FiLM layer sits on the path: each gets a gradient, and moving any one changes the output.
    out.square().sum().backward()
    for i, film in enumerate(net.films):
        assert film.linear.weight.grad.abs().sum() > 0, f"FiLM {i} received no gradient"
    with torch.no_grad():
        for i, film in enumerate(net.films):
            film.linear.bias.normal_(0, 0.5)
            moved = net(x, z)
            film.linear.bias.zero_()
            assert not torch.allclose(moved, out), f"FiLM {i} has no effect"


def test_backbone_without_film_and_input_checks():
    net = SmallCNN(cond_dim=0, out_dim=12)
    assert len(net.films) == 0 and net(_images(size=32)).shape == (2, 12)
    with pytest.raises(UserError, match="cond_dim=0"):
        net(_images(size=32), torch.randn(2, 4))
    film_net = SmallCNN(cond_dim=4, out_dim=12)
    with pytest.raises(UserError, match=r"conditioning \(2, 4\)"):
        film_net(_images(size=32))
    with pytest.raises(UserError, match="uint8"):
        net(torch.rand(2, 3, 32, 32))
    with pytest.raises(UserError, match="channels last"):
        net(_images(size=32).permute(0, 2, 3, 1))
    with pytest.raises(UserError, match="unknown backbone"):
        make_backbone("resnet50")


def test_resnet_local_weights_are_loaded_strictly(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    src = ResNet18Backbone(out_dim=8)
    torch.save(src.trunk.state_dict(), tmp_path / "trunk.pt")
    loaded = ResNet18Backbone(out_dim=8, weights_path=tmp_path / "trunk.pt")
    for k, v in src.trunk.state_dict().items():
        assert torch.equal(loaded.trunk.state_dict()[k], v), k
    # A torchvision (BatchNorm) ResNet-18 file also loads: running stats and fc are dropped.
    tv = resnet18(weights=None)
    torch.save({"state_dict": tv.state_dict()}, tmp_path / "tv.pt")
    from_tv = ResNet18Backbone(out_dim=8, weights_path=str(tmp_path / "tv.pt"))
    assert torch.equal(from_tv.trunk.layer3[0].conv1.weight, tv.layer3[0].conv1.weight)
    assert torch.equal(from_tv.trunk.bn1.weight, tv.bn1.weight)

    torch.save(SmallCNN().state_dict(), tmp_path / "wrong.pt")
    with pytest.raises(UserError, match="missing.*unexpected"):
        ResNet18Backbone(weights_path=tmp_path / "wrong.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a PyTorch state dict"):
        ResNet18Backbone(weights_path=tmp_path / "junk.pt")
    with pytest.raises(UserError, match="not found"):
        ResNet18Backbone(weights_path=tmp_path / "absent.pt")


def test_random_shift_is_an_integer_translation_with_replicate_padding():
    pad, x = 3, _images(b=16, size=20, seed=5)
    out = random_shift(x, pad=pad, generator=_gen(7))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    # Reference (DrQ): replicate-pad by `pad`, crop 20x20 at some offset in [0, 2 * pad].
    padded = F.pad(x.float(), (pad,) * 4, mode="replicate")
    offsets = []
    for b in range(len(x)):
        hits = [
            (i, j)
            for i in range(2 * pad + 1)
            for j in range(2 * pad + 1)
            if torch.equal(padded[b, :, i : i + 20, j : j + 20], out[b].float())
        ]
        assert len(hits) == 1, f"sample {b} is not one translation of its input"
        offsets.append(hits[0])
    assert len(set(offsets)) > 1  # shifts are drawn per sample
    assert torch.equal(random_shift(x, pad=pad, generator=_gen(7)), out)  # reproducible
    assert random_shift(x, pad=0) is x


# -- video encoder -----------------------------------------------------------------------------


def test_video_encoder_shape_norm_gradients_and_alignment_learns():
    torch.manual_seed(0)
    enc = VideoEncoder(out_dim=64, frame_dim=32, max_frames=4)
    clip = torch.randint(0, 256, (3, 4, 3, 32, 32), generator=_gen(0), dtype=torch.uint8)
    lang = F.normalize(torch.randn(3, 64, generator=_gen(1)), dim=-1)
    emb = enc(clip)
    assert emb.shape == (3, 64) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    loss = cosine_alignment_loss(emb, lang)
    loss.backward()
    no_grad = [n for n, p in enc.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    for _ in range(8):
        opt.zero_grad()
        step_loss = cosine_alignment_loss(enc(clip), lang)
        step_loss.backward()
        opt.step()
    assert cosine_alignment_loss(enc(clip), lang) < loss.item() - 0.1


def test_video_encoder_mean_pooling_variant_and_shorter_clips():
    enc = VideoEncoder(out_dim=16, frame_dim=32, max_frames=6, num_layers=0)
    assert enc.temporal is None
    out = enc(torch.zeros(2, 3, 3, 32, 32, dtype=torch.uint8))  # T=3 <= max_frames
    assert out.shape == (2, 16)


def test_cosine_alignment_loss_values():
    x = torch.randn(4, 8, generator=_gen(0))
    torch.testing.assert_close(cosine_alignment_loss(x, x), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(cosine_alignment_loss(x, 3 * x), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(cosine_alignment_loss(x, -x), torch.tensor(2.0))
    e = torch.eye(2)
    torch.testing.assert_close(cosine_alignment_loss(e, e.flip(0)), torch.tensor(1.0))
    with pytest.raises(ValueError, match="same shape"):
        cosine_alignment_loss(x, x[:, :4])


@pytest.mark.parametrize(
    "clip, match",
    [
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), r"shape \(B, T, 3, H, W\)"),
        (torch.zeros(2, 4, 32, 32, 3, dtype=torch.uint8), "channels last"),
        (torch.zeros(2, 4, 3, 32, 32), "dtype uint8"),
        (torch.zeros(2, 9, 3, 32, 32, dtype=torch.uint8), "at most 4"),
        (torch.zeros(0, 4, 3, 32, 32, dtype=torch.uint8), "shape"),
        (np.zeros((2, 4, 3, 32, 32), dtype=np.uint8), "torch.Tensor"),
    ],
)
def test_video_encoder_rejects_bad_clips(clip, match):
    enc = VideoEncoder(out_dim=16, frame_dim=32, max_frames=4)
    with pytest.raises(UserError, match=match):
        enc(clip)


# -- clip sampling -----------------------------------------------------------------------------


def _demo_frames(length: int, size: int = 6) -> np.ndarray:
    """(L, H, W, 3) uint8 where every pixel of frame i equals i: values reveal the indices taken."""
    return np.broadcast_to(np.arange(length, dtype=np.uint8)[:, None, None, None], (length, size, size, 3)).copy()


def test_sample_clip_takes_evenly_spaced_frames_from_arrays_tensors_and_hdf5(tmp_path):
    frames = _demo_frames(10)
    clip = sample_clip(frames, 4)
    assert clip.shape == (4, 3, 6, 6) and clip.dtype == torch.uint8
    assert clip[:, 0, 0, 0].tolist() == [0, 3, 6, 9]
    assert torch.equal(sample_clip(torch.from_numpy(frames), 4), clip)
    with h5py.File(tmp_path / "demo.hdf5", "w") as f:
        f["obs/agentview_image"] = frames
    with h5py.File(tmp_path / "demo.hdf5", "r") as f:
        assert torch.equal(sample_clip(f["obs/agentview_image"], 4), clip)
        # A demo shorter than the clip repeats frames (h5py needs distinct increasing indices: handled).
        assert sample_clip(f["obs/agentview_image"][:2], 5)[:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1]


def test_clip_indices_with_jitter_stay_in_their_segments():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        idx = clip_indices(20, 4, rng)
        assert idx.tolist() == sorted(idx.tolist()) and idx.min() >= 0 and idx.max() <= 19
        assert all(5 * k <= i < 5 * (k + 1) for k, i in enumerate(idx))
        seen.add(tuple(idx))
    assert len(seen) > 10
    assert np.array_equal(clip_indices(20, 4, np.random.default_rng(3)), clip_indices(20, 4, np.random.default_rng(3)))


@pytest.mark.parametrize(
    "frames, match",
    [
        (np.zeros((5, 6, 6, 3), dtype=np.float32), "uint8"),
        (np.zeros((5, 3, 6, 6), dtype=np.uint8), r"\(L, H, W, 3\)"),
        (np.zeros((0, 6, 6, 3), dtype=np.uint8), "L >= 1"),
    ],
)
def test_sample_clip_rejects_bad_frames(frames, match):
    with pytest.raises(UserError, match=match):
        sample_clip(frames, 4)


def test_pick_other_demo_never_returns_the_imitated_demo():
    rng = np.random.default_rng(0)
    demos = ["demo_0", "demo_1", "demo_2", "demo_3"]
    picks = [pick_other_demo(demos, "demo_2", rng) for _ in range(200)]
    assert "demo_2" not in picks and set(picks) == {"demo_0", "demo_1", "demo_3"}
    a = [pick_other_demo(demos, "demo_0", np.random.default_rng(5)) for _ in range(3)]
    assert a == [pick_other_demo(demos, "demo_0", np.random.default_rng(5)) for _ in range(3)]
    with pytest.raises(UserError, match="at least 2 demos"):
        pick_other_demo(["demo_7"], "demo_7", rng)
    assert pick_other_demo(["demo_7"], "demo_7", rng, allow_same=True) == "demo_7"
    with pytest.raises(UserError, match="no demos"):
        pick_other_demo([], None, rng)
