"""Checkpoint loading: every supported format, the containers users have, weights-only safety, clear mismatches.

Checkpoints are synthesized from the reference key/shape lists (data/checkpoint_keys) with random values. A format
that loads unchanged must give exactly the outputs of the zoo model with the same tensors assigned directly. A
format that is renamed (timm -> torchvision layout) or that changes the computation (the tf_ ports) is checked
against an independent functional forward of timm's architecture written below from timm's arch strings: a wrong
name mapping, a missed shortcut or a wrong padding changes its output.
"""
import argparse
import json
import re
import warnings
from importlib import resources

import pytest
import torch
import torch.nn.functional as F

import ghostfast
from ghostfast import models
from ghostfast.checkpoint_formats import FORMATS, get_format, timm_to_torchvision
from ghostfast.checkpoints import CheckpointMismatch, detect_format, load_weights, read_state_dict

# 32 px: every stride-2 conv still sees even sizes (TF "SAME" pads asymmetrically), at a fraction of the cost.
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are tiny: one intra-op thread is fastest, and immune to a busy machine delaying the second
    thread at every parallel region (seconds per forward pass under load)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def layout(keys_file: str) -> dict:
    return json.loads(resources.files("ghostfast").joinpath("data", "checkpoint_keys", keys_file).read_text())


def random_state_dict(shapes: dict, seed: int = 0) -> dict:
    """Random tensors of the given shapes, scaled so deep nets stay finite; BN statistics randomized."""
    g = torch.Generator().manual_seed(seed)
    bn = {k.rsplit(".", 1)[0] for k in shapes if k.endswith("running_var")}
    sd = {}
    for k, shape in shapes.items():
        prefix, leaf = k.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            sd[k] = torch.tensor(1234)
        elif prefix in bn:
            lo, hi = {"weight": (0.5, 1.5), "running_var": (0.5, 2.0)}.get(leaf, (-0.2, 0.2))
            sd[k] = lo + (hi - lo) * torch.rand(shape, generator=g)
        elif len(shape) > 1:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            sd[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            sd[k] = 0.1 * torch.randn(shape, generator=g)
    return sd


# ---- an independent functional forward of timm's EfficientNet / MobileNetV3 generators ------------------------------
# From timm's arch_def strings: the stride of each stage's first block, the stages with ReLU ("nre"), the SE
# activation / gate, the head. Kernel sizes, widths, expansion and SE widths come from the weights themselves.
TIMM_ARCHS = {
    "mobilenetv2_100": dict(act="relu6", strides=(1, 2, 2, 2, 1, 2, 1)),
    "mobilenetv3_large_100": dict(act="hardswish", strides=(1, 2, 2, 2, 1, 2, 1), relu_stages=(0, 1, 2),
                                  se=("relu", "hardsigmoid"), head="mnv3"),
    "mobilenetv3_small_100": dict(act="hardswish", strides=(2, 2, 2, 1, 2, 1), relu_stages=(0, 1),
                                  se=("relu", "hardsigmoid"), head="mnv3"),
    "mnasnet_100": dict(act="relu", strides=(1, 2, 2, 2, 1, 2, 1)),
    "efficientnet_b0": dict(act="silu", strides=(1, 2, 2, 2, 1, 2, 1), se=("silu", "sigmoid")),
    **{f"{tf}efficientnet_lite{i}": dict(act="relu6", strides=(1, 2, 2, 2, 1, 2, 1), tf=bool(tf))
       for tf in ("", "tf_") for i in range(3)},
}
ACT = {"relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid, "silu": F.silu,
       "sigmoid": torch.sigmoid}


def timm_forward(sd: dict, arch: str, x: torch.Tensor) -> torch.Tensor:
    a = TIMM_ARCHS[arch]
    eps = 1e-3 if a.get("tf") else 1e-5  # timm: BN_EPS_TF_DEFAULT for tf_ models, torch's default otherwise
    act = ACT[a["act"]]

    def conv(x, p, stride=1):
        w = sd[p + ".weight"]
        k = w.shape[-1]
        pad = k // 2
        if a.get("tf") and stride > 1:  # TF "SAME": total = (ceil(n/s) - 1) * s + k - n, smaller half first
            pads = []
            for n in (x.shape[3], x.shape[2]):
                total = max((-(-n // stride) - 1) * stride + k - n, 0)
                pads += [total // 2, total - total // 2]
            x, pad = F.pad(x, pads), 0
        return F.conv2d(x, w, sd.get(p + ".bias"), stride, pad, 1, x.shape[1] // w.shape[1])

    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            False, 0.0, eps)

    def se(x, p):
        if p + ".se.conv_reduce.weight" not in sd:
            return x
        s = x.mean((2, 3), keepdim=True)
        s = ACT[a["se"][0]](F.conv2d(s, sd[p + ".se.conv_reduce.weight"], sd[p + ".se.conv_reduce.bias"]))
        return x * ACT[a["se"][1]](F.conv2d(s, sd[p + ".se.conv_expand.weight"], sd[p + ".se.conv_expand.bias"]))

    x = act(bn(conv(x, "conv_stem", 2), "bn1"))
    blocks = sorted({(int(m[1]), int(m[2])) for m in (re.match(r"blocks\.(\d+)\.(\d+)\.", k) for k in sd) if m})
    for s, i in blocks:
        p, f = f"blocks.{s}.{i}", (F.relu if s in a.get("relu_stages", ()) else act)
        stride = a["strides"][s] if i == 0 else 1
        inp = x
        if p + ".conv.weight" in sd:  # ConvBnAct ("cn")
            x = f(bn(conv(x, p + ".conv"), p + ".bn1"))
            continue
        if p + ".conv_pwl.weight" in sd:  # InvertedResidual ("ir")
            x = f(bn(conv(x, p + ".conv_pw"), p + ".bn1"))
            x = se(f(bn(conv(x, p + ".conv_dw", stride), p + ".bn2")), p)
            x = bn(conv(x, p + ".conv_pwl"), p + ".bn3")
        else:  # DepthwiseSeparableConv ("ds"): no activation after the pointwise conv
            x = se(f(bn(conv(x, p + ".conv_dw", stride), p + ".bn1")), p)
            x = bn(conv(x, p + ".conv_pw"), p + ".bn2")
        if stride == 1 and x.shape == inp.shape:
            x = x + inp
    if a.get("head") == "mnv3":  # pool, then a 1x1 conv with bias and no BN
        x = act(F.conv2d(x.mean((2, 3), keepdim=True), sd["conv_head.weight"], sd["conv_head.bias"])).flatten(1)
    else:
        x = act(bn(conv(x, "conv_head"), "bn2")).mean((2, 3))
    return F.linear(x, sd["classifier.weight"], sd["classifier.bias"])


def assigned_directly(name: str, sd: dict) -> torch.nn.Module:
    model = models.create(name)
    own = model.state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            own[k].copy_(v)
    return model


# ---- every format ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [f.name for f in FORMATS])
def test_every_format_loads_and_computes_like_its_source(fmt, tmp_path):
    f = get_format(fmt)
    sd = random_state_dict(layout(f.keys_file), seed=len(fmt))
    path = tmp_path / f"{fmt.split(':')[1]}.pth"  # the file name carries timm's name, as timm's downloads do
    torch.save(sd, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a named file must not need the Lite guess
        model = load_weights(f.model, path)
    assert model.weights_format == fmt and not model.training
    with torch.inference_mode():
        out = model(X)
        arch = fmt.split(":")[1]
        if f.remap or f.tf_same_padding:
            ref = timm_forward(sd, arch, X)
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        else:
            assert torch.equal(out, assigned_directly(f.model, sd)(X))
            if fmt.startswith("timm:") and arch in TIMM_ARCHS:  # the zoo's Lite computes what timm's does, too
                ref = timm_forward(sd, arch, X)
                torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    assert torch.isfinite(out).all() and out.abs().max() > 1e-3


def test_tf_ports_really_differ_from_timm_lite(tmp_path):
    """The TF padding and eps matter: the same tensors give other logits as timm's own efficientnet_lite0."""
    sd = random_state_dict(layout("timm__efficientnet_lite0.json"))
    tf = load_weights("efficientnet_lite0", sd, format="timm:tf_efficientnet_lite0")
    plain = load_weights("efficientnet_lite0", sd, format="timm:efficientnet_lite0")
    with torch.inference_mode():
        assert not torch.allclose(tf(X), plain(X), rtol=1e-3, atol=1e-3)
    assert layout("timm__tf_efficientnet_lite0.json") == layout("timm__efficientnet_lite0.json")


@pytest.mark.parametrize("timm_name,tv_name", [("mobilenetv2_100", "mobilenet_v2"),
                                               ("mobilenetv3_large_100", "mobilenet_v3_large"),
                                               ("mobilenetv3_small_100", "mobilenet_v3_small"),
                                               ("mnasnet_100", "mnasnet1_0"), ("efficientnet_b0", "efficientnet_b0")])
def test_remap_rules_cover_the_layout_key_by_key(timm_name, tv_name):
    """The per-block rules rename every timm key onto exactly the torchvision layout, shapes agreeing (only
    conv_head -> classifier.0 is reshaped); they also agree with pairing the two key lists in order."""
    src, dst = layout(f"timm__{timm_name}.json"), layout(f"torchvision__{tv_name}.json")
    fmt = get_format(f"timm:{timm_name}")
    renamed, unmapped = timm_to_torchvision({k: torch.empty(v) for k, v in src.items()}, fmt.model)
    assert not unmapped
    assert {k: list(v.shape) for k, v in renamed.items()} == dst
    by_order = dict(zip(src, dst))
    rules = dict(zip(src, renamed))
    assert rules == by_order


# ---- containers -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ghostnet_sd():
    return random_state_dict(layout("timm__ghostnet_100.json"), seed=1)


@pytest.fixture(scope="module")
def ghostnet_ref(ghostnet_sd):
    return load_weights("ghostnet_100", dict(ghostnet_sd)).state_dict()


def _same_weights(model, ref):
    got = model.state_dict()
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


@pytest.mark.parametrize("variant", ["plain.pth", "state_dict.pt", "model.bin", "module_prefix.pth",
                                     "nested_compiled.pth", "legacy.pth", "thop.pth", "no_step_counter.pth",
                                     "safetensors.safetensors", "safetensors_named.pth"])
def test_checkpoint_containers(variant, ghostnet_sd, ghostnet_ref, tmp_path):
    sd = dict(ghostnet_sd)
    path = tmp_path / f"ghostnet_1x_{variant}"
    kind = variant.split(".")[0]
    if kind == "state_dict":
        obj = {"state_dict": sd, "epoch": 300, "arch": "ghostnet_100"}
    elif kind == "model":
        obj = {"model": sd}
    elif kind == "module_prefix":
        obj = {f"module.{k}": v for k, v in sd.items()}
    elif kind == "nested_compiled":
        obj = {"model": {"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}}}
    elif kind == "thop":  # profiling with thop leaves counters that timm drops too
        obj = {**sd, "total_ops": torch.zeros(1), "blocks.0.0.total_params": torch.zeros(1)}
    elif kind == "no_step_counter":  # checkpoints from before PyTorch 0.4.1 have no num_batches_tracked
        obj = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    else:
        obj = sd
    if kind.startswith("safetensors"):
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=(kind != "legacy"))
    model = load_weights("ghostnet_100", path)
    assert model.weights_format == "timm:ghostnet_100"
    if kind == "no_step_counter":
        ref = {k: v for k, v in ghostnet_ref.items() if not k.endswith("num_batches_tracked")}
        got = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        assert all(torch.equal(got[k], ref[k]) for k in ref)
    else:
        _same_weights(model, ghostnet_ref)


def test_official_ghostnet_release_is_timm_layout(ghostnet_sd):
    model = load_weights("ghostnet", ghostnet_sd, format="official:ghostnet_100")
    assert model.weights_format == "timm:ghostnet_100"
    assert "official" in get_format("timm:ghostnet_100").note


def test_load_into_an_existing_module_and_public_api(ghostnet_sd, ghostnet_ref):
    model = models.create("ghostnet_100")
    assert ghostfast.load_weights(model, ghostnet_sd) is model
    _same_weights(model, ghostnet_ref)


# ---- safety ---------------------------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if unpickled


def test_pickled_objects_are_refused(ghostnet_sd, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": dict(ghostnet_sd), "payload": _Evil(str(marker))}, path)
    with pytest.raises(ValueError, match="never unpickles arbitrary objects"):
        load_weights("ghostnet_100", path)
    assert not marker.exists()


def test_training_checkpoint_with_args_is_refused_with_a_way_out(ghostnet_sd, tmp_path):
    path = tmp_path / "checkpoint-299.pth.tar"
    torch.save({"state_dict": dict(ghostnet_sd), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ValueError, match=r"refused to load .*weights_only=False\)\['state_dict'\]"):
        load_weights("ghostnet_100", path)


def test_whole_module_pickle_is_refused(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(models.create("mobilenet_v3_small"), path)
    with pytest.raises(ValueError, match="refused"):
        load_weights("mobilenet_v3_small", path)


# ---- clear errors ---------------------------------------------------------------------------------------------------
def test_missing_unexpected_and_mis_shaped_keys_are_listed(ghostnet_sd):
    sd = dict(ghostnet_sd)
    del sd["blocks.3.0.ghost1.primary_conv.0.weight"]
    sd["blocks.9.9.extra.weight"] = torch.zeros(3)
    sd["classifier.weight"] = torch.zeros(10, 1280)
    with pytest.raises(CheckpointMismatch) as e:
        load_weights("ghostnet_100", sd)
    msg = str(e.value)
    for key in ("blocks.3.0.ghost1.primary_conv.0.weight", "blocks.9.9.extra.weight", "classifier.weight"):
        assert key in msg
    assert "1 missing" in msg and "1 unexpected" in msg and "1 mis-shaped" in msg and "[10, 1280]" in msg
    assert e.value.missing == ["blocks.3.0.ghost1.primary_conv.0.weight"]
    assert e.value.unexpected == ["blocks.9.9.extra.weight"]
    # With the format forced, the check against the model itself lists the same keys.
    with pytest.raises(CheckpointMismatch, match="blocks.9.9.extra.weight"):
        load_weights("ghostnet_100", sd, format="timm:ghostnet_100")


def test_weights_of_another_model_are_named():
    sd = random_state_dict(layout("timm__ghostnet_050.json"))
    with pytest.raises(ValueError, match="timm:ghostnet_050, which loads into zoo model 'ghostnet_050'"):
        load_weights("ghostnet_100", sd)
    with pytest.raises(ValueError, match="loads into zoo model 'ghostnet_050', not 'ghostnet_100'"):
        load_weights("ghostnet_100", sd, format="timm:ghostnet_050")


def test_ghostnetv2_is_named_as_unsupported():
    sd = random_state_dict(layout("timm__ghostnetv2_100.json"))
    with pytest.raises(ValueError, match="GhostNetV2 is not in the zoo"):
        load_weights("ghostnet_100", sd)


def test_shufflenet_v1_has_no_published_format_but_loads_its_own_layout():
    own = models.create("shufflenet_v1_g3").state_dict()
    model = load_weights("shufflenet_v1_g3", own)
    assert model.weights_format == "ghostfast:shufflenet_v1_g3"
    _same_weights(model, own)
    bad = {k: v for k, v in own.items() if k != "classifier.0.weight"}
    with pytest.raises(CheckpointMismatch, match=r"no published checkpoint format.*1 missing: classifier.0.weight"):
        load_weights("shufflenet_v1_g3", bad)


@pytest.mark.parametrize("source,match", [(123, "must be a path or a state dict"), ({}, "not a state dict"),
                                          ({"epoch": 3}, "none of the wrapper keys")])
def test_bad_sources(source, match):
    with pytest.raises((TypeError, ValueError), match=match):
        read_state_dict(source)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint file"):
        read_state_dict(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(ValueError, match="neither a PyTorch checkpoint nor a safetensors file"):
        read_state_dict(junk)
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_weights("ghostnet_100", {"a": torch.zeros(1)}, format="timm:nosuchnet")
    with pytest.raises(TypeError):
        load_weights(42, {"a": torch.zeros(1)})


# ---- the Lite ambiguity ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("filename,expected", [
    ("tf_efficientnet_lite0-0aa007d2.pth", "timm:tf_efficientnet_lite0"),
    ("efficientnet_lite0_ra-37913777.pth", "timm:efficientnet_lite0"),
    ("models--timm--tf_efficientnet_lite0.in1k/model.safetensors", "timm:tf_efficientnet_lite0"),
])
def test_lite_format_from_file_name(filename, expected):
    sd = {k: torch.empty(v) for k, v in layout("timm__efficientnet_lite0.json").items()}
    assert detect_format(sd, "efficientnet_lite0", filename).name == expected


def test_lite_without_a_name_warns_and_says_how_to_choose():
    sd = {k: torch.empty(v) for k, v in layout("timm__efficientnet_lite1.json").items()}
    with pytest.warns(UserWarning, match="assuming timm:tf_efficientnet_lite1.*format='timm:efficientnet_lite1'"):
        assert detect_format(sd, "efficientnet_lite1", "weights.pth").name == "timm:tf_efficientnet_lite1"


def test_tf_converted_model_refuses_other_formats():
    sd = random_state_dict(layout("timm__efficientnet_lite0.json"))
    model = load_weights("efficientnet_lite0", sd, format="timm:tf_efficientnet_lite0")
    with pytest.raises(ValueError, match="fresh model"):
        load_weights(model, sd, format="timm:efficientnet_lite0")


def test_bn_eps_follows_the_format():
    """timm MobileNetV3 uses BN eps 1e-5, torchvision 1e-3; reloading torchvision weights restores 1e-3."""
    model = load_weights("mobilenet_v3_small", random_state_dict(layout("timm__mobilenetv3_small_100.json")))
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}
    load_weights(model, random_state_dict(layout("torchvision__mobilenet_v3_small.json")))
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
