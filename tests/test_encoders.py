"""Language encoder (real MiniLM, cache, bad input, other architectures), task conditioning, save/load.

Vision pieces (FiLM, backbones, video encoder, clip sampling) are in test_encoders_vision.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mtil.datasets.errors import UserError
from mtil.encoders.backbones import ResNet18Backbone, SmallCNN
from mtil.encoders.conditioning import ConditioningConfig, TaskConditioner, make_conditioner
from mtil.encoders.film import FiLM
from mtil.encoders.language import LanguageEncoder, default_model_path
from mtil.encoders.video import VideoEncoder

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Canonical instruction first, then paraphrases. Tasks 1 and 3 share a scene and colours on purpose.
TASKS = {
    "lift": ["lift the red cube", "pick up the red block", "raise the red cube off the table"],
    "drawer": ["open the drawer", "pull the drawer open", "slide the drawer out"],
    "stack": [
        "stack the green cube on the blue cube",
        "put the green block on top of the blue block",
        "place the green cube onto the blue cube",
    ],
    "door": ["close the door", "shut the door", "push the door closed"],
    "bowl": [
        "push the yellow bowl to the left",
        "slide the yellow bowl leftward",
        "move the yellow bowl to the left side",
    ],
}


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> LanguageEncoder:
    """The real default MiniLM with a private cache (loaded once for the module)."""
    return LanguageEncoder(cache_dir=tmp_path_factory.mktemp("text_cache"))


# -- language encoder --------------------------------------------------------------------------


def test_paraphrases_are_closer_than_other_tasks(minilm):
    keys = list(TASKS)
    canon = minilm.encode([TASKS[k][0] for k in keys])  # (K, 384)
    for i, k in enumerate(keys):
        para = minilm.encode(TASKS[k][1:])  # (P, 384)
        sims = para @ canon.T  # (P, K)
        assert (sims.argmax(dim=1) == i).all(), f"{k}: a paraphrase is nearer another task: {sims}"
    # Averaged over all instructions, a task's phrasings are closer to each other than to other tasks'.
    emb = minilm.encode([t for k in keys for t in TASKS[k]])
    labels = torch.tensor([i for i, k in enumerate(keys) for _ in TASKS[k]])
    sims = emb @ emb.T
    for i, k in enumerate(keys):
        own = labels == i
        block = sims[own][:, own]
        intra = (block.sum() - block.diagonal().sum()) / (block.numel() - len(block))
        inter = sims[own][:, ~own].mean()
        assert intra > inter + 0.2, f"{k}: mean cosine within the task {intra:.3f}, to other tasks {inter:.3f}"


def test_encode_shape_norm_dtype_and_order(minilm):
    texts = ["open the drawer", "lift the red cube", "open the drawer"]
    emb = minilm.encode(texts)
    assert emb.shape == (3, 384) and emb.dtype == torch.float32 and minilm.dim == 384
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert torch.equal(emb[0], emb[2]) and not torch.allclose(emb[0], emb[1])
    # Embedding a text alone (no padding) gives the same vector as inside a padded batch.
    alone = minilm._embed(["open the drawer"])[0]  # bypass the cache on purpose
    torch.testing.assert_close(torch.from_numpy(alone), emb[0], atol=1e-5, rtol=1e-5)


def test_cache_hit_does_not_load_model(minilm):
    texts = ["stack the green cube on the blue cube", "close the door"]
    first = minilm.encode(texts)
    files = sorted(minilm.cache_dir.iterdir())
    assert len([f for f in files if f.suffix == ".npy"]) >= 2 and not [f for f in files if f.suffix == ".tmp"]

    again = LanguageEncoder(cache_dir=minilm.cache_dir.parent)  # new object, same cache
    assert again.cache_dir == minilm.cache_dir and not again.model_loaded
    assert torch.equal(again.encode(texts), first)
    assert again.dim == 384
    assert not again.model_loaded, "every text was cached, yet the model was loaded"
    # A text not in the cache does load it: the laziness is real, not a model that never loads.
    again.encode(texts + ["a text nobody cached"])
    assert again.model_loaded


def test_corrupt_cache_entry_is_recomputed(minilm):
    good = minilm.encode(["open the drawer"])
    path = minilm._cache_file("open the drawer")
    path.write_bytes(b"not a numpy file")
    again = minilm.encode(["open the drawer"])  # recomputed alone: equal up to padding round-off
    torch.testing.assert_close(again, good, atol=1e-5, rtol=1e-5)
    assert np.array_equal(np.load(path), again[0].numpy())  # and the cache entry was rewritten


def test_repo_root_load_and_cache_hit_in_fresh_processes(minilm, tmp_path):
    """From the repo root a bare `datasets` resolves to our folder; the encoder must not care."""
    texts = ["lift the red cube", "open the drawer"]
    code = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.find_spec('datasets')\n"
        "from mtil.encoders.language import LanguageEncoder\n"
        "enc = LanguageEncoder()\n"
        f"emb = enc.encode({texts!r})\n"
        "hf = None\n"
        "if 'transformers' in sys.modules:\n"
        "    from transformers.utils import is_datasets_available\n"
        "    hf = is_datasets_available()\n"
        "print(json.dumps({'datasets_origin': spec.origin if spec else None, 'loaded': enc.model_loaded,\n"
        "    'hf_datasets_available': hf,\n"
        "    'transformers': 'transformers' in sys.modules, 'bare_datasets': 'datasets' in sys.modules,\n"
        "    'cache_dir': str(enc.cache_dir), 'emb': emb.tolist()}))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MTIL_CACHE_DIR=str(tmp_path))

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold = run()
    # The hazard is present (cwd first on sys.path, our datasets/ found first), yet the model loaded
    # and nothing imported our folder under the bare name `datasets`.
    assert cold["datasets_origin"] == str(REPO_ROOT / "datasets" / "__init__.py")
    assert cold["loaded"] and not cold["bare_datasets"]
    # transformers was not fooled into believing Hugging Face `datasets` is installed (it is not)
    # ... although transformers, asked now, believes a `datasets` package exists: that is the hazard,
    # and why our entry points never put the repo root on sys.path (next test).
    assert cold["hf_datasets_available"] is True
    assert Path(cold["cache_dir"]).parent == tmp_path / "text_embeddings"  # MTIL_CACHE_DIR honoured
    torch.testing.assert_close(torch.tensor(cold["emb"]), minilm.encode(texts), atol=1e-5, rtol=1e-5)

    warm = run()  # a second process: all cached -> neither the model nor transformers is loaded
    assert not warm["loaded"] and not warm["transformers"]
    assert warm["emb"] == cold["emb"]


def test_entry_points_from_repo_root_see_the_real_datasets(minilm, tmp_path):
    """Started from the repo root the way the `mtil`/`pytest` console scripts start (script directory,
    not the working directory, first on sys.path), transformers sees the truth about Hugging Face
    `datasets`, the language encoder loads, and importing our folder under the bare name fails loudly."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import importlib.util, json\n"
        "from mtil.encoders.language import LanguageEncoder\n"
        f"enc = LanguageEncoder(cache_dir={str(tmp_path / 'cache')!r})\n"
        "emb = enc.encode(['lift the red cube'])\n"
        "from transformers.utils import is_datasets_available\n"
        "spec = importlib.util.find_spec('datasets')\n"
        "print(json.dumps({'hf': is_datasets_available(), 'origin': spec.origin if spec else None,\n"
        "                  'loaded': enc.model_loaded, 'norm': float(emb.norm())}))\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["origin"] is None or not got["origin"].startswith(str(REPO_ROOT))
    assert got["hf"] is (got["origin"] is not None) and got["loaded"] and abs(got["norm"] - 1) < 1e-5
    # and where the repo root is on sys.path, `import datasets` names the mix-up instead of half-working
    bad = subprocess.run([sys.executable, "-c", "import datasets"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "Hugging Face" in bad.stderr


@pytest.mark.parametrize(
    "texts, match",
    [
        ([], "empty list"),
        ([""], "#0 is empty"),
        (["lift the cube", "   "], "#1 is empty"),
        (["lift the cube", 3], "#1 is a int"),
        ("lift the cube", "list of strings"),
    ],
)
def test_bad_texts(minilm, texts, match):
    with pytest.raises(UserError, match=match):
        minilm.encode(texts)


def _model_dir_without_weights(tmp_path: Path) -> Path:
    d = tmp_path / "no_weights"
    d.mkdir()
    shutil.copy(Path(default_model_path()) / "config.json", d / "config.json")
    return d


@pytest.mark.parametrize(
    "make_path, match",
    [
        (lambda tmp: "bert-base-uncased", "does not exist.*nothing is downloaded"),
        (lambda tmp: str(tmp / "missing"), "does not exist"),
        (lambda tmp: str(tmp), "not a Hugging Face model directory"),
        (_model_dir_without_weights, "has no weights"),
    ],
)
def test_bad_model_paths_fail_fast(tmp_path, make_path, match):
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=match):
        LanguageEncoder(make_path(tmp_path), cache_dir=tmp_path / "cache")
    assert time.perf_counter() - t0 < 1.0


def test_corrupt_weights_fail_at_load_with_user_error(tmp_path):
    d = _model_dir_without_weights(tmp_path)
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    enc = LanguageEncoder(d, cache_dir=tmp_path / "cache")  # looks like a model dir: lazily accepted
    with pytest.raises(UserError, match="could not load language model"):
        enc.encode(["lift the cube"])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Tiny random T5 and CLIP checkpoints saved to local dirs (MiniLM's tokenizer), plus the models."""
    from transformers import CLIPConfig, CLIPModel, T5Config, T5EncoderModel

    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4))
    text_cfg = dict(
        vocab_size=30522, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, bos_token_id=101, eos_token_id=102, pad_token_id=0,
    )  # fmt: skip
    vision_cfg = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32)
    clip = CLIPModel(CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=8))
    out = {}
    for name, model, tower in (("t5", t5, t5), ("clip", clip, clip.text_model)):
        model.save_pretrained(root / name)
        for f in TOKENIZER_FILES:
            shutil.copy(Path(default_model_path()) / f, root / name / f)
        out[name] = (root / name, tower.eval())
    return out


@pytest.mark.parametrize("name, dim", [("t5", 32), ("clip", 24)])
def test_other_architectures_load_by_path(tiny_models, tmp_path, name, dim):
    from transformers import AutoTokenizer

    path, tower = tiny_models[name]
    texts = ["lift the red cube", "open the drawer please"]
    enc = LanguageEncoder(path, cache_dir=tmp_path)
    emb = enc.encode(texts)
    assert enc.dim == dim and emb.shape == (2, dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    # The saved weights (T5 encoder / CLIP text tower) are the ones used: compare with the model itself.
    batch = AutoTokenizer.from_pretrained(path)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = tower(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=1e-5)


def test_weights_not_matching_config_are_refused(tiny_models, tmp_path):
    src, _ = tiny_models["t5"]
    bad = tmp_path / "t5_more_layers"
    shutil.copytree(src, bad)
    config = json.loads((bad / "config.json").read_text())
    config["num_layers"] = 3  # the weights hold 2 layers: layer 3 would stay random
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="does not match the config"):
        LanguageEncoder(bad, cache_dir=tmp_path / "cache").encode(["lift the cube"])


# -- task conditioning -------------------------------------------------------------------------


def _task_input(kind: str, b: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == "language":
        return torch.nn.functional.normalize(torch.randn(b, 384, generator=g), dim=-1)
    if kind == "video":
        return torch.randint(0, 256, (b, 3, 3, 32, 32), generator=g, dtype=torch.uint8)
    if kind == "onehot":
        return torch.tensor([0, 2][:b])
    return torch.randint(0, 256, (b, 3, 40, 40), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("kind", ["language", "video", "onehot", "goal_image", "mixed"])
def test_every_conditioning_kind_gives_the_configured_size(kind):
    cond = make_conditioner(dict(kind=kind, out_dim=24, num_tasks=3, video_frames=4, video_frame_dim=32))
    z = cond(_task_input(kind))
    assert z.shape == (2, 24) and z.dtype == torch.float32 and torch.isfinite(z).all()
    assert make_conditioner(cond.cfg.to_dict()).cfg == cond.cfg


def test_mixed_conditioner_takes_an_instruction_or_a_goal_image():
    """One z space, two inputs: a language embedding goes through the projection, a goal image through
    the CNN (and each matches the single-input kinds' module of the same weights)."""
    torch.manual_seed(0)
    mixed = make_conditioner(dict(kind="mixed", out_dim=16)).eval()
    words, goal = _task_input("language"), _task_input("goal_image")
    with torch.no_grad():
        z_words, z_goal = mixed(words), mixed(goal)
        torch.testing.assert_close(z_words, mixed.project(words))
        torch.testing.assert_close(z_goal, mixed.backbone(goal))
    assert z_words.shape == z_goal.shape == (2, 16) and not torch.allclose(z_words, z_goal)
    with pytest.raises(UserError, match="video conditioner"):
        mixed.embed_video(_task_input("video"))


@pytest.mark.parametrize("kind, language, goal, video, instruction, default", [
    ("language", True, False, False, True, "language"),
    ("video", True, False, True, True, "video"),
    ("onehot", False, False, False, True, "language"),  # named by its training instruction
    ("goal_image", False, True, False, False, "goal_image"),
    ("mixed", True, True, False, True, "language"),
])
def test_what_each_kind_uses(kind, language, goal, video, instruction, default):
    cfg = ConditioningConfig(kind=kind, num_tasks=3)
    assert (cfg.uses_language, cfg.uses_goal_image, cfg.uses_video) == (language, goal, video)
    assert (cfg.spec.takes_instruction, cfg.spec.default_condition) == (instruction, default)
    assert cfg.spec.needs_instructions == (kind != "goal_image")
    cond = make_conditioner(cfg)  # the modules built follow the same properties
    assert isinstance(cond, TaskConditioner) and type(cond) is cfg.spec
    assert (hasattr(cond, "proj"), hasattr(cond, "backbone"), hasattr(cond, "video")) == (language, goal, video)


def test_video_conditioner_embeds_in_language_space_and_accepts_words():
    cond = make_conditioner(ConditioningConfig(kind="video", out_dim=16, video_frames=4, video_frame_dim=32))
    e = cond.embed_video(_task_input("video"))
    assert e.shape == (2, 384)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    assert cond.project(_task_input("language")).shape == (2, 16)  # a task given in words instead


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="text"), "unknown"),
        (dict(kind="onehot"), "num_tasks"),
        (dict(out_dim=0), "out_dim"),
        (dict(video_frame_dim=30), "divisible by 4"),
        (dict(video_layers=-1), "video_layers"),
    ],
)
def test_conditioning_config_validation(kwargs, match):
    with pytest.raises(UserError, match=match):
        ConditioningConfig(**kwargs)
    with pytest.raises(UserError, match="unknown field"):
        make_conditioner(dict(kind="language", dimension=3))


def test_conditioner_bad_inputs():
    onehot = make_conditioner(dict(kind="onehot", out_dim=8, num_tasks=3))
    with pytest.raises(UserError, match=r"in \[0, 3\)"):
        onehot(torch.tensor([0, 3]))
    with pytest.raises(UserError, match="int64"):
        onehot(torch.tensor([0.0, 1.0]))
    language = make_conditioner(dict(kind="language", out_dim=8))
    with pytest.raises(UserError, match=r"\(B, 384\)"):
        language(torch.randn(2, 512))
    with pytest.raises(UserError, match="video conditioner"):
        language.embed_video(_task_input("video"))
    goal = make_conditioner(dict(kind="goal_image", out_dim=8))
    with pytest.raises(UserError, match="uint8"):
        goal(torch.rand(2, 3, 32, 32))


# -- save / load round trip of every module ----------------------------------------------------

IMG = torch.randint(0, 256, (2, 3, 36, 36), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
Z = torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
ROUND_TRIP = {
    "film": (lambda: FiLM(8, 5), lambda m: m(torch.randn(2, 5, 3, 3, generator=torch.Generator().manual_seed(3)), Z)),
    "small_cnn": (lambda: SmallCNN(cond_dim=8, out_dim=16), lambda m: m(IMG, Z)),
    "resnet18": (lambda: ResNet18Backbone(cond_dim=8, out_dim=16), lambda m: m(IMG, Z)),
    "video": (lambda: VideoEncoder(out_dim=32, frame_dim=32, max_frames=4), lambda m: m(_task_input("video"))),
    **{
        f"conditioner_{k}": (
            lambda k=k: make_conditioner(ConditioningConfig(k, 8, num_tasks=3, video_frames=4, video_frame_dim=32)),
            lambda m, k=k: m(_task_input(k)),
        )
        for k in ("language", "video", "onehot", "goal_image", "mixed")
    },
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_state_dict_round_trip(name, tmp_path):
    build, run = ROUND_TRIP[name]
    torch.manual_seed(0)
    trained = build()
    with torch.no_grad():  # FiLM layers are the identity at init: move them so their weights matter
        for mod in trained.modules():
            if isinstance(mod, FiLM):
                mod.linear.weight.normal_(0, 0.1)
                mod.linear.bias.normal_(0, 0.1)
    trained.eval()
    torch.save(trained.state_dict(), tmp_path / "m.pt")
    torch.manual_seed(1)
    fresh = build().eval()
    with torch.no_grad():
        expected = run(trained)
        assert not torch.allclose(run(fresh), expected), "a fresh module already matches: the test is vacuous"
        fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True), strict=True)
        torch.testing.assert_close(run(fresh), expected)
