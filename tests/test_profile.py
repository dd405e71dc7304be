"""profile(): figures checked against values computed by hand."""
import pytest
import torch.nn as nn

import ghostfast
from ghostfast.models.ghostnet import GhostModule


def _tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_tiny_model_by_hand():
    p = ghostfast.profile(_tiny(), (8, 8))
    conv = 8 * 8 * 8 * (3 * 3 * 3)  # output elements x (Cin x k x k)
    fc = 8 * 10
    assert p.params == 8 * 27 + 2 * 8 + 8 * 10 + 10
    assert p.macs == conv + fc
    elems = 8 * 8 * 8
    assert p.total_ops == conv + fc + 2 * elems + elems + elems  # + BN (2/elem) + ReLU + pool reads
    # Peak: while BN runs, the input, the conv output and the BN output are alive together (fp32).
    assert p.peak_activation_bytes == 4 * (3 * 64 + 8 * 64 + 8 * 64)
    assert (p.weight_bytes_fp32, p.weight_bytes_fp16, p.weight_bytes_int8) == (4 * p.params, 2 * p.params, p.params)
    assert [r.type for r in p.layers] == ["Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear"]
    assert p.layers[0].output_shape == (1, 8, 8, 8) and p.layers[0].macs == conv and p.layers[0].params == 216
    assert p.layers[-1].output_shape == (1, 10) and p.layers[-1].macs == fc


def test_ghost_module_by_hand():
    # 16 -> 16 channels at 112x112: primary 1x1 16->8, cheap depthwise 3x3 on 8 channels, concat.
    p = ghostfast.profile(GhostModule(16, 16, relu=True), (1, 16, 112, 112))
    assert p.macs == 112 * 112 * 8 * 16 + 112 * 112 * 8 * 9
    assert p.params == 8 * 16 + 2 * 8 + 8 * 9 + 2 * 8
    assert any(r.type == "cat" for r in p.layers)


def test_mobilenet_v1_macs_by_hand():
    """MobileNetV1 1.0 from the paper's Table 1: 3x3/2 stem, 13 depthwise-separable layers, FC."""
    layers = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
              *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1)]
    res = 112
    macs = res * res * 32 * 27
    for cin, cout, stride in layers:
        res //= stride
        macs += res * res * cin * 9 + res * res * cin * cout
    macs += 1024 * 1000
    assert ghostfast.profile("mobilenet_v1").macs == macs == 568_740_352


def test_profile_table_and_str():
    p = ghostfast.profile("ghostnet_050")
    assert "ghostnet_050" in str(p) and "MACs 42,328,152" in str(p)
    assert "conv_stem" in p.table()
    assert p.summary()["params"] == 2_587_292


def test_profile_other_resolution_scales_macs():
    small = ghostfast.profile("mobilenet_v1", 112).macs
    full = ghostfast.profile("mobilenet_v1").macs
    assert small < full / 3.5  # convolution cost scales with spatial area; only the FC does not


@pytest.mark.parametrize("bad", [0, -3, (224,), (1, 2, 3, 4, 5), "224", 2.5])
def test_profile_rejects_bad_input_size(bad):
    with pytest.raises((ValueError, TypeError)):
        ghostfast.profile("ghostnet", bad)


def test_profile_rejects_wrong_channels():
    with pytest.raises(ValueError, match="cannot run on an input of shape"):
        ghostfast.profile("ghostnet", (4, 224, 224))


def test_profile_needs_size_for_foreign_module():
    with pytest.raises(ValueError, match="input_size"):
        ghostfast.profile(_tiny())
    with pytest.raises(TypeError):
        ghostfast.profile(42)
