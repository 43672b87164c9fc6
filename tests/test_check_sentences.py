"""The map checks' sentences, on numbers set by hand: k90 on the effect scale, and each random
control named with what beating it shows (nothing claimed against a control not beaten)."""

from __future__ import annotations

from actscale.views.analysis import k90_text
from actscale.views.analysis.checks import checks_frame, random_table  # noqa: F401 - random_table below


def _control(stratum: str, p95_pos: float, p95_neg: float, beats: bool) -> dict:
    row = {"k": 16, "stratum": stratum, "draws": 20, "beats": beats}
    for name, p95 in (("flip_acc_pos", p95_pos), ("flip_acc_neg", p95_neg), ("mean_flip", (p95_pos + p95_neg) / 2)):
        row.update({name: [p95] * 20, f"{name}_median": p95 - 0.1, f"{name}_p05": p95 - 0.2, f"{name}_p95": p95})
    return row


def checks(random: list[dict]) -> dict:
    full = {"k": 960, "flip_acc_pos": 1.0, "flip_acc_pos_ci95": [0.81, 1.0], "flip_acc_neg": 0.9375}
    full |= {"flip_acc_neg_ci95": [0.72, 0.99], "mean_flip": 0.96875}
    at_k90 = {"k": 16, "flip_acc_pos": 0.9375, "flip_acc_neg": 0.875, "mean_flip": 0.90625}
    return {
        "map": {
            "scale": "effect",
            "n_components": 960,
            "prompts": {"split": "test", "n": 16, "of": 200, "seed": 0},
            "choose": {"split": "val", "n": 16, "of": 40, "seed": 0},
            "base": {"flip_acc_pos": 0.25, "flip_acc_neg": 0.75},
            "full": full,
            "targets": {"flip_acc_pos": 0.925, "flip_acc_neg": 0.91875},
            "k90": 16,
            "effect_kept": {"flip_acc_pos": 0.9166666666666666, "flip_acc_neg": 0.6666666666666666},
            "sufficiency": [at_k90, full],
            "random": random,
        }
    }


def test_each_control_is_named_and_only_the_beaten_ones_are_claimed():
    data = checks(
        [
            _control("site", 0.56, 0.81, True),
            _control("layer", 0.53, 0.88, False),
            {"k": 16, "stratum": "position", "draws": 0, "reason": "the method's components have no position"},
        ]
    )
    assert k90_text(data) == (
        "k90 = 16 of 960 components (1.7%), chosen on 16 of 40 validation prompts (drawn with seed 0): the fewest top "
        "components that keep 90% of the full run's effect above the unmodified model in each direction it moves "
        "there. On 16 of 200 test prompts (drawn with seed 0): β = +1 0.25 → 1.00 in full, 0.94 with the top 16 (92% "
        "of the effect); β = −1 0.75 → 0.94 in full, 0.88 with the top 16 (67% of the effect). The "
        "same 16 magnitudes placed at random (never on the learned top 16 or where the check prompts do not reach), "
        "against the top 16's own rates: anywhere in the site (20 draws): 95th percentile β = +1 0.56, β = −1 0.81, "
        "beaten; same site and position, another layer (20 draws): 95th percentile β = +1 0.53, β = −1 0.88, NOT "
        "beaten; same site and layer, another position: not run (the method's components have no position). So the "
        "learned components beat random components of the same sites."
    )
    none = checks([_control("site", 0.96, 0.9, False), _control("layer", 0.95, 0.9, False)])
    assert k90_text(none).endswith("The learned placement beats none of these controls.")
    table = random_table(data)
    assert list(table["control"]) == [
        "anywhere in the site",
        "same site and position, another layer",
        "same site and layer, another position",
    ]
    assert list(table["beaten"][:2]) == [True, False] and table["draws"].tolist() == [20, 20, 0]


def test_a_direction_chosen_on_validation_that_does_not_move_the_test_prompts_says_so():
    data = checks([])
    data["map"]["effect_kept"]["flip_acc_neg"] = None
    assert "β = −1 0.75 → 0.94 in full, 0.88 with the top 16 (no effect on these prompts)." in k90_text(data)


def test_checks_stored_before_the_choice_on_validation_say_they_chose_on_the_test_prompts():
    data = checks([])
    del data["map"]["choose"]
    data["map"]["prompts"] = {"split": "test", "n": 16, "of": 200, "rows": list(range(16))}
    assert k90_text(data).startswith(
        "k90 = 16 of 960 components (1.7%), chosen on the same 16 of 200 test prompts (the first ones): "
    )
