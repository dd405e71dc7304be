"""Lowering: an eval-mode PyTorch model -> the native engine's program (fused ops over NHWC channel slices).

The model is traced with ``torch.fx``, treating the zoo's Ghost modules, SE blocks and channel shuffles as
single nodes. One pass over the graph then emits ops and fuses as it goes:

* BatchNorm after a convolution is folded into its weights (in float64, then cast);
* an activation after a conv / add with no other consumer becomes that op's epilogue;
* a residual add becomes the epilogue of whichever operand's producer runs after the other operand exists;
* ``torch.cat`` along channels costs nothing: each input's buffer is re-placed as a channel slice of the
  concatenated buffer (a copy only when an input is already a slice of something else);
* ``chunk`` / channel slicing are slices; flatten / view on 1x1 maps, dropout and identity are no-ops.

Anything else raises :class:`UnsupportedLayer` naming the node and the layer type.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .models.ghostnet import GhostModule
from .models.layers import SEModule
from .models.shufflenet_v1 import ChannelShuffle
from .program import OP, Program

ACT = {"none": 0, "relu": 1, "relu6": 2, "hardswish": 3, "hardsigmoid": 4, "silu": 5, "sigmoid": 6}
_ACT_MODULES = {nn.ReLU: 1, nn.ReLU6: 2, nn.Hardswish: 3, nn.Hardsigmoid: 4, nn.SiLU: 5, nn.Sigmoid: 6,
                nn.Identity: 0}
_ACT_FUNCTIONS = {F.relu: 1, torch.relu: 1, F.relu6: 2, F.hardswish: 3, F.hardsigmoid: 4, F.silu: 5,
                  torch.sigmoid: 6, F.sigmoid: 6}
_ACT_METHODS = {"relu": 1, "relu_": 1, "sigmoid": 6, "sigmoid_": 6}
_NOOP_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)


class UnsupportedLayer(ValueError):
    """The model contains a layer or pattern the native engine cannot run; the message names it."""


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (GhostModule, SEModule, ChannelShuffle)) or super().is_leaf_module(m, qualname)


@dataclass
class _Op:
    type: int
    inputs: list[int]
    output: int
    params: list[int]
    weights: list[np.ndarray] = field(default_factory=list)
    name: str = ""
    act_slot: int | None = None  # index in params of the fusable activation, if any

    @property
    def act(self) -> int:
        return self.params[self.act_slot] if self.act_slot is not None else -1


@dataclass
class _Dim:
    """A size read from a tensor (x.size(0), x.shape); only used to reshape 1x1 maps."""


class _Builder:
    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.buffers: list[list[int]] = []  # [c, h, w]
        self.values: list[list[int]] = []  # [buffer, c_offset, c]
        self.ops: list[_Op] = []
        self.producer: dict[int, int] = {}  # value -> index of the op that wrote it last
        self.placed: set[int] = set()  # buffers already re-placed into a concat buffer
        self.input_value = -1

    def new_value(self, c: int, h: int, w: int) -> int:
        self.buffers.append([c, h, w])
        self.values.append([len(self.buffers) - 1, 0, c])
        return len(self.values) - 1

    def slice(self, v: int, offset: int, c: int) -> int:
        b, off, vc = self.values[v]
        if offset < 0 or offset + c > vc:
            raise UnsupportedLayer("channel slice out of range")
        self.values.append([b, off + offset, c])
        return len(self.values) - 1

    def dims(self, v: int) -> tuple[int, int, int]:
        b, _, c = self.values[v]
        return c, self.buffers[b][1], self.buffers[b][2]

    def emit(self, op: _Op) -> int:
        self.ops.append(op)
        self.producer[op.output] = len(self.ops) - 1
        return op.output

    def whole_buffer(self, v: int) -> bool:
        b, off, c = self.values[v]
        return off == 0 and c == self.buffers[b][0]

    def written_before(self, v: int, op_index: int) -> bool:
        return v == self.input_value or self.producer.get(v, 10**9) < op_index or self._sliced_from_earlier(v, op_index)

    def _sliced_from_earlier(self, v: int, op_index: int) -> bool:
        # A slice value has no producer of its own; it exists once every producer of its buffer has run.
        b = self.values[v][0]
        writers = [i for val, i in self.producer.items() if self.values[val][0] == b]
        return bool(writers) and max(writers) < op_index


def _conv_weights(conv: nn.Conv2d) -> tuple[np.ndarray, np.ndarray]:
    w = conv.weight.detach().double().numpy().copy()
    b = conv.bias.detach().double().numpy().copy() if conv.bias is not None else np.zeros(w.shape[0])
    return w, b


def _fold_bn(w: np.ndarray, b: np.ndarray, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    if not bn.track_running_stats or bn.running_mean is None:
        raise UnsupportedLayer("BatchNorm without running statistics cannot be folded")
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones_like(mean)
    beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return w * scale.reshape(-1, *([1] * (w.ndim - 1))), (b - mean) * scale + beta


def _act_of(module: nn.Module, where: str) -> int:
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        if (module.min_val, module.max_val) == (0.0, 6.0):
            return 2
        raise UnsupportedLayer(f"{where}: Hardtanh({module.min_val}, {module.max_val}) is not supported")
    for cls, code in _ACT_MODULES.items():
        if type(module) is cls:
            return code
    raise UnsupportedLayer(f"{where}: activation {type(module).__name__} is not supported")


def _window(v, what: str, where: str) -> int:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or t[0] != t[1]:
        raise UnsupportedLayer(f"{where}: non-square {what} {v!r} is not supported")
    return int(t[0])


def _out_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


class _Lowering:
    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int], batch: int) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.b = _Builder(batch)
        self.input_shape = input_shape
        self.env: dict[fx.Node, object] = {}
        self.users: dict[int, int] = {}  # value -> number of fx users of the node that produced it

    # ---- helpers -----------------------------------------------------------------------------------------
    def value(self, node, where: str) -> int:
        v = self.env[node] if isinstance(node, fx.Node) else node
        if not isinstance(v, int):
            raise UnsupportedLayer(f"{where}: expected a feature map, got {type(v).__name__}")
        return v

    def sole_user(self, node: fx.Node) -> bool:
        return len(node.users) == 1

    def fusable_producer(self, node: fx.Node) -> _Op | None:
        """The op that wrote ``node``'s value, if it can still absorb an epilogue (BN, act, residual)."""
        v = self.env.get(node)
        if not isinstance(v, int) or not self.sole_user(node) or v not in self.b.producer:
            return None
        op = self.b.ops[self.b.producer[v]]
        # The sole fx user is the node being lowered, so no op emitted in between reads this value.
        return op if op.output == v else None

    # ---- conv family -------------------------------------------------------------------------------------
    def conv(self, conv: nn.Conv2d, x: int, where: str) -> int:
        c, h, w = self.b.dims(x)
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise UnsupportedLayer(f"{where}: padding mode {conv.padding_mode!r} / {conv.padding!r} is not supported")
        k = _window(conv.kernel_size, "kernel", where)
        s = _window(conv.stride, "stride", where)
        p = _window(conv.padding, "padding", where)
        if _window(conv.dilation, "dilation", where) != 1:
            raise UnsupportedLayer(f"{where}: dilated convolution is not supported")
        if c != conv.in_channels:
            raise UnsupportedLayer(f"{where}: expects {conv.in_channels} input channels, gets {c}")
        wt, bias = _conv_weights(conv)
        g, cout = conv.groups, conv.out_channels
        oh, ow = _out_size(h, k, s, p), _out_size(w, k, s, p)
        if oh < 1 or ow < 1:
            raise UnsupportedLayer(f"{where}: input {h}x{w} is too small for kernel {k}, stride {s}, padding {p}")
        out = self.b.new_value(cout, oh, ow)
        if k == 1 and s == 1 and p == 0:
            op = _Op(OP["pointwise"], [x], out, [g, 0], [wt.reshape(cout, c // g), bias], where, act_slot=1)
        elif g == c and cout == c:
            op = _Op(OP["depthwise"], [x], out, [k, s, p, 0], [wt.reshape(c, k, k), bias], where, act_slot=3)
        elif g == 1:
            op = _Op(OP["conv"], [x], out, [k, s, p, 0], [wt, bias], where, act_slot=3)
        else:
            raise UnsupportedLayer(f"{where}: grouped {k}x{k} convolution (groups={g}) is not supported")
        return self.b.emit(op)

    def batch_norm(self, bn: nn.BatchNorm2d, node: fx.Node, where: str) -> int:
        src = node.args[0]
        op = self.fusable_producer(src)
        if op is not None and op.type in (OP["conv"], OP["pointwise"], OP["depthwise"]) and op.act == 0 \
                and len(op.inputs) == 1:
            op.weights[0], op.weights[1] = _fold_bn(op.weights[0], op.weights[1], bn)
            op.name += f" + {where}"
            return op.output
        # A BatchNorm on its own is a per-channel affine map: a 1x1 depthwise conv.
        x = self.value(src, where)
        c, h, w = self.b.dims(x)
        scale, shift = _fold_bn(np.ones((c, 1, 1)), np.zeros(c), bn)
        return self.b.emit(_Op(OP["depthwise"], [x], self.b.new_value(c, h, w), [1, 1, 0, 0], [scale, shift],
                               where, act_slot=3))

    def activation(self, code: int, node: fx.Node, where: str) -> int:
        src = node.args[0]
        if code == 0:
            return self.value(src, where)
        op = self.fusable_producer(src)
        if op is not None and op.act == 0:
            op.params[op.act_slot] = code
            op.name += f" + {where}"
            return op.output
        x = self.value(src, where)
        return self.b.emit(_Op(OP["activation"], [x], self.b.new_value(*self.b.dims(x)), [code], [], where))

    def add(self, node: fx.Node, where: str) -> int:
        a_node, b_node = node.args[0], node.args[1]
        if not (isinstance(a_node, fx.Node) and isinstance(b_node, fx.Node)):
            raise UnsupportedLayer(f"{where}: only the sum of two feature maps is supported")
        a, bv = self.value(a_node, where), self.value(b_node, where)
        if self.b.dims(a) != self.b.dims(bv):
            raise UnsupportedLayer(f"{where}: added feature maps differ in shape")
        for prod_node, other in ((a_node, bv), (b_node, a)):
            op = self.fusable_producer(prod_node)
            if op is None or op.type not in (OP["pointwise"], OP["ghost"]) or len(op.inputs) != 1:
                continue
            if op.type == OP["pointwise"] and op.act != 0:
                continue
            if op.type == OP["ghost"] and (op.params[3] or op.params[4]):
                continue
            index = self.b.producer[op.output]
            if not self.b.written_before(other, index):
                continue
            op.inputs.append(other)
            op.name += f" + {where}"
            if op.type == OP["pointwise"]:
                return op.output
            # The ghost op has no activation slot after the residual; a following activation is its own op.
            op.act_slot = None
            return op.output
        return self.b.emit(_Op(OP["add"], [a, bv], self.b.new_value(*self.b.dims(a)), [0], [], where, act_slot=0))

    # ---- zoo blocks --------------------------------------------------------------------------------------
    def ghost(self, m: GhostModule, x: int, where: str) -> int:
        c, h, w = self.b.dims(x)
        prim, cheap = m.primary, m.cheap
        if prim.kernel_size != (1, 1) or prim.stride != (1, 1) or prim.groups != 1:
            raise UnsupportedLayer(f"{where}: Ghost module with a {prim.kernel_size} primary conv is not supported")
        if cheap.groups != cheap.in_channels or cheap.out_channels != cheap.in_channels or cheap.stride != (1, 1):
            raise UnsupportedLayer(f"{where}: Ghost module with ratio != 2 is not supported")
        k = _window(cheap.kernel_size, "kernel", where)
        if _window(cheap.padding, "padding", where) != k // 2:
            raise UnsupportedLayer(f"{where}: cheap operation must use 'same' padding")
        init = prim.out_channels
        keep = m.out_chs - init
        pw, pb = _fold_bn(*_conv_weights(prim), m.primary_bn)
        dw, db = _fold_bn(*_conv_weights(cheap), m.cheap_bn)
        out = self.b.new_value(m.out_chs, h, w)
        params = [init, keep, k, _act_of(m.primary_act, where), _act_of(m.cheap_act, where)]
        weights = [pw.reshape(init, c), pb, dw.reshape(-1, k, k)[:keep], db[:keep]]
        return self.b.emit(_Op(OP["ghost"], [x], out, params, weights, where))

    def squeeze_excite(self, m: SEModule, node: fx.Node, where: str) -> int:
        x = self.value(node.args[0], where)
        c, h, w = self.b.dims(x)
        w1, b1 = _conv_weights(m.reduce)
        w2, b2 = _conv_weights(m.expand)
        rd = w1.shape[0]
        # In place when nothing else reads the block's input; otherwise into a fresh buffer.
        out = x if self.sole_user(node.args[0]) and x != self.b.input_value else self.b.new_value(c, h, w)
        params = [_act_of(m.act, where), _act_of(m.gate, where)]
        return self.b.emit(_Op(OP["squeeze_excite"], [x], out, params,
                               [w1.reshape(rd, c), b1, w2.reshape(c, rd), b2], where))

    def cat(self, node: fx.Node, where: str) -> int:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim not in (1, -3):
            raise UnsupportedLayer(f"{where}: concatenation along dim {dim} is not supported (only channels)")
        vals = [self.value(t, where) for t in tensors]
        dims = [self.b.dims(v) for v in vals]
        if len({d[1:] for d in dims}) != 1:
            raise UnsupportedLayer(f"{where}: concatenated feature maps differ in size")
        total = sum(d[0] for d in dims)
        out = self.b.new_value(total, *dims[0][1:])
        out_buffer = self.b.values[out][0]
        offset = 0
        for v, (c, h, w) in zip(vals, dims):
            buf = self.b.values[v][0]
            movable = (self.b.whole_buffer(v) and v != self.b.input_value and buf not in self.b.placed
                       and buf != out_buffer and vals.count(v) == 1)
            if movable:
                # Re-place the producer's buffer (and every slice of it) into the concatenated buffer.
                for val in self.b.values:
                    if val[0] == buf:
                        val[0], val[1] = out_buffer, val[1] + offset
                self.b.placed.add(buf)
            else:
                dst = self.b.slice(out, offset, c)
                self.b.emit(_Op(OP["copy"], [v], dst, [], [], where))
            offset += c
        return out

    def pool(self, m: nn.Module, x: int, where: str) -> int:
        c, h, w = self.b.dims(x)
        k = _window(m.kernel_size, "kernel", where)
        s = _window(m.stride if m.stride is not None else m.kernel_size, "stride", where)
        p = _window(m.padding, "padding", where)
        if getattr(m, "ceil_mode", False) or (isinstance(m, nn.MaxPool2d) and _window(m.dilation, "dilation", where) != 1):
            raise UnsupportedLayer(f"{where}: ceil_mode / dilated pooling is not supported")
        if isinstance(m, nn.AvgPool2d) and (not m.count_include_pad or m.divisor_override):
            raise UnsupportedLayer(f"{where}: average pooling must count padding (PyTorch's default)")
        if isinstance(m, nn.AvgPool2d) and p == 0 and k == h == w and s == k:
            return self.global_pool(x)
        oh, ow = _out_size(h, k, s, p), _out_size(w, k, s, p)
        if oh < 1 or ow < 1:
            raise UnsupportedLayer(f"{where}: input {h}x{w} is too small for pooling window {k}")
        kind = OP["max_pool"] if isinstance(m, nn.MaxPool2d) else OP["avg_pool"]
        return self.b.emit(_Op(kind, [x], self.b.new_value(c, oh, ow), [k, s, p], [], where))

    def global_pool(self, x: int, where: str = "") -> int:
        c, h, w = self.b.dims(x)
        if h == w == 1:
            return x
        return self.b.emit(_Op(OP["global_avg_pool"], [x], self.b.new_value(c, 1, 1), [], [], where))

    def linear(self, m: nn.Linear, x: int, where: str) -> int:
        c, h, w = self.b.dims(x)
        if (h, w) != (1, 1) or c != m.in_features:
            raise UnsupportedLayer(f"{where}: Linear needs a flattened ({m.in_features},) input, gets ({c}, {h}, {w})")
        wt = m.weight.detach().double().numpy()
        bias = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(m.out_features)
        out = self.b.new_value(m.out_features, 1, 1)
        return self.b.emit(_Op(OP["pointwise"], [x], out, [1, 0], [wt, bias], where, act_slot=1))

    def reshape_1x1(self, x: int, where: str) -> int:
        c, h, w = self.b.dims(x)
        if (h, w) != (1, 1):
            raise UnsupportedLayer(f"{where}: flattening a {h}x{w} feature map is not supported (pool it first)")
        return x

    # ---- the graph walk ----------------------------------------------------------------------------------
    def run(self) -> Program:
        tracer = _Tracer()
        try:
            graph = tracer.trace(self.model)
        except Exception as e:  # noqa: BLE001 - any tracing failure means the model is not lowerable
            raise UnsupportedLayer(f"the model's forward cannot be traced with torch.fx: {e}") from e
        output = None
        for node in graph.nodes:
            where = node.target if node.op == "call_module" else f"{node.name} ({node.op} {getattr(node.target, '__name__', node.target)})"
            if node.op == "placeholder":
                if self.b.input_value >= 0:
                    raise UnsupportedLayer("models with more than one input are not supported")
                self.b.input_value = self.b.new_value(*self.input_shape)
                self.env[node] = self.b.input_value
            elif node.op == "call_module":
                self.env[node] = self.call_module(self.modules[node.target], node, where)
            elif node.op == "call_function":
                self.env[node] = self.call_function(node, where)
            elif node.op == "call_method":
                self.env[node] = self.call_method(node, where)
            elif node.op == "get_attr":
                raise UnsupportedLayer(f"{where}: parameters used outside layers are not supported")
            elif node.op == "output":
                output = self.value(node.args[0], "model output")
        c, h, w = self.b.dims(output)
        if (h, w) != (1, 1):
            raise UnsupportedLayer(f"the model must end in logits (N, classes); it ends in ({c}, {h}, {w})")
        return self.program(output)

    def call_module(self, m: nn.Module, node: fx.Node, where: str):
        if isinstance(m, GhostModule):
            return self.ghost(m, self.value(node.args[0], where), where)
        if isinstance(m, SEModule):
            return self.squeeze_excite(m, node, where)
        if isinstance(m, ChannelShuffle):
            x = self.value(node.args[0], where)
            c, h, w = self.b.dims(x)
            if c % m.groups:
                raise UnsupportedLayer(f"{where}: {m.groups} groups do not divide {c} channels")
            return self.b.emit(_Op(OP["channel_shuffle"], [x], self.b.new_value(c, h, w), [m.groups], [], where))
        if isinstance(m, nn.Conv2d):
            return self.conv(m, self.value(node.args[0], where), where)
        if isinstance(m, nn.BatchNorm2d):
            return self.batch_norm(m, node, where)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            return self.pool(m, self.value(node.args[0], where), where)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            if m.output_size not in (1, (1, 1)):
                raise UnsupportedLayer(f"{where}: adaptive pooling to {m.output_size} is not supported")
            return self.global_pool(self.value(node.args[0], where), where)
        if isinstance(m, nn.Linear):
            return self.linear(m, self.value(node.args[0], where), where)
        if isinstance(m, nn.Flatten):
            return self.reshape_1x1(self.value(node.args[0], where), where)
        if isinstance(m, _NOOP_MODULES):
            return self.value(node.args[0], where)
        if isinstance(m, tuple(_ACT_MODULES)) or isinstance(m, nn.Hardtanh):
            return self.activation(_act_of(m, where), node, where)
        raise UnsupportedLayer(f"{where}: layer type {type(m).__name__} is not supported by the native engine")

    def call_function(self, node: fx.Node, where: str):
        fn = node.target
        if fn in (operator.add, torch.add, operator.iadd):
            return self.add(node, where)
        if fn is torch.cat:
            return self.cat(node, where)
        if fn in _ACT_FUNCTIONS:
            return self.activation(_ACT_FUNCTIONS[fn], node, where)
        if fn is F.hardtanh and node.args[1:3] in ((0.0, 6.0), (0, 6)):
            return self.activation(2, node, where)
        if fn is torch.flatten or fn is torch.reshape:
            return self.reshape_1x1(self.value(node.args[0], where), where)
        if fn is F.adaptive_avg_pool2d:
            if node.args[1] not in (1, (1, 1)):
                raise UnsupportedLayer(f"{where}: adaptive pooling to {node.args[1]} is not supported")
            return self.global_pool(self.value(node.args[0], where), where)
        if fn is F.dropout:
            return self.value(node.args[0], where)
        if fn is torch.chunk:
            return self.chunk(node.args[0], node.args[1], node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0), where)
        if fn is operator.getitem:
            return self.getitem(node, where)
        if fn is getattr and node.args[1] == "shape":
            return _Dim()
        raise UnsupportedLayer(f"{where}: function {getattr(fn, '__name__', fn)} is not supported by the native engine")

    def call_method(self, node: fx.Node, where: str):
        name = node.target
        if name in _ACT_METHODS:
            return self.activation(_ACT_METHODS[name], node, where)
        if name in ("add", "add_"):
            return self.add(node, where)
        if name == "size":
            return _Dim()
        if name in ("view", "reshape", "flatten", "squeeze"):
            return self.reshape_1x1(self.value(node.args[0], where), where)
        if name == "contiguous":
            return self.value(node.args[0], where)
        if name == "chunk":
            dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
            return self.chunk(node.args[0], node.args[1], dim, where)
        if name == "mean":
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            if dims is not None and sorted(d % 4 for d in (dims if isinstance(dims, (list, tuple)) else [dims])) == [2, 3]:
                return self.global_pool(self.value(node.args[0], where), where)
        raise UnsupportedLayer(f"{where}: tensor method .{name}() is not supported by the native engine")

    def chunk(self, src, chunks: int, dim: int, where: str):
        if dim not in (1, -3):
            raise UnsupportedLayer(f"{where}: chunk along dim {dim} is not supported (only channels)")
        x = self.value(src, where)
        c = self.b.dims(x)[0]
        if c % chunks:
            raise UnsupportedLayer(f"{where}: {c} channels do not split into {chunks} equal chunks")
        step = c // chunks
        return [self.b.slice(x, i * step, step) for i in range(chunks)]

    def getitem(self, node: fx.Node, where: str):
        src = self.env[node.args[0]]
        idx = node.args[1]
        if isinstance(src, list):
            return src[idx]
        if isinstance(src, _Dim):
            return _Dim()
        x = self.value(node.args[0], where)
        # Channel slicing x[:, a:b] (Ghost modules outside the zoo class, user code).
        if isinstance(idx, tuple) and len(idx) == 2 and idx[0] == slice(None) and isinstance(idx[1], slice):
            c = self.b.dims(x)[0]
            start, stop, step = idx[1].indices(c)
            if step == 1 and stop > start:
                return self.b.slice(x, start, stop - start)
        raise UnsupportedLayer(f"{where}: indexing {idx!r} is not supported (only channel slices)")

    def program(self, output: int) -> Program:
        tensors: list[np.ndarray] = []
        ops = []
        for op in self.b.ops:
            ids = []
            for wgt in op.weights:
                tensors.append(np.ascontiguousarray(wgt, dtype=np.float32))
                ids.append(len(tensors) - 1)
            ops.append((op.type, list(op.inputs), op.output, list(op.params), ids, str(op.name)))
        return Program(
            max_batch=self.b.batch, input_value=self.b.input_value, output_value=output,
            buffers=[tuple(b) for b in self.b.buffers], values=[tuple(v) for v in self.b.values], ops=ops,
            tensors=tensors,
        )


def lower(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1) -> Program:
    """The engine program of an eval-mode ``model`` for inputs of ``input_shape`` (C, H, W), up to ``batch``."""
    if model.training:
        raise ValueError("lower() needs an eval-mode model (call model.eval())")
    with torch.no_grad():
        return _Lowering(model, tuple(input_shape), batch).run()
