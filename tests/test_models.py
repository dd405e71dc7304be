"""Every zoo model equals its canonical implementation: key layout, exact params, exact conv+linear MACs."""
import json
from importlib import resources

import pytest
import torch

import ghostfast
from ghostfast import models

ZOO = models.names()


def test_zoo_is_complete(canonical):
    assert set(ZOO) == set(canonical)


@pytest.mark.parametrize("name", ZOO)
def test_forward_shape(name):
    spec = models.spec(name)
    model = models.create(name)
    with torch.inference_mode():
        out = model(torch.randn(2, 3, *spec.input_size))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ZOO)
def test_params_and_macs_equal_canonical(name, canonical):
    ref = canonical[name]["canonical"]
    assert tuple(ref["input_size"]) == models.spec(name).input_size
    prof = ghostfast.profile(name)
    assert prof.params == ref["params"]
    assert prof.macs == ref["macs_conv_linear"]


def _with_key_layout():
    ref = json.loads(resources.files("ghostfast").joinpath("data/canonical.json").read_text())["models"]
    return [n for n in ZOO if ref[n]["canonical"].get("checkpoint_keys_file")]


# ShuffleNetV1 exists in neither torchvision nor timm, so it has no canonical key layout to equal.
@pytest.mark.parametrize("name", _with_key_layout())
def test_state_dict_layout_equals_canonical(name, canonical):
    """Key names and shapes (buffers included) equal the canonical implementation's state_dict."""
    keys_file = canonical[name]["canonical"]["checkpoint_keys_file"]
    expected = json.loads(resources.files("ghostfast").joinpath("data", keys_file).read_text())
    got = {k: list(v.shape) for k, v in models.create(name).state_dict().items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not wrong, f"mis-shaped: {list(wrong.items())[:5]}"


@pytest.mark.parametrize("alias,name", [("ghostnet", "ghostnet_100"), ("mobilenetv3", "mobilenet_v3_large"),
                                        ("mobilenetv2", "mobilenet_v2"), ("GhostNet-100", "ghostnet_100")])
def test_aliases(alias, name):
    assert models.resolve(alias) == name


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="ghostnet_100"):
        models.create("ghostnet_10")
    with pytest.raises(TypeError):
        models.create(3)
