"""Cost models: steps to certify / stop as power laws of r and ℓ, seconds per step, and plans that use them."""

import socket

import numpy as np
import pytest
import yaml

from memlaw.law import LawPoints, MemoryLaw, plan_rank
from memlaw.law.cost import fit_cost, predict_steps
from memlaw.law.points import load_points
from memlaw.sweep import ResultsStore, load_sweep, run_sweep


def converged_points(noise=0.0):
    rng = np.random.default_rng(0)
    rank, length = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 4, 8, 16], [32, 64, 128, 256]))
    delta = 6.0 * rank**0.8 * length**-0.55 + 0.4 + rng.normal(0, 0.02, rank.shape)
    initial = np.full_like(rank, 11.0)
    steps = 40.0 * rank**-0.5 * length**0.9 * np.exp(rng.normal(0, noise, rank.shape))
    certified = (initial - delta < 0.69).astype(float)
    seconds = steps * (0.05 + 0.002 * length)
    return LawPoints(
        rank, length, delta, initial - delta, None, 1152 * rank, initial, None, certified,
        budget_limited=np.zeros_like(rank), stop_reason=np.array(["converged"] * len(rank)), steps=steps,
        certified_step=np.where(certified == 1, steps, np.nan), seconds=seconds, hosts=["box"],
    )  # fmt: skip


def test_exact_power_laws_are_recovered():
    cost = fit_cost(converged_points())
    model = cost["steps_to_stop"]
    assert model["a"] == pytest.approx(40.0) and model["spread"] == pytest.approx(1.0)
    assert (model["rank_exponent"], model["length_exponent"]) == pytest.approx((-0.5, 0.9))
    assert cost["seconds_per_step"] == pytest.approx({"intercept": 0.05, "per_token": 0.002})
    steps, low, high = predict_steps(model, 4, 100)
    assert steps == pytest.approx(40 * 4**-0.5 * 100**0.9) and low == pytest.approx(steps)


def test_noisy_steps_give_a_spread_and_a_plan_with_steps_and_time():
    points = converged_points(noise=0.2)
    law = MemoryLaw(bootstrap=0).fit_points(points)
    assert 1.1 < law.cost_["steps_to_stop"]["spread"] < 1.5
    plan = plan_rank(law, 100, initial_loss=11.0)
    steps, low, high = plan.predicted_steps
    assert low < steps < high and plan.steps_to == "converge"
    assert plan.predicted_seconds == pytest.approx(steps * (0.05 + 0.002 * 100), rel=0.05)
    assert any("steps to converge" in line and "on box" in line for line in plan.describe("rank"))
    restored = MemoryLaw.from_dict(law.to_dict())
    assert plan_rank(restored, 100, initial_loss=11.0).predicted_steps == plan.predicted_steps


def test_no_cost_without_probes_that_stopped_on_their_own():
    points = converged_points()
    points.stop_reason[:] = "budget"
    law = MemoryLaw(bootstrap=0).fit_points(points)
    assert law.cost_ is None
    plan = plan_rank(law, 100, initial_loss=11.0)
    assert plan.predicted_steps is None
    assert any("not predicted" in line for line in plan.describe("rank"))


def test_cost_from_a_real_store_of_converged_probes(tiny_dir, tmp_path):
    config = tmp_path / "s.yaml"
    grid = {"rank": [1, 4, 16], "length": [12, 24]}
    fixed = {"model": tiny_dir, "data": "longcontext", "until": "converged", "lr": 0.02, "max_steps": 400}
    config.write_text(yaml.safe_dump({"grid": grid, "fixed": {**fixed, "plateau_steps": 20}}))
    run_sweep(load_sweep(config), ResultsStore(tmp_path / "r.db"))
    points = load_points(tmp_path / "r.db")
    assert {"certified", "converged"} <= set(points.stop_reason) and points.provenance["until"] == "converged"
    assert "plateau" in points.provenance["lr_schedule"] and points.hosts == [socket.gethostname()]
    stopped = points.subset(np.isin(points.stop_reason, ["certified", "converged"]))  # what MemoryLaw fits on
    cost = fit_cost(stopped)
    model = cost["steps_to_stop"]
    assert model["cells"] == len(stopped.rank) >= 4 and cost["hosts"] == points.hosts
    for rank, length, steps in zip(stopped.rank, stopped.length, stopped.steps, strict=True):
        predicted, low, high = predict_steps(model, rank, length)
        # the fitted law reproduces its own cells within a few times its typical spread
        assert low / model["spread"] ** 2 <= steps <= high * model["spread"] ** 2
    assert cost["seconds_per_step"]["intercept"] + cost["seconds_per_step"]["per_token"] * 24 > 0
