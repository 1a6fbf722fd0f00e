"""Planning with a law: whole ranks past the boundary, intervals, fixed points, warnings, JSON."""

import json
import math

import numpy as np
import pytest

from memlaw.constants import CERTIFY_LOSS
from memlaw.errors import MemlawInputError
from memlaw.law import LawPoints, MemoryLaw, plan_length, plan_rank

TRUE = (6.0, 0.8, 0.55, 0.4)
PER_RANK = 1152.0


def points(noise=0.03, ratios=(1.0,)):
    rng = np.random.default_rng(0)
    rank, length, ratio = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 4, 8, 16], [50, 100, 200, 400], ratios))
    delta = TRUE[0] * rank ** TRUE[1] * length ** (-TRUE[2]) + TRUE[3] + rng.normal(0, noise, rank.shape)
    # the initial loss grows a little with ℓ, and with the share of random tokens
    initial = 8.0 + 4.0 * ratio + 0.1 * np.log(length)
    return LawPoints(rank, length, delta, initial - delta, ratio, PER_RANK * rank, initial)


def test_plan_rank_is_the_smallest_whole_rank_below_the_target():
    law = MemoryLaw(bootstrap=200, seed=0).fit_points(points())
    plan = plan_rank(law, 300)
    start = 12.0 + 0.1 * math.log(300)  # interpolated between the measured lengths 200 and 400
    assert plan.initial_loss == pytest.approx(start, abs=0.01)
    below = lambda rank: start - law.predict(rank, 300) < CERTIFY_LOSS
    assert below(plan.rank) and not below(plan.rank - 1)
    assert plan.predicted_final_loss < CERTIFY_LOSS
    low, high = plan.interval
    assert low <= law.rank_for(300, start) <= high
    assert plan.trainable_params == plan.rank * PER_RANK
    assert plan.bits_per_param == pytest.approx(plan.stored_bits / plan.trainable_params)
    assert plan.rank > 16 and plan.warnings == [
        f"rank {plan.rank:g} is outside the fitted ranks [1, 16]: extrapolating"
    ]


def test_plan_length_reaches_the_target_at_its_own_initial_loss():
    law = MemoryLaw(bootstrap=100, seed=0).fit_points(points())
    plan = plan_length(law, 60)
    assert 50 < plan.length < 400  # inside the measured lengths, so the initial loss is interpolated
    assert plan.predicted_final_loss == pytest.approx(CERTIFY_LOSS, abs=1e-6)
    assert plan.initial_loss == pytest.approx(12.0 + 0.1 * math.log(plan.length), abs=0.01)
    assert plan.interval[0] <= plan.length <= plan.interval[1]
    fixed = plan_length(law, 8, initial_loss=10.0)
    assert law.predict(8, fixed.length) == pytest.approx(10.0 - CERTIFY_LOSS)
    # rank 8 holds a little less than that length, and needs rank 9 for a little more
    assert plan_rank(law, fixed.length * 0.99, initial_loss=10.0).rank == 8
    assert plan_rank(law, fixed.length * 1.01, initial_loss=10.0).rank == 9


def test_extrapolation_is_warned_about_and_interpolation_is_not():
    law = MemoryLaw(bootstrap=0).fit_points(points())
    inside = plan_rank(law, 100, initial_loss=law.predict(4.5, 100) + CERTIFY_LOSS)
    assert inside.rank == 5 and inside.warnings == [] and inside.interval is None
    outside = plan_rank(law, 5000, initial_loss=14)
    assert any("length 5000 is outside the fitted lengths [50, 400]" in w for w in outside.warnings)


def test_a_predicted_loss_below_zero_is_called_saturation_and_counts_no_extra_bits():
    law = MemoryLaw(bootstrap=0).fit_points(points())
    # rank 16 at ℓ 50 reduces the loss by more than an initial loss of 1 nat: the curve runs past 0
    plan = plan_rank(law, 50, initial_loss=1.0)
    assert plan.predicted_final_loss < 0
    assert any("below 0" in w and "saturated" in w for w in plan.warnings), plan.warnings
    assert plan.stored_bits == pytest.approx(1.0 * 50 / math.log(2))
    assert not any("below 0" in w for w in plan_rank(law, 300).warnings)


def test_ratio_selects_the_initial_loss_and_is_required_when_ambiguous():
    law = MemoryLaw(bootstrap=0).fit_points(points(ratios=(1.0, 0.4)))
    assert plan_rank(law, 100, ratio=0.4).initial_loss == pytest.approx(8.0 + 1.6 + 0.1 * math.log(100))
    with pytest.raises(MemlawInputError, match="pass ratio= or initial_loss="):
        plan_rank(law, 100)
    with pytest.raises(MemlawInputError, match="no probes at ratio 0.7"):
        plan_rank(law, 100, ratio=0.7)
    with pytest.raises(MemlawInputError, match="at least one token"):
        plan_rank(law, 0, ratio=0.4)


def test_a_saved_law_plans_the_same_as_the_fitted_one():
    law = MemoryLaw(bootstrap=50, seed=2).fit_points(points())
    loaded = MemoryLaw.from_dict(json.loads(json.dumps(law.to_dict())))
    assert np.array_equal(loaded.draws_, law.draws_)
    assert plan_rank(loaded, 250).to_dict() == plan_rank(law, 250).to_dict()
    assert plan_length(loaded, 3).to_dict() == plan_length(law, 3).to_dict()


def test_a_law_in_trainable_parameters_plans_in_rank():
    data = points()
    by_rank = MemoryLaw(bootstrap=0).fit_points(data)
    by_params = MemoryLaw(bootstrap=0, x="params").fit_points(data)
    assert plan_rank(by_params, 300).rank == plan_rank(by_rank, 300).rank
    assert plan_length(by_params, 4).length == pytest.approx(plan_length(by_rank, 4).length, rel=1e-3)


def test_a_no_offset_law_saved_before_forms_were_objects_still_plans():
    """Older law files kept b = 0 and four-column bootstrap draws for every form."""
    law = MemoryLaw(form="no_offset", bootstrap=30).fit_points(points())
    saved = law.to_dict()
    saved["b"] = 0.0
    saved["bootstrap_draws"] = [[*draw, 0.0] for draw in saved["bootstrap_draws"]]
    old = MemoryLaw.from_dict(json.loads(json.dumps(saved)))
    assert np.array_equal(old.draws_, law.draws_)
    assert plan_rank(old, 300, ratio=1.0).interval == plan_rank(law, 300, ratio=1.0).interval


def test_a_covariate_law_plans_more_rank_for_content_the_model_knows_less():
    rng = np.random.default_rng(1)
    rank, length, start = (a.ravel().astype(float) for a in np.meshgrid([1, 2, 4, 8], [16, 64, 256], [3.0, 8.0, 14.0]))
    delta = 1.5 * rank**0.5 * length**-0.3 * start**0.9 + rng.normal(0, 0.01, rank.shape)
    law = MemoryLaw(form="initial", bootstrap=30).fit(rank, length, delta, initial_loss=start)
    easy, hard = plan_rank(law, 100, initial_loss=4.0), plan_rank(law, 100, initial_loss=12.0)
    assert easy.rank < hard.rank
    for plan, start in ((easy, 4.0), (hard, 12.0)):
        assert plan.predicted_final_loss == pytest.approx(start - law.predict(plan.rank, 100, start))
        assert plan.predicted_final_loss < CERTIFY_LOSS <= start - law.predict(plan.rank - 1, 100, start)
        low, high = plan.interval
        assert low <= plan.rank <= high + 1
    back = plan_length(law, hard.rank, initial_loss=12.0)
    assert back.length >= 100 and back.predicted_final_loss == pytest.approx(CERTIFY_LOSS)


def test_a_logistic_certification_model_sets_the_margin_of_a_confident_plan():
    from memlaw.law.certify import certify_probability, fit_certification, margin_for_confidence
    from memlaw.law.plan import margin_for

    rng = np.random.default_rng(0)
    start, margin = rng.uniform(2.0, 14.0, 400), rng.uniform(0.5, 1.8, 400)
    predicted = start - margin * (start - CERTIFY_LOSS)  # the law's final loss at that capacity margin
    truth = 1 / (1 + np.exp(-(12.0 * margin - 15.0)))  # P = 0.5 at a margin of 1.25
    model = fit_certification(start, predicted, rng.random(400) < truth)
    assert model["slope"] == pytest.approx(12.0, rel=0.35) and model["cells"] == 400
    assert margin_for_confidence(model, 0.5) == pytest.approx(1.25, abs=0.05)
    at_90 = margin_for_confidence(model, 0.9)
    assert certify_probability(model, 6.0, 6.0 - at_90 * (6.0 - CERTIFY_LOSS)) == pytest.approx(0.9)
    # cleanly separated cells still give a finite, rising model; one outcome alone gives none
    margins = np.array([0.8, 0.9, 1.0, 1.2, 1.3, 1.4])
    separated = fit_certification(np.full(6, 10.0), 10.0 - margins * (10.0 - CERTIFY_LOSS), [0, 0, 0, 1, 1, 1])
    assert separated["slope"] > 0 and np.isfinite(separated["intercept"])
    assert fit_certification([5.0] * 3, [0.1, 0.2, 0.3], [1, 1, 1]) is None

    law = MemoryLaw(bootstrap=0).fit_points(points())
    with pytest.raises(MemlawInputError, match="no certification model"):
        margin_for(law, 0.9)
    law.certification_ = model
    plan = plan_rank(law, 300, initial_loss=10.0, confidence=0.9)
    assert plan.certify_probability >= 0.9
    assert 10.0 - plan.predicted_final_loss >= at_90 * (10.0 - CERTIFY_LOSS)
    looser = plan_rank(law, 300, initial_loss=10.0)
    assert looser.rank <= plan.rank and looser.certify_probability <= plan.certify_probability
    back = plan_length(law, plan.rank, initial_loss=10.0, confidence=0.9)
    assert back.length >= 300 and back.certify_probability == pytest.approx(0.9, abs=1e-6)
    with pytest.raises(MemlawInputError, match="between 0 and 1"):
        margin_for(law, 1.0)


def test_content_beyond_full_rank_is_refused_with_what_full_rank_holds():
    law = MemoryLaw(bootstrap=0).fit_points(points())
    law.reference_.max_rank = 16
    held = plan_length(law, 16, initial_loss=10.0).length
    assert plan_rank(law, held * 0.8, initial_loss=10.0).rank <= 16
    with pytest.raises(MemlawInputError, match=rf"do not fit even at full rank \(16.*holds about {held:,.0f} tokens"):
        plan_rank(law, held * 1.5, initial_loss=10.0)
    law.reference_.max_rank = None
    with pytest.raises(MemlawInputError, match="beyond any adapter"):
        plan_rank(law, 1e12, initial_loss=10.0)
