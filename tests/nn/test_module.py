"""`Module`, `Parameter` and the containers: registration, the tree and its walks, weight tying,
state_dict round trips and load errors, train/eval, freezing, apply, repr, dtype casts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima import nn
from nima.nn import init


# ------------------------------------------------------------------------------ models
class MLP(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_hidden)
        self.act = nn.ReLU()
        self.proj = nn.Linear(d_hidden, d_out)

    def forward(self, x: nima.Tensor) -> nima.Tensor:
        return self.proj(self.act(self.fc(x)))


class TinyLM(nn.Module):
    """Embedding -> blocks -> head, with the head's weight tied to the embedding's."""

    def __init__(self, vocab: int = 7, d: int = 4, n_layer: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(MLP(d, 2 * d, d) for _ in range(n_layer))
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight
        self.register_buffer("scale", nima.tensor([0.5]))
        self.register_buffer("cache", nima.zeros(3), persistent=False)

    def forward(self, ids: np.ndarray) -> nima.Tensor:
        h = self.emb(ids)  # (B, T, d)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h * self.scale)  # (B, T, vocab)


IDS = np.array([[0, 3, 6, 3], [1, 2, 5, 0]])
TINY_PARAMS = [
    "emb.weight",
    "blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.0.proj.weight", "blocks.0.proj.bias",
    "blocks.1.fc.weight", "blocks.1.fc.bias", "blocks.1.proj.weight", "blocks.1.proj.bias",
]


def tiny(seed: int) -> TinyLM:
    nima.manual_seed(seed)
    return TinyLM()


# ------------------------------------------------------------------------------ registration
def test_assignment_registers_parameters_and_submodules_in_order() -> None:
    m = MLP(3, 5, 2)
    assert [n for n, _ in m.named_parameters()] == ["fc.weight", "fc.bias", "proj.weight",
                                                     "proj.bias"]
    assert list(m._modules) == ["fc", "act", "proj"]
    assert [p.shape for p in m.parameters()] == [(5, 3), (5,), (2, 5), (2,)]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())


def test_plain_tensors_and_values_are_not_registered() -> None:
    m = nn.Module()
    m.w = nn.Parameter(np.ones(2))
    m.t = nima.ones(2, requires_grad=True)  # a Tensor, not a Parameter
    m.derived = m.w * 2  # ops on a Parameter give a plain Tensor
    m.n = 3
    assert type(m.derived) is nima.Tensor
    assert [n for n, _ in m.named_parameters()] == ["w"]
    assert list(m.state_dict()) == ["w"]


def test_buffers_persistent_and_not() -> None:
    m = tiny(0)
    assert [n for n, _ in m.named_buffers()] == ["scale", "cache"]
    sd = m.state_dict()
    assert "scale" in sd and "cache" not in sd
    assert "scale" not in dict(m.named_parameters())
    m.scale = nima.tensor([2.0])  # replacing a buffer keeps it a buffer
    np.testing.assert_array_equal(m.state_dict()["scale"], [2.0])
    m.register_buffer("cache", nima.ones(3), persistent=True)  # now saved too
    assert "cache" in m.state_dict()


def test_reassigning_and_deleting_unregisters() -> None:
    m = MLP(2, 3, 1)
    m.fc = nima.ones(2)  # a submodule replaced by a plain tensor
    assert "fc" not in m._modules
    assert [n for n, _ in m.named_parameters()] == ["proj.weight", "proj.bias"]
    m.fc = nn.Parameter(np.zeros(4))  # the same name now a parameter
    assert next(n for n, _ in m.named_parameters()) == "fc"
    m.proj = nn.Linear(3, 7)  # a new submodule replaces the old one's parameters
    assert m.state_dict()["proj.weight"].shape == (7, 3)
    del m.proj
    assert "proj" not in m._modules and not hasattr(m, "proj")
    assert [n for n, _ in m.named_parameters()] == ["fc"]
    m.register_buffer("b", nima.zeros(1))
    m.b = "no longer a tensor"  # a buffer set to a non-tensor stops being one
    assert list(m.named_buffers()) == []
    lin = nn.Linear(2, 2)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    np.testing.assert_allclose(lin(nima.ones(1, 2)).data, lin.weight.data.sum(1)[None])


def test_assigning_before_super_init_raises_clearly() -> None:
    class Forgetful(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Parameter(np.zeros(2))
            super().__init__()

    with pytest.raises(AttributeError, match=r"'w'.*super\(\).__init__\(\).*Forgetful"):
        Forgetful()


def test_register_helpers_check_their_arguments() -> None:
    m = MLP(2, 2, 2)
    with pytest.raises(TypeError, match=r"register_parameter: MLP\.x must be a Parameter"):
        m.register_parameter("x", nima.ones(2))
    with pytest.raises(TypeError, match=r"register_buffer: MLP\.x must be a Tensor"):
        m.register_buffer("x", np.ones(2))
    with pytest.raises(KeyError, match="'fc'"):
        m.register_buffer("fc", nima.ones(2))
    with pytest.raises(KeyError, match=r"'a\.b'"):
        m.register_buffer("a.b", nima.ones(2))
    m.register_parameter("gain", None)
    assert m.gain is None and [n for n, _ in m.named_parameters()][-1] == "proj.bias"
    m.register_parameter("gain", nn.Parameter(np.ones(2)))
    assert next(n for n, _ in m.named_parameters()) == "gain"


def test_module_without_forward_names_its_class() -> None:
    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="NoForward"):
        NoForward()(nima.ones(1))


def test_parameter_casts_and_shares() -> None:
    p = nn.Parameter(np.array([1, 2, 3]))
    assert p.dtype == np.float32 and p.requires_grad and p.is_leaf
    t = nima.ones(2, dtype=nima.float64)
    q = nn.Parameter(t)
    assert np.shares_memory(q.data, t.data) and q.dtype == np.float64
    assert not nn.Parameter(np.ones(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")


# ------------------------------------------------------------------------------ the tree
def test_children_modules_and_named_modules_order() -> None:
    m = tiny(0)
    assert list(m.children()) == [m.emb, m.blocks, m.head]
    assert [n for n, _ in m.named_children()] == ["emb", "blocks", "head"]
    names = [n for n, _ in m.named_modules()]
    assert names == ["", "emb", "blocks", "blocks.0", "blocks.0.fc", "blocks.0.act",
                     "blocks.0.proj", "blocks.1", "blocks.1.fc", "blocks.1.act",
                     "blocks.1.proj", "head"]
    assert next(iter(m.modules())) is m and len(list(m.modules())) == len(names)
    assert [n for n, _ in m.named_modules(prefix="model")][:2] == ["model", "model.emb"]


def test_named_parameters_dotted_names_and_tied_weight_once() -> None:
    m = tiny(0)
    assert [n for n, _ in m.named_parameters()] == TINY_PARAMS
    assert m.head.weight is m.emb.weight
    params = list(m.parameters())
    assert len(params) == len({id(p) for p in params}) == len(TINY_PARAMS)
    sd = m.state_dict()
    assert list(sd) == ["scale", *TINY_PARAMS, "head.weight"]  # the tied weight under both names
    assert sd["head.weight"] is sd["emb.weight"]


def test_shared_module_comes_once_in_walks_but_under_both_names_in_state_dict() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 3)
            self.b = self.a

    m = Shared()
    assert [n for n, _ in m.named_modules()] == ["", "a"]
    assert [n for n, _ in m.named_modules(remove_duplicate=False)] == ["", "a", "b"]
    assert [n for n, _ in m.named_parameters()] == ["a.weight", "a.bias"]
    assert list(m.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert m.num_parameters() == 2 * 3 + 3


def test_num_parameters_against_hand_counts() -> None:
    m = tiny(0)
    vocab, d = 7, 4
    per_block = (d * 2 * d + 2 * d) + (2 * d * d + d)
    assert m.num_parameters() == vocab * d + 2 * per_block  # the tied head counts once
    assert MLP(3, 5, 2).num_parameters() == 3 * 5 + 5 + 5 * 2 + 2
    m.emb.requires_grad_(False)
    assert m.num_parameters(trainable_only=True) == 2 * per_block
    assert m.num_parameters() == vocab * d + 2 * per_block


@settings(max_examples=15)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=5), st.booleans())
def test_sequential_parameter_count_and_round_trip(widths: list[int], bias: bool) -> None:
    def build(seed: int) -> nn.Sequential:
        nima.manual_seed(seed)
        layers: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(widths):
            layers += [nn.Linear(d_in, d_out, bias=bias), nn.Tanh()]
        return nn.Sequential(*layers)

    a, b = build(1), build(2)
    expected = sum(i * o + (o if bias else 0) for i, o in itertools.pairwise(widths))
    assert a.num_parameters() == expected
    x = nima.randn(3, widths[0])
    assert not np.allclose(a(x).data, b(x).data)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).data, b(x).data)


# ------------------------------------------------------------------------------ state_dict
def test_state_dict_round_trip_into_fresh_model() -> None:
    a, b = tiny(1), tiny(2)
    assert not np.allclose(a(IDS).data, b(IDS).data)
    a.scale = nima.tensor([1.5])
    saved = {k: v.copy() for k, v in a.state_dict().items()}
    result = b.load_state_dict(saved)
    assert result == nn.LoadResult([], [])
    np.testing.assert_array_equal(a(IDS).data, b(IDS).data)
    np.testing.assert_array_equal(b.scale.data, [1.5])


def test_state_dict_shares_memory_and_load_copies() -> None:
    a, b = tiny(1), tiny(2)
    sd = a.state_dict()
    assert np.shares_memory(sd["blocks.0.fc.weight"], a.blocks[0].fc.weight.data)
    b.load_state_dict(sd)
    assert not np.shares_memory(b.blocks[0].fc.weight.data, a.blocks[0].fc.weight.data)
    b.blocks[0].fc.weight.data[...] = 0.0
    assert np.abs(a.blocks[0].fc.weight.data).sum() > 0


def test_load_keeps_tied_parameters_tied_and_identities() -> None:
    a, b = tiny(1), tiny(2)
    before = [(p, p.data) for p in b.parameters()]
    b.load_state_dict(a.state_dict())
    assert b.head.weight is b.emb.weight
    assert all(p is q and p.data is arr for (p, arr), q in zip(before, b.parameters(),
                                                                 strict=True))
    np.testing.assert_array_equal(b.head.weight.data, a.emb.weight.data)


def test_load_accepts_tensors_as_values() -> None:
    m = nn.Linear(2, 2)
    m.load_state_dict({"weight": nima.ones(2, 2), "bias": nima.zeros(2)})
    np.testing.assert_array_equal(m(nima.ones(1, 2)).data, [[2.0, 2.0]])


def test_load_strict_names_missing_keys() -> None:
    a, b = tiny(1), tiny(2)
    sd = dict(a.state_dict())
    del sd["blocks.1.proj.bias"], sd["scale"]
    expected = r"TinyLM: missing keys \['scale', 'blocks\.1\.proj\.bias'\]"
    with pytest.raises(ValueError, match=expected):
        b.load_state_dict(sd)


def test_load_strict_names_unexpected_keys() -> None:
    a, b = tiny(1), tiny(2)
    sd = {**a.state_dict(), "blocks.2.fc.weight": np.zeros((8, 4))}
    with pytest.raises(ValueError, match=r"unexpected keys \['blocks\.2\.fc\.weight'\]"):
        b.load_state_dict(sd)


def test_load_shape_mismatch_names_key_and_both_shapes_even_when_not_strict() -> None:
    a, b = tiny(1), tiny(2)
    sd = {**a.state_dict(), "blocks.0.fc.weight": np.zeros((8, 5))}
    for strict in (True, False):
        with pytest.raises(ValueError) as err:
            b.load_state_dict(sd, strict=strict)
        msg = str(err.value)
        assert "blocks.0.fc.weight" in msg and "(8, 5)" in msg and "(8, 4)" in msg


def test_failed_load_leaves_the_model_unchanged() -> None:
    a, b = tiny(1), tiny(2)
    before = {k: v.copy() for k, v in b.state_dict().items()}
    sd = {**a.state_dict(), "emb.weight": np.zeros((7, 5))}
    with pytest.raises(ValueError):
        b.load_state_dict(sd)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_not_strict_returns_missing_and_unexpected() -> None:
    a, b = tiny(1), tiny(2)
    sd = {k: v for k, v in a.state_dict().items() if not k.startswith("blocks.1.")}
    sd["extra.weight"] = np.ones(3)
    result = b.load_state_dict(sd, strict=False)
    assert result.missing_keys == [k for k in TINY_PARAMS if k.startswith("blocks.1.")]
    assert result.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(b.blocks[0].fc.weight.data, a.blocks[0].fc.weight.data)
    assert not np.array_equal(b.blocks[1].fc.weight.data, a.blocks[1].fc.weight.data)


# ------------------------------------------------------------------------------ modes
def test_train_and_eval_reach_every_submodule() -> None:
    m = tiny(0)
    assert all(mod.training for mod in m.modules())
    assert m.eval() is m
    assert not any(mod.training for mod in m.modules())
    assert m.train() is m
    assert all(mod.training for mod in m.modules())
    m.blocks.train(False)
    assert m.training and m.emb.training
    assert not any(mod.training for mod in m.blocks.modules())


def test_zero_grad_clears_every_gradient() -> None:
    m = tiny(0)
    m(IDS).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_requires_grad_false_freezes() -> None:
    m = MLP(3, 4, 2)
    assert m.requires_grad_(False) is m
    x = nima.randn(5, 3, requires_grad=True)
    m(x).sum().backward()
    assert all(p.grad is None for p in m.parameters())
    assert x.grad is not None and np.abs(x.grad).sum() > 0
    assert m.num_parameters(trainable_only=True) == 0
    m.proj.requires_grad_(True)
    m(x).sum().backward()
    assert m.fc.weight.grad is None and m.proj.weight.grad is not None


def test_apply_visits_children_before_parents_once_each() -> None:
    m = tiny(0)
    order: list[nn.Module] = []
    assert m.apply(order.append) is m
    assert len(order) == len(list(m.modules())) and {id(x) for x in order} == {
        id(x) for x in m.modules()}
    position = {id(x): i for i, x in enumerate(order)}
    for parent in m.modules():
        for child in parent.children():
            assert position[id(child)] < position[id(parent)]
    assert order[-1] is m


def test_apply_for_initialisation() -> None:
    m = MLP(3, 4, 2)

    def zero_linear(mod: nn.Module) -> None:
        if isinstance(mod, nn.Linear):
            init.zeros_(mod.weight)
            init.ones_(mod.bias)

    m.apply(zero_linear)
    np.testing.assert_array_equal(m(nima.randn(2, 3)).data, np.ones((2, 2)))


# ------------------------------------------------------------------------------ repr
def test_repr_is_an_indented_tree_with_extra_repr() -> None:
    assert repr(tiny(0)) == """TinyLM(
  (emb): Embedding(7, 4)
  (blocks): ModuleList(
    (0): MLP(
      (fc): Linear(in_features=4, out_features=8, bias=True)
      (act): ReLU()
      (proj): Linear(in_features=8, out_features=4, bias=True)
    )
    (1): MLP(
      (fc): Linear(in_features=4, out_features=8, bias=True)
      (act): ReLU()
      (proj): Linear(in_features=8, out_features=4, bias=True)
    )
  )
  (head): Linear(in_features=4, out_features=7, bias=False)
)"""
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')"


# ------------------------------------------------------------------------------ dtype
def test_double_keeps_parameter_identity_and_ties() -> None:
    m = tiny(0)
    m(IDS).sum().backward()
    params = list(m.parameters())
    before = m.emb.weight.data.copy()
    assert m.double() is m
    assert all(p is q for p, q in zip(params, m.parameters(), strict=True))
    assert all(p.dtype == np.float64 and p.grad is None for p in m.parameters())
    assert m.scale.dtype == np.float64 and m.head.weight is m.emb.weight
    np.testing.assert_array_equal(m.emb.weight.data, before)
    assert m(IDS).dtype == np.float64
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())


def test_to_leaves_integer_buffers_alone() -> None:
    m = nn.Linear(2, 2)
    m.register_buffer("ids", nima.tensor(np.arange(3)))
    m.to(nima.float64)
    assert m.ids.dtype == np.arange(3).dtype and m.weight.dtype == np.float64


# ------------------------------------------------------------------------------ containers
def test_sequential_calls_in_order_and_indexes() -> None:
    nima.manual_seed(0)
    a, b = nn.Linear(3, 4), nn.Linear(4, 2)
    s = nn.Sequential(a, nn.ReLU(), b)
    x = nima.randn(5, 3)
    np.testing.assert_array_equal(s(x).data, b(a(x).relu()).data)
    assert len(s) == 3 and s[0] is a and s[-1] is b and list(s) == [a, s[1], b]
    head = s[:2]
    assert isinstance(head, nn.Sequential) and head[0] is a and len(head) == 2
    np.testing.assert_array_equal(head(x).data, a(x).relu().data)
    assert [n for n, _ in s.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(IndexError):
        s[3]
    with pytest.raises(TypeError, match="Sequential: argument 1 must be a Module, got function"):
        nn.Sequential(a, lambda x: x)


def test_module_list() -> None:
    layers = nn.ModuleList([nn.Linear(2, 2)])
    assert layers.append(nn.Tanh()) is layers
    assert layers.extend([nn.ReLU(), nn.Linear(2, 3)]) is layers
    assert len(layers) == 4 and [type(x).__name__ for x in layers] == ["Linear", "Tanh", "ReLU",
                                                                       "Linear"]
    assert [n for n, _ in layers.named_children()] == ["0", "1", "2", "3"]
    assert [n for n, _ in layers.named_parameters()] == ["0.weight", "0.bias", "3.weight",
                                                          "3.bias"]
    assert isinstance(layers[1:3], nn.ModuleList) and layers[1:3][0] is layers[1]
    assert layers[-1].out_features == 3
    with pytest.raises(IndexError):
        layers[4]
    with pytest.raises(TypeError, match=r"ModuleList\.append: expected a Module, got int"):
        layers.append(3)
    with pytest.raises(TypeError, match="got ndarray"):
        nn.ModuleList([np.zeros(2)])
    with pytest.raises(NotImplementedError, match="ModuleList"):
        layers(nima.ones(2))


def test_module_dict() -> None:
    relu, lin = nn.ReLU(), nn.Linear(2, 2)
    d = nn.ModuleDict({"act": relu})
    d["proj"] = lin
    assert len(d) == 2 and list(d) == ["act", "proj"] and "proj" in d and "x" not in d
    assert d["proj"] is lin and d.proj is lin
    assert list(d.keys()) == ["act", "proj"] and list(d.values()) == [relu, lin]
    assert list(d.items()) == [("act", relu), ("proj", lin)]
    assert [n for n, _ in d.named_parameters()] == ["proj.weight", "proj.bias"]
    d["act"] = nn.Tanh()  # replacing a key keeps its place
    assert list(d) == ["act", "proj"] and isinstance(d["act"], nn.Tanh)
    with pytest.raises(KeyError):
        d["missing"]
    with pytest.raises(TypeError, match="ModuleDict: value for 'x' must be a Module, got int"):
        d["x"] = 1
    with pytest.raises(KeyError, match=r"'a\.b'"):
        d["a.b"] = nn.ReLU()
    with pytest.raises(KeyError, match="shadow"):
        nn.ModuleDict({"training": nn.ReLU()})
    assert d.training is True


def test_containers_nest_inside_models() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleDict({"enc": nn.Sequential(nn.Linear(2, 3), nn.GELU()),
                                         "dec": nn.ModuleList([nn.Linear(3, 2)])})

    names = [n for n, _ in Net().named_parameters()]
    assert names == ["layers.enc.0.weight", "layers.enc.0.bias", "layers.dec.0.weight",
                     "layers.dec.0.bias"]
