"""Packed networks train as the same networks trained one by one: weights, BatchNorm statistics and losses
per step, with a learning rate, momentum and weight decay per member, and after members are dropped."""

from __future__ import annotations

import copy

import pytest
import torch

from study.models import Classifier, build_backbone
from study.packing import PackedNets, PackedSGD, choose_execution, packed_cross_entropy

P, B, STEPS = 3, 8, 6
# a learning rate per member (0.1 without momentum made one run's member cross a max-pool or ReLU tie at
# step 4 and part by 4e-4 from its lone twin: the float difference of a grouped convolution, amplified)
LR, MOMENTUM, WD = [0.05, 0.03, 0.02], [0.9, 0.0, 0.5], [5e-4, 0.0, 1e-3]


def _nets() -> list[torch.nn.Module]:
    nets = []
    for seed in range(P):
        torch.manual_seed(seed)
        nets.append(Classifier(build_backbone("small_cnn", 3, 16), 4))
    return nets


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(STEPS, P, B, 3, 16, 16, generator=g), torch.randint(0, 4, (STEPS, P, B), generator=g)


def _alone(nets, x, y, drop_after: int | None = None, dropped: int | None = None):
    """Each network trained by itself with torch.optim.SGD; per step, each member's loss."""
    losses = []
    opts = [
        torch.optim.SGD(n.parameters(), lr=LR[i], momentum=MOMENTUM[i], weight_decay=WD[i]) for i, n in enumerate(nets)
    ]
    for s in range(STEPS):
        row = []
        for i, (n, opt) in enumerate(zip(nets, opts)):
            if drop_after is not None and s >= drop_after and i == dropped:
                continue
            n.train()
            loss = torch.nn.functional.cross_entropy(n(x[s, i]), y[s, i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            row.append(float(loss.detach()))
        losses.append(row)
    return losses


@pytest.mark.parametrize("execution", ["vmap", "loop"])
def test_packed_members_follow_the_same_trajectories_as_networks_trained_alone(execution):
    nets = _nets()
    alone = copy.deepcopy(nets)
    x, y = _data()
    packed = PackedNets(nets).train()
    packed.execution = execution
    opt = PackedSGD(packed, LR, MOMENTUM, WD)
    losses = []
    for s in range(STEPS):
        per_member = packed_cross_entropy(packed(x[s]), y[s])
        opt.zero_grad()
        per_member.sum().backward()
        opt.step()
        losses.append(per_member.tolist())
    expected = _alone(alone, x, y)
    assert [v for row in losses for v in row] == pytest.approx([v for row in expected for v in row], rel=1e-4)
    for i, net in enumerate(alone):
        for k, v in net.state_dict().items():
            assert torch.allclose(packed.state_dict(i)[k].to(v.dtype), v, rtol=1e-4, atol=1e-5), (i, k)


def test_a_dropped_member_stops_and_the_others_go_on():
    nets = _nets()
    alone = copy.deepcopy(nets)
    x, y = _data()
    packed = PackedNets(nets).train()
    opt = PackedSGD(packed, LR, MOMENTUM, WD)
    members = [0, 1, 2]
    for s in range(STEPS):
        if s == 3:  # member 1 is pruned after three steps
            members = [0, 2]
            packed.keep([0, 2])
            opt.keep([0, 2])
        per_member = packed_cross_entropy(packed(x[s, members]), y[s, members])
        opt.zero_grad()
        per_member.sum().backward()
        opt.step()
    _alone(alone, x, y, drop_after=3, dropped=1)
    assert packed.size == 2
    for slot, i in enumerate(members):
        for k, v in alone[i].state_dict().items():
            assert torch.allclose(packed.state_dict(slot)[k].to(v.dtype), v, rtol=1e-4, atol=1e-5), (i, k)


def test_member_states_round_trip_and_bad_packs_are_refused():
    nets = _nets()
    packed = PackedNets(nets)
    state = packed.state_dict(2)
    fresh = Classifier(build_backbone("small_cnn", 3, 16), 4)
    fresh.load_state_dict(state)  # a member's state is its own network's state_dict
    packed.load_state_dict(0, state)
    assert all(torch.equal(packed.state_dict(0)[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="differ in architecture"):
        PackedNets([nets[0], Classifier(build_backbone("small_cnn", 3, 16), 5)])
    with pytest.raises(ValueError, match="lr has 2 values for 3 members"):
        PackedSGD(packed, [0.1, 0.2])
    with pytest.raises(ValueError, match="inputs for 2 members"):
        packed(torch.randn(2, 4, 3, 16, 16))


def test_choose_execution_keeps_the_faster_and_leaves_no_trace(monkeypatch):
    from study import packing

    packed = PackedNets(_nets()).train()
    x, y = _data()
    before = {k: v.clone() for k, v in packed.buffers.items()}
    ticks = iter([0.0, 5.0, 0.0, 1.0])  # vmap 5 s, loop 1 s
    monkeypatch.setattr(packing, "_clock", lambda: next(ticks))
    assert choose_execution(packed, x[0], y[0]) == "loop" == packed.execution
    assert all(torch.equal(before[k], v) for k, v in packed.buffers.items())  # BatchNorm statistics restored
    assert all(p.grad is None for p in packed.parameters())
