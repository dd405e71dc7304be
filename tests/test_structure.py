"""structure(): stage tables derived from the modules equal the papers' tables."""
import ghostfast


def _blocks(name):
    return [r for r in ghostfast.structure(name).rows if r["operator"] not in ("conv2d", "avgpool", "maxpool", "fc")]


def test_ghostnet_100_equals_paper_table_1():
    # GhostNet paper, Table 1: (#exp, #out, SE, stride) of the 16 G-bnecks.
    paper = [(16, 16, 0, 1), (48, 24, 0, 2), (72, 24, 0, 1), (72, 40, 1, 2), (120, 40, 1, 1), (240, 80, 0, 2),
             (200, 80, 0, 1), (184, 80, 0, 1), (184, 80, 0, 1), (480, 112, 1, 1), (672, 112, 1, 1),
             (672, 160, 1, 2), (960, 160, 0, 1), (960, 160, 1, 1), (960, 160, 0, 1), (960, 160, 1, 1)]
    rows = _blocks("ghostnet")
    assert [(r["exp"], r["out"], int(r["SE"]), r["stride"]) for r in rows] == paper
    assert {r["operator"] for r in rows} == {"G-bneck"}
    full = ghostfast.structure("ghostnet").rows
    assert full[0]["input"] == "224x224x3" and full[0]["operator"] == "conv2d" and full[0]["stride"] == 2
    assert full[-1]["operator"] == "fc" and full[-1]["out"] == 1000


def test_mobilenet_v3_large_equals_paper_table_1():
    # MobileNetV3 paper, Table 1: (kernel, exp, out, SE, NL, stride) of the 15 bnecks.
    paper = [(3, 16, 16, 0, "RE", 1), (3, 64, 24, 0, "RE", 2), (3, 72, 24, 0, "RE", 1), (5, 72, 40, 1, "RE", 2),
             (5, 120, 40, 1, "RE", 1), (5, 120, 40, 1, "RE", 1), (3, 240, 80, 0, "HS", 2),
             (3, 200, 80, 0, "HS", 1), (3, 184, 80, 0, "HS", 1), (3, 184, 80, 0, "HS", 1),
             (3, 480, 112, 1, "HS", 1), (3, 672, 112, 1, "HS", 1), (5, 672, 160, 1, "HS", 2),
             (5, 960, 160, 1, "HS", 1), (5, 960, 160, 1, "HS", 1)]
    rows = _blocks("mobilenet_v3_large")
    got = [(r["kernel"], r["exp"] or r["out"], r["out"], int(r["SE"]), r["NL"], r["stride"]) for r in rows]
    assert got == paper


def test_summary_of_all_models():
    rows = ghostfast.structure_summary(["ghostnet_100", "mobilenet_v2"])
    g, m = rows
    assert (g["blocks"], g["SE blocks"], g["activations"], g["params"]) == (16, 7, "RE", 5_182_508)
    assert m["blocks"] == 17 and m["SE blocks"] == 0 and "RE6" in m["activations"]
    assert "add" in g["shortcuts"]


def test_structure_prints_a_table():
    text = str(ghostfast.structure("ghostnet_050"))
    assert "G-bneck" in text and "input" in text and "stride" in text
