import re

import numpy as np
import pytest

from memlaw.errors import MemlawInputError
from memlaw.law import MemoryLaw

TRUE = {"C": 6.0, "alpha": 0.8, "beta": 0.55, "b": 0.4}


def synthetic(noise=0.03, seed=0):
    ranks, lengths = np.meshgrid([1, 2, 4, 8, 16, 32], [50, 100, 200, 500, 1000, 2000, 4000])
    ranks, lengths = ranks.ravel().astype(float), lengths.ravel().astype(float)
    clean = TRUE["C"] * ranks ** TRUE["alpha"] * lengths ** (-TRUE["beta"]) + TRUE["b"]
    rng = np.random.default_rng(seed)
    return ranks, lengths, clean + rng.normal(0, noise, clean.shape)


def test_fit_recovers_known_constants_within_their_intervals():
    ranks, lengths, delta = synthetic()
    law = MemoryLaw(bootstrap=300, seed=1).fit(ranks, lengths, delta)
    assert law.r2_ > 0.99 and law.rmse_ < 0.05
    for name, attribute in (("C", "C_"), ("alpha", "alpha_"), ("beta", "beta_"), ("b", "b_")):
        low, high = law.ci_[name]
        assert low <= TRUE[name] <= high, (name, law.ci_[name])
        assert low <= getattr(law, attribute) <= high


def test_saturated_points_are_exactly_the_excluded_ones():
    ranks, lengths, delta = synthetic()
    final = np.full_like(delta, 3.0)
    final[[0, 5, 17]] = [0.1, 0.69, 0.0]
    final[9] = np.log(2)  # at the threshold: kept (the rule is final loss < ln 2)
    law = MemoryLaw(bootstrap=0).fit(ranks, lengths, delta, final)
    assert law.excluded_.tolist() == [0, 5, 17] and law.n_points_ == len(delta) - 3


def test_plan_inverts_predict():
    ranks, lengths, delta = synthetic()
    law = MemoryLaw(bootstrap=0).fit(ranks, lengths, delta)
    rank = law.rank_for(1000, initial_loss=10.0)
    assert law.predict(rank, 1000) == pytest.approx(10.0 - np.log(2))
    assert law.length_for(rank, initial_loss=10.0) == pytest.approx(1000)


def test_bootstrap_is_reproducible_for_a_seed():
    ranks, lengths, delta = synthetic()
    a = MemoryLaw(bootstrap=50, seed=3).fit(ranks, lengths, delta).ci_
    b = MemoryLaw(bootstrap=50, seed=3).fit(ranks, lengths, delta).ci_
    c = MemoryLaw(bootstrap=50, seed=4).fit(ranks, lengths, delta).ci_
    assert a == b and a != c


def test_no_offset_and_huber_forms():
    ranks, lengths, delta = synthetic()
    no_offset = MemoryLaw(form="no_offset", bootstrap=0).fit(ranks, lengths, delta)
    assert set(no_offset.constants_) == {"C", "alpha", "beta"} and not hasattr(no_offset, "b_")
    assert no_offset.formula() == "ΔL = C · r^α · ℓ^(−β)"  # what is printed is what was fitted
    assert MemoryLaw(bootstrap=0).fit(ranks, lengths, delta).formula() == "ΔL = C · r^α · ℓ^(−β) + b"
    delta[3] += 5  # one wild point
    huber = MemoryLaw(loss="huber", bootstrap=0).fit(ranks, lengths, delta)
    squares = MemoryLaw(bootstrap=0).fit(ranks, lengths, delta)
    assert abs(huber.alpha_ - TRUE["alpha"]) < abs(squares.alpha_ - TRUE["alpha"])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (([1, 2, 4], [10, 10, 10], [1.0, 0.5, 0.2]), "too few points"),
        (([1, 2, 4, 8, 16], [10] * 5, [1.0] * 5, [0.1] * 5), "no point left to fit: 5 excluded as saturated"),
        (([1, 0, 4, 8, 16], [10] * 5, [1.0] * 5), "must be positive"),
        (([1, 2, 4, 8, 16], [10] * 5, [1.0, np.nan, 1, 1, 1]), "NaN"),
    ],
)
def test_bad_input(arrays, message):
    with pytest.raises(MemlawInputError, match=message):
        MemoryLaw(bootstrap=0).fit(*arrays)


def test_the_law_is_a_scikit_learn_style_estimator():
    law = MemoryLaw(form="no_offset", bootstrap=3, seed=7)
    assert law.get_params() == {
        "form": "no_offset", "x": "rank", "loss": "squares", "huber_scale": 0.1,
        "saturation": "loss", "saturation_loss": pytest.approx(0.6931, abs=1e-4), "keep_budget_limited": False,
        "bootstrap": 3, "seed": 7,
    }  # fmt: skip
    assert not any(name.endswith("_") for name in vars(law))  # nothing learned before fit
    clone = law.clone(bootstrap=0)
    assert clone.get_params() == {**law.get_params(), "bootstrap": 0} and not hasattr(clone, "params_")
    with pytest.raises(MemlawInputError, match="unknown law form"):
        MemoryLaw(form="cubic").fit(*synthetic())  # validated in fit, not in __init__


def test_the_certified_rule_keeps_uncertified_cells_below_ln2_and_the_loss_rule_does_not():
    ranks, lengths, delta = synthetic()
    final = np.full_like(delta, 3.0)
    final[[2, 3]] = 0.3  # converged below ln 2 without certifying: the cells plans are made for
    certified = np.zeros_like(delta)
    certified[[7, 8]] = 1
    law = MemoryLaw(bootstrap=0, saturation="certified").fit(ranks, lengths, delta, final, certified=certified)
    assert law.excluded_.tolist() == [7, 8] and law.saturation_applied_ == "certified"
    by_loss = MemoryLaw(bootstrap=0).fit(ranks, lengths, delta, final, certified=certified)
    assert by_loss.excluded_.tolist() == [2, 3] and by_loss.saturation_applied_ == "loss"
    # without a record of certification the loss rule applies
    unrecorded = MemoryLaw(bootstrap=0, saturation="certified").fit(ranks, lengths, delta, final)
    assert unrecorded.saturation_applied_ == "loss"


def test_budget_limited_cells_are_excluded_and_counted():
    ranks, lengths, delta = synthetic()
    limited = np.zeros_like(delta)
    limited[[1, 4, 6]] = 1
    law = MemoryLaw(bootstrap=0).fit(ranks, lengths, delta, budget_limited=limited)
    assert law.excluded_.tolist() == [1, 4, 6]
    assert law.excluded_counts_ == {"saturated": 0, "budget_limited": 3}
    assert "3 as budget-limited" in law.excluded_words() and law.warnings_ == []
    kept = MemoryLaw(bootstrap=0, keep_budget_limited=True).fit(ranks, lengths, delta, budget_limited=limited)
    assert kept.n_excluded_ == 0 and "describes the training budget" in kept.warnings_[0]
    with pytest.raises(MemlawInputError, match=r"too few points to fit: 2 left.*40 as budget-limited"):
        MemoryLaw(bootstrap=0).fit(ranks, lengths, delta, budget_limited=np.r_[np.ones(40), np.zeros(2)])


def test_few_or_unrecorded_points_are_warned_about():
    ranks, lengths, delta = synthetic()
    unknown = np.full_like(delta, np.nan)
    law = MemoryLaw(bootstrap=0).fit(ranks, lengths, delta, budget_limited=unknown)
    assert any("do not record whether their loss had converged" in w for w in law.warnings_)
    few = MemoryLaw(bootstrap=0).fit(ranks[:6], lengths[:6] * np.arange(1, 7), delta[:6])
    assert any("only 6 points fitted for 4 constants" in w for w in few.warnings_)


def test_a_logarithmic_law_is_recognised_and_its_identified_rates_reported():
    # ΔL = 26 + 6·ln r − 4·ln ℓ is the power law's limit α, β → 0 (what converged probes near
    # capacity measured on the default model): C and b run off, C·α, C·β and α/β stay put
    rng = np.random.default_rng(0)
    ranks, lengths = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 3, 4], [24, 48, 96, 192]))
    delta = 26 + 6.0 * np.log(ranks) - 4.0 * np.log(lengths) + rng.normal(0, 0.05, ranks.shape)
    law = MemoryLaw(bootstrap=200, seed=0).fit(ranks, lengths, delta)
    (warning,) = [w for w in law.warnings_ if "logarithmic limit" in w]
    rates = dict(re.findall(r"(C·α|C·β|α/β) = ([\d.]+)", warning))
    assert float(rates["C·α"]) == pytest.approx(6.0, rel=0.05)
    assert float(rates["C·β"]) == pytest.approx(4.0, rel=0.05)
    assert float(rates["α/β"]) == pytest.approx(1.5, rel=0.05)
    assert law.rmse_ < 0.06  # the limit fits: only the constants' reading changes
    ranks, lengths, delta = synthetic()
    assert not any("logarithmic" in w for w in MemoryLaw(bootstrap=50).fit(ranks, lengths, delta).warnings_)


def covariate_points(shift=0.0, seed=0):
    """ΔL = 2·r^0.6·ℓ^(−0.4)·u^0.8 + 0.1 on content at four initial losses (3 to 14 nats), u
    being the initial loss less ``shift``."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid([1, 2, 4, 8], [16, 32, 64, 128], [3.0, 5.0, 8.0, 14.0])
    rank, length, start = (a.ravel().astype(float) for a in grid)
    delta = 2.0 * rank**0.6 * length**-0.4 * (start - shift) ** 0.8 + 0.1 + rng.normal(0, 0.01, rank.shape)
    return rank, length, start, delta


@pytest.mark.parametrize(("form", "shift"), [("initial", 0.0), ("excess", np.log(2))])
def test_a_covariate_law_learns_how_the_initial_loss_moves_capacity(form, shift):
    rank, length, start, delta = covariate_points(shift)
    easy = start < 10  # fit on the three lower initial losses, predict the highest
    law = MemoryLaw(form=form, bootstrap=50).fit(rank[easy], length[easy], delta[easy], initial_loss=start[easy])
    paper = MemoryLaw(bootstrap=0).fit(rank[easy], length[easy], delta[easy])
    held = np.abs(law.predict(rank[~easy], length[~easy], start[~easy]) - delta[~easy]).mean()
    paper_held = np.abs(paper.predict(rank[~easy], length[~easy]) - delta[~easy]).mean()
    assert held < 0.1 < paper_held  # the paper's law cannot tell easy content from hard
    assert law.constants_["gamma"] == pytest.approx(0.8, abs=0.05)
    low, high = law.ci_["gamma"]
    assert low < 0.8 < high
    assert law.grid_["initial_loss"] == [3.0, 8.0]
    assert "u^" in law.formula() and "u^" in law.formula(fitted=True)
    # planning inverts the law at the content's own initial loss
    x = law.rank_for(100, initial_loss=6.0)
    assert 6.0 - law.predict(x, 100, 6.0) == pytest.approx(np.log(2))
    assert law.length_for(x, initial_loss=6.0) == pytest.approx(100)
    # and a saved law is the same law
    again = MemoryLaw.from_dict(law.to_dict())
    assert again.predict(3, 50, 7.0) == pytest.approx(law.predict(3, 50, 7.0))


def test_a_covariate_law_needs_initial_losses():
    rank, length, start, delta = covariate_points()
    with pytest.raises(MemlawInputError, match="needs the points' initial losses"):
        MemoryLaw(form="initial").fit(rank, length, delta)
    start[3] = np.nan
    with pytest.raises(MemlawInputError, match="initial_loss holds NaN"):
        MemoryLaw(form="initial").fit(rank, length, delta, initial_loss=start)


def test_alternatives_include_covariate_forms_only_for_content_that_varies():
    from memlaw.law import LawPoints
    from memlaw.law.compare import compare_forms

    rank, length, start, delta = covariate_points()
    varied = LawPoints(rank, length, delta, start - delta, initial_loss=start)
    names = [row["name"] for row in compare_forms(varied, MemoryLaw(bootstrap=0))]
    assert "rank, covariate u = initial loss" in names and "rank, covariate u = initial loss − ln 2" in names
    best = min((row["heldout_rmse"], row["name"]) for row in compare_forms(varied, MemoryLaw(bootstrap=0)))
    assert "covariate" in best[1]  # the data were made with a covariate
    # random tokens alone: initial losses within 8 % of each other, no covariate to learn
    alike = np.where(start > 10, start, 14.0 - 0.01 * length)
    same = LawPoints(rank, length, delta, alike - delta, initial_loss=alike)
    assert not any("covariate" in row["name"] for row in compare_forms(same, MemoryLaw(bootstrap=0)))
