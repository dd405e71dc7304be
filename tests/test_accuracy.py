"""ImageNet evaluation: exact top-1 / top-5 on generated data, every layout, every backend, clear errors, the cache.

The data are tiny solid-color images written with PIL. The model classifies an image by its mean color (nearest of
seven gray levels), so every image's ranking of the classes is known in advance and the expected counts are exact.
"""
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import ghostfast
from ghostfast.accuracy import evaluate, load_results, measured_top1, save_result
from ghostfast.cli import main
from ghostfast.imagenet import open_imageset
from ghostfast.preprocess import Preprocess

GRAYS = (0, 20, 50, 95, 150, 200, 255)  # uneven steps: no two classes are equally far from any shown color
SYNSETS = [f"n0000000{k}" for k in range(len(GRAYS))]
PRE = Preprocess((16, 16), 16, "bicubic", source="test")
# (true class, shown class): rank of the true class among the 7 = |distance order|; see the module docstring.
SHOWN = [(k, k) for k in range(7)] + [(6, 0), (1, 0), (4, 0), (5, 0), (0, 6), (2, 6)]
CORRECT1, CORRECT5 = 7, 10  # the diagonal; plus (1, 0), (4, 0) and (2, 6) are within the 5 nearest
SIZES = [(20, 30), (30, 20), (16, 16), (40, 23), (23, 40)]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are tiny: one intra-op thread is fastest, and immune to a busy machine delaying the second
    thread at every parallel region (seconds per forward pass under load)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


class NearestGray(nn.Module):
    """Logits 2 c_k . m - |c_k|^2 of the mean normalized color m: argmax = nearest class color."""

    def __init__(self, pre: Preprocess = PRE):
        super().__init__()
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten(1)
        self.fc = nn.Linear(3, len(GRAYS))
        mean, std = np.array(pre.mean), np.array(pre.std)
        c = np.stack([(np.full(3, g / 255.0) - mean) / std for g in GRAYS])
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(2 * c, dtype=torch.float32))
            self.fc.bias.copy_(torch.tensor(-(c ** 2).sum(1), dtype=torch.float32))

    def forward(self, x):
        return self.fc(self.flatten(self.pool(x)))


def _save(path, gray: int, n: int) -> None:
    w, h = SIZES[n % len(SIZES)]
    mode = ("RGB", "L", "RGBA")[n % 3]
    img = Image.new(mode, (w, h), gray if mode == "L" else (gray, gray, gray) + ((128,) if mode == "RGBA" else ()))
    fmt = "PNG" if mode != "RGB" or n % 2 else "JPEG"
    img.save(path.with_suffix(".png" if fmt == "PNG" else ".JPEG"), fmt)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet") / "val"
    for n, (true, shown) in enumerate(SHOWN):
        (root / SYNSETS[true]).mkdir(parents=True, exist_ok=True)
        _save(root / SYNSETS[true] / f"ILSVRC2012_val_{n:08d}", GRAYS[shown], n)
    return root


@pytest.fixture(scope="module")
def flat_folder(image_folder, tmp_path_factory):
    """The same images in one folder, with Kaggle's LOC_val_solution.csv in the parent folder."""
    top = tmp_path_factory.mktemp("kaggle")
    flat = top / "val"
    flat.mkdir()
    rows = ["ImageId,PredictionString"]
    for p in sorted(image_folder.rglob("ILSVRC2012_val_*")):
        (flat / p.name).write_bytes(p.read_bytes())
        rows.append(f"{p.stem},{p.parent.name} 1 2 10 12 {p.parent.name} 3 4 9 9")
    (top / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return flat


def _check(r, images=len(SHOWN), c1=CORRECT1, c5=CORRECT5):
    assert (r.images, r.correct1, r.correct5) == (images, c1, c5)
    assert r.top1 == pytest.approx(100 * c1 / images) and r.top5 == pytest.approx(100 * c5 / images)


# ---- exact counts ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers,batch", [(0, 4), (2, 5), (3, 64)])
def test_image_folder_gives_exact_top1_top5(image_folder, workers, batch):
    r = evaluate(NearestGray(), image_folder, preprocess=PRE, workers=workers, batch=batch)
    _check(r)
    assert r.layout == "imagefolder" and r.backend == "torch" and r.preprocess["crop"] == [16, 16]


@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
def test_other_backends_give_the_same_counts(image_folder, backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    _check(evaluate(NearestGray(), image_folder, backend=backend, preprocess=PRE, batch=4, workers=0))


def test_kaggle_flat_layout_is_found_and_scores_the_same(flat_folder):
    images = open_imageset(flat_folder)
    assert images.layout == "flat + LOC_val_solution.csv" and images.classes == SYNSETS
    _check(evaluate(NearestGray(), flat_folder, preprocess=PRE, workers=0))


def test_filename_label_file_with_indices_and_synsets(flat_folder, tmp_path):
    names = sorted(p.name for p in flat_folder.iterdir())
    truth = {f"ILSVRC2012_val_{n:08d}": t for n, (t, _) in enumerate(SHOWN)}
    by_index = tmp_path / "val.txt"
    by_index.write_text("".join(f"{name} {truth[name.split('.')[0]]}\n" for name in names))
    _check(evaluate(NearestGray(), flat_folder, labels=by_index, preprocess=PRE, workers=0))
    by_synset = tmp_path / "synsets.txt"  # names without extension, synset labels
    by_synset.write_text("".join(f"{name.split('.')[0]} {SYNSETS[truth[name.split('.')[0]]]}\n" for name in names))
    _check(evaluate(NearestGray(), flat_folder, labels=by_synset, preprocess=PRE, workers=0))


def test_synset_mapping_file_fixes_the_class_order(flat_folder, tmp_path):
    (tmp_path / "LOC_synset_mapping.txt").write_text("".join(f"{s} gray {g}\n" for s, g in zip(SYNSETS, GRAYS)))
    gt = tmp_path / "LOC_val_solution.csv"
    gt.write_text((flat_folder.parent / "LOC_val_solution.csv").read_text())
    assert open_imageset(flat_folder, labels=gt).classes == SYNSETS


def test_limit_spreads_over_the_set(image_folder):
    r = evaluate(NearestGray(), image_folder, preprocess=PRE, limit=4, workers=0)
    assert r.images == 4 and r.limit == 4
    labels = open_imageset(image_folder).subset(4).labels
    assert len(set(labels)) == 4  # evenly spread: not the first four images of class 0


# ---- a real network: native and torch agree -------------------------------------------------------------------------
def _random_timm_checkpoint(path):
    from importlib import resources
    shapes = json.loads(resources.files("ghostfast").joinpath("data/checkpoint_keys/timm__ghostnet_100.json")
                        .read_text())
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0)
        elif k.endswith("running_var") or (len(s) == 1 and k.rsplit(".", 1)[0] + ".running_var" in shapes
                                           and k.endswith("weight")):
            sd[k] = 0.5 + torch.rand(s, generator=g)
        elif len(s) > 1:
            sd[k] = torch.randn(s, generator=g) * (2.0 / max(1, int(np.prod(s[1:])))) ** 0.5
        else:
            sd[k] = 0.1 * torch.randn(s, generator=g)
    torch.save(sd, path)


@pytest.fixture(scope="module")
def ghostnet_case(tmp_path_factory):
    """GhostNet with a synthetic timm checkpoint, and noise images labeled with torch's own clear predictions."""
    d = tmp_path_factory.mktemp("ghostnet")
    ckpt = d / "ghostnet_100.pth"
    _random_timm_checkpoint(ckpt)
    model = ghostfast.load_weights("ghostnet_100", ckpt)
    from ghostfast.checkpoint_formats import get_format
    pre = get_format("timm:ghostnet_100").preprocess.replace(crop=64, resize=72)
    data = d / "val"
    data.mkdir()
    rng = np.random.default_rng(0)
    paths = [data / f"img{n:02d}.png" for n in range(16)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(path)
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.stack([pre(Image.open(p)) for p in paths])))
    top2 = logits.topk(2).values
    lines = []
    for path, row, (a, b) in zip(paths, logits, top2):
        if float(a - b) > 1e-3 * float(row.abs().max()):  # keep images without near-ties
            lines.append(f"{path.name} {int(row.argmax())}\n")
        else:
            path.unlink()
    (d / "val.txt").write_text("".join(lines))
    return ckpt, data, d / "val.txt", len(lines)


def test_native_and_torch_agree_on_a_real_network(ghostnet_case):
    ckpt, data, labels, n = ghostnet_case
    assert n >= 8
    results = {b: evaluate("ghostnet_100", data, weights=ckpt, backend=b, labels=labels, batch=8, workers=2,
                           preprocess={"crop": 64, "resize": 72}) for b in ("torch", "native")}
    for r in results.values():
        assert r.weights_format == "timm:ghostnet_100" and r.published_top1 == 73.958
        assert (r.images, r.correct1) == (n, n)  # the labels are torch's predictions
    assert results["native"].correct5 == results["torch"].correct5 == n
    assert "timm default pretrained_cfg of ghostnet_100.in1k" in results["torch"].preprocess["source"]


# ---- clear errors ---------------------------------------------------------------------------------------------------
def test_bad_data_folders(tmp_path, image_folder):
    with pytest.raises(ValueError, match="does not exist"):
        evaluate(NearestGray(), tmp_path / "nope", preprocess=PRE)
    with pytest.raises(ValueError, match="neither class folders nor images"):
        evaluate(NearestGray(), tmp_path, preprocess=PRE)
    (tmp_path / "n00000001").mkdir()
    with pytest.raises(ValueError, match="hold no images.*n00000001"):
        evaluate(NearestGray(), tmp_path, preprocess=PRE)
    with pytest.raises(TypeError, match="folder path"):
        open_imageset(3)


def test_hidden_folders_are_not_classes(tmp_path):
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / SYNSETS[0] / ".cache").mkdir(parents=True)
    _save(tmp_path / SYNSETS[0] / "a", 0, 1)
    _save(tmp_path / SYNSETS[0] / ".cache" / "b", 0, 1)
    images = open_imageset(tmp_path)
    assert images.classes == [SYNSETS[0]] and [p.name for p in images.paths] == ["a.png"]


def test_unreadable_image_is_named(tmp_path):
    root = tmp_path / "val"
    (root / SYNSETS[0]).mkdir(parents=True)
    _save(root / SYNSETS[0] / "good", 0, 1)
    (root / SYNSETS[0] / "broken.JPEG").write_bytes(b"\xff\xd8 definitely not a jpeg")
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(3, 1))
    for workers in (0, 2):
        with pytest.raises(ValueError, match=r"cannot read image .*broken\.JPEG"):
            evaluate(model, root, preprocess=PRE, workers=workers)


def test_class_count_mismatch(image_folder, tmp_path):
    # (a zoo model without weights: evaluate warns that it scores random weights, before the data is checked)
    with pytest.raises(ValueError, match="has 7 classes but mobilenet_v3_small predicts 1000"), \
            pytest.warns(UserWarning, match="random weights"):
        evaluate("mobilenet_v3_small", image_folder, preprocess={"crop": 32, "resize": 32})
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        _save(tmp_path / split / "a", 0, 1)
    with pytest.raises(ValueError, match="point --data at the validation folder"), \
            pytest.warns(UserWarning, match="random weights"):
        evaluate("mobilenet_v3_small", tmp_path, preprocess={"crop": 32, "resize": 32})


def test_ground_truth_problems(flat_folder, tmp_path):
    names = sorted(p.name for p in flat_folder.iterdir())
    cases = {
        "missing.txt": ("".join(f"{n} 0\n" for n in names) + "ILSVRC2012_val_99999999.JPEG 1\n",
                        "1 image.*not in"),
        "unlabeled.txt": ("".join(f"{n} 0\n" for n in names[1:]), "have no entry in unlabeled.txt"),
        "devkit.txt": ("".join("65\n" for _ in names), "ILSVRC2012_IDs, not class indices"),
        "mixed.txt": ("".join(f"{n} {'n00000001' if i else 3}\n" for i, n in enumerate(names)),
                      "all be class indices or all synsets"),
        "range.txt": ("".join(f"{n} {7 if i == 0 else 1}\n" for i, n in enumerate(names)),
                      "label 7 is out of range"),
        "short.txt": ("oops\n", "expected '<file name> <label>'"),
    }
    for fname, (text, match) in cases.items():
        gt = tmp_path / fname
        gt.write_text(text)
        with pytest.raises(ValueError, match=match):
            evaluate(NearestGray(), flat_folder, labels=gt, preprocess=PRE, workers=0)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    _save(lonely / "x", 0, 1)
    with pytest.raises(ValueError, match="no ground-truth file was found"):
        evaluate(NearestGray(), lonely, preprocess=PRE)


def test_bad_arguments(image_folder):
    for kwargs, err in [({"backend": "tensorrt"}, ValueError), ({"limit": 0}, ValueError),
                        ({"batch": "8"}, ValueError), ({"workers": -1}, ValueError), ({"threads": 0}, ValueError),
                        ({"preprocess": "bicubic"}, TypeError), ({"preprocess": {"resize": 8}}, ValueError)]:
        with pytest.raises(err):
            evaluate(NearestGray(), image_folder, **{"preprocess": PRE, **kwargs})
    with pytest.raises(ValueError, match="needs preprocess"):
        evaluate(NearestGray(), image_folder)
    with pytest.raises(ValueError, match="give a model"):
        evaluate(None, image_folder)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        PRE.replace(colour="red")


def test_native_refuses_tf_padding_clearly(image_folder):
    from importlib import resources
    shapes = json.loads(resources.files("ghostfast").joinpath("data/checkpoint_keys/timm__efficientnet_lite0.json")
                        .read_text())
    sd = {k: torch.zeros(s) if s else torch.tensor(0) for k, s in shapes.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ghostfast.load_weights("efficientnet_lite0", sd, format="timm:tf_efficientnet_lite0")
    with pytest.raises(ValueError, match="TensorFlow 'SAME' padding.*use backend torch or onnxruntime"):
        evaluate(model, image_folder, backend="native", preprocess={"crop": 32, "resize": 32})


# ---- preprocessing --------------------------------------------------------------------------------------------------
def test_preprocess_geometry_and_normalization():
    # Column index as the pixel value; the shorter side already equals `resize`, so only the crop acts.
    # (257 - 224) / 2 = 16.5 rounds to 16 (Python's round, as torchvision's center_crop).
    cols = np.tile(np.arange(257, dtype=np.uint8), (224, 1))
    img = Image.fromarray(np.stack([cols] * 3, axis=-1))
    x = Preprocess((224, 224), 224, "nearest", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(img)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert x[0, 0, 0] == np.float32(16) / np.float32(255)
    y = Preprocess.torchvision()(img)
    assert y.shape == (3, 224, 224)
    assert Preprocess.timm(224, 0.875).resize == 256
    assert Preprocess.timm(240, 0.882).resize == 272 and Preprocess.timm(260, 0.890).resize == 292


def test_formats_choose_their_preprocessing():
    from ghostfast.checkpoint_formats import get_format
    tv = get_format("torchvision:mobilenet_v2").preprocess
    assert (tv.resize, tv.crop, tv.interpolation, tv.mean) == (256, (224, 224), "bilinear", (0.485, 0.456, 0.406))
    tg = get_format("timm:ghostnet_100").preprocess
    assert (tg.resize, tg.crop, tg.interpolation) == (256, (224, 224), "bicubic")
    lite2 = get_format("timm:tf_efficientnet_lite2").preprocess
    assert (lite2.resize, lite2.crop, lite2.mean, lite2.std) == (292, (260, 260), (0.5,) * 3, (0.5,) * 3)
    assert get_format("torchvision:efficientnet_b0").preprocess.interpolation == "bicubic"
    assert get_format("torchvision:shufflenet_v2_x2_0").preprocess.resize == 232


# ---- CLI and the results cache --------------------------------------------------------------------------------------
def test_cli_eval_writes_json_and_the_cache(ghostnet_case, tmp_path, capsys):
    ckpt, data, labels, n = ghostnet_case
    results = tmp_path / "accuracy.json"
    argv = ["eval", "--data", str(data), "--weights", str(ckpt), "--labels", str(labels), "--crop", "64",
            "--resize", "72", "--limit", "6", "--batch", "4", "--results", str(results), "--no-progress"]
    assert main(argv + ["--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "ghostnet_100" and out["images"] == 6 and out["top1"] == 100.0 and out["limit"] == 6
    assert main(argv + ["--backend", "native"]) == 0
    text = capsys.readouterr().out
    assert "| ghostnet_100 |" in text and "timm:ghostnet_100" in text and "73.958" in text
    assert len(load_results(results)) == 2  # torch and native are separate records
    assert measured_top1("ghostnet", path=results) is None  # 6 images: partial, never a stand-in
    m = measured_top1("ghostnet", path=results, partial=True)
    assert m["top1"] == 100.0 and m["images"] == 6 and m["source"].startswith("partial: 6 of 50,000 images")
    assert main(["eval", "--data", str(tmp_path / "nope"), "--model", "ghostnet", "--random-weights", "--no-save"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_results_cache_rules(image_folder, tmp_path):
    path = tmp_path / "acc.json"
    assert measured_top1("mobilenet_v2", path=path) is None
    base = evaluate(NearestGray(), image_folder, preprocess=PRE, workers=0)
    full = {**base.as_dict(), "model": "mobilenet_v2"}
    limited = {**full, "limit": 5, "images": 5, "correct1": 5, "correct5": 5, "date": "2099-01-01"}
    from ghostfast.accuracy import EvalResult
    derived = ("top1", "top5", "full_set", "set")
    fields = {k: v for k, v in full.items() if k not in derived}
    save_result(EvalResult(**fields), path)
    save_result(EvalResult(**fields), path)  # the same run again replaces, not appends
    save_result(EvalResult(**{k: v for k, v in limited.items() if k not in derived}), path)
    assert len(load_results(path)) == 2
    assert measured_top1("mobilenet_v2", path=path) is None  # neither is the full validation set
    m = measured_top1("mobilenetv2", path=path, partial=True)  # aliases resolve; the bigger run beats a newer one
    assert m["images"] == len(SHOWN) and m["limit"] is None
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        measured_top1("mobilenet_v2", path=path)
    with pytest.raises(ValueError, match="unknown model"):
        measured_top1("nosuchnet", path=path)
