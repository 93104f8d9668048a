"""The strategy registry: every arm of the comparison is one entry, and nothing else lists them.

An entry names the arm, how figures draw it (label, colour), its rule (`mars.RoundInputs` ->
`mars.Selection`: what it adds this round), the optional sources it needs ("policy": the task's
policy samples; "self_pool": the RM-labelled resample pool), the baselines its claims compare it
with (the first is its headline comparison, also used for the gold-order, SNR and curvature claims),
and — for arms whose allocation is a function of the reward gaps alone — `q(gaps, tau)` and the
config field holding its τ, which `mars allocate / augment --version NAME` use. Config validation,
the training dispatch, the figures, the claims and the command line all read this registry.

Add an arm (a new allocation rule q(Δ), say) with one `register(Strategy(...))` call; see
docs/method.md §2.8 and tests/test_registry.py for a complete example in a dozen lines.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from mars_lib import baselines as bl
from mars_lib.mars import RoundInputs, Selection, allocation_probs, mars_rule, tau_for_ess


@dataclass(frozen=True)
class Strategy:
    name: str
    label: str                                   # figure and table label
    color: str                                   # one colour per arm, everywhere
    rule: Callable[[RoundInputs], Selection]
    needs: tuple[str, ...] = ()                  # optional Sources fields it reads: "policy", "self_pool"
    baselines: tuple[str, ...] = ()              # claims "<name> beats <b>"; the first is the headline one
    phrase: str = ""                             # how a claim names it as a baseline ("uniform augmentation")
    q: Callable[[np.ndarray, float | None], np.ndarray] | None = None   # allocation from gaps alone (CLI)
    tau_field: str | None = None                 # the config field of its τ (None: it has no τ)
    aliases: tuple[str, ...] = ()                # other names on the command line ("v1")
    adds_pairs: bool = True                      # False: trains on the base pairs alone (no shortfall to report)
    key: bool = False                            # drawn in the few-arm figures (MARS and what it must beat)

    def claim_name(self) -> str:
        return self.phrase or self.label


REGISTRY: dict[str, Strategy] = {}


def register(s: Strategy) -> Strategy:
    """Add (or replace) an arm; returns it."""
    REGISTRY[s.name] = s
    return s


def get(name: str) -> Strategy:
    """The arm called `name` (or one of its aliases); "<arm>@<τ>" is that arm at a fixed τ (`at_tau`).
    A clear error for an unknown name."""
    for s in REGISTRY.values():
        if name == s.name or name in s.aliases:
            return s
    if "@ess" in name:
        return at_ess(name)
    if "@" in name:
        return at_tau(name)
    raise ValueError(f"unknown strategy {name!r}; registered: {sorted(REGISTRY)}")


def known(name: str) -> bool:
    """Whether `get(name)` names an arm (a registered one, an alias or "<arm>@<τ>")."""
    try:
        get(name)
        return True
    except ValueError:
        return False


def at_tau(name: str) -> Strategy:
    """"mars_v1@2" — the arm `mars_v1` with its τ fixed at 2 whatever the config says, under its own name,
    so that one run can train MARS at several τ beside each other (the fine-tuned regime's arms). It
    inherits the parent's rule, baselines and colour, and is registered on first use."""
    return _variant(name, "@", "<arm>@<τ> with a number after '@'", ess=False)


def at_ess(name: str) -> Strategy:
    """"mars_v1@ess0.5" — the arm `mars_v1` with τ chosen afresh each round from that round's reward gaps
    so that its realised integer budgets have ESS/N = 0.5 (`mars.tau_for_ess`): a concentration fixed
    across RMs whose gaps have different scales. Registered on first use, like `at_tau`."""
    return _variant(name, "@ess", "<arm>@ess<ESS/N> with a number, e.g. mars_v1@ess0.5", ess=True)


def _variant(name: str, sep: str, form: str, ess: bool) -> Strategy:
    """The parent arm of `name` with its τ fixed (ess False) or chosen for a target ESS/N (ess True)."""
    base_name, _, text = name.partition(sep)
    parent = get(base_name)
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"strategy {name!r}: expected {form}") from None
    if parent.tau_field is None or (ess and parent.q is None):
        raise ValueError(f"strategy {name!r}: {parent.name!r} has no τ to {'choose' if ess else 'fix'}")
    if ess and not 0 < x < 1:
        raise ValueError(f"strategy {name!r}: the target ESS/N must be in (0, 1)")
    canonical = f"{parent.name}{sep}{x:g}"
    if canonical in REGISTRY:
        return REGISTRY[canonical]
    field_ = parent.tau_field

    def rule(r: RoundInputs) -> Selection:
        tau = tau_for_ess(r.gaps(), x, parent.q, budget=r.budget, seed=r.seed) if ess else x
        return parent.rule(replace(r, cfg=replace(r.cfg, **{field_: tau})))
    what = f"ESS/N = {x:g}" if ess else f"τ = {x:g}"
    q = None if ess or parent.q is None else (lambda gaps, t=None: parent.q(gaps, x))
    return register(Strategy(canonical, f"{parent.label} {what.replace(' = ', '=')}", parent.color, rule,
                             needs=parent.needs, baselines=parent.baselines, phrase=f"{parent.claim_name()} at {what}",
                             q=q, aliases=(name,) if name != canonical else (), adds_pairs=parent.adds_pairs))


def names() -> tuple[str, ...]:
    """Every registered arm, in registry order (the order of figures and tables)."""
    return tuple(REGISTRY)


def key_arms() -> tuple[str, ...]:
    """The arms the few-arm figures draw (`Strategy.key`): MARS and the baselines it must beat."""
    return tuple(n for n, s in REGISTRY.items() if s.key)


def needing(what: str) -> tuple[str, ...]:
    """The arms that read an optional source ("policy", "self_pool")."""
    return tuple(n for n, s in REGISTRY.items() if what in s.needs)


def allocators() -> dict[str, Strategy]:
    """Command-line name -> arm, for every arm whose allocation is a function of the reward gaps alone."""
    return {a: s for s in REGISTRY.values() if s.q is not None for a in (s.name, *s.aliases)}


def _uniform_q(gaps, tau=None):
    return bl.uniform_q(len(gaps))


def _mars_q(gap: str):
    return lambda gaps, tau: allocation_probs(gaps, tau, gap)


# The authors' arms [C1][C2]; colours of their plots (No-aug #59A14F, Uniform #76B7B2, MARS #2F4B7C, WoN #E15759).
register(Strategy("none", "No aug.", "#59A14F", bl.none, phrase="no augmentation", adds_pairs=False))
register(Strategy("none_matched", "No aug., same steps", "#8CD17D", bl.none_matched,
                  phrase="no augmentation with as many optimizer steps", key=True))
register(Strategy("uniform", "Uniform", "#76B7B2", bl.uniform, phrase="uniform augmentation", q=_uniform_q, key=True))
register(Strategy("uniform_stratified", "Uniform (MARS's draw)", "#4E9F9A", bl.uniform_stratified,
                  phrase="uniform augmentation drawn as MARS draws", q=_uniform_q, key=True))
register(Strategy("won", "West-of-N (authors)", "#E15759", bl.won, phrase="West-of-N (authors')"))
register(Strategy("won_pace", "West-of-N (Pace)", "#B07AA1", bl.won_pace, needs=("policy",),
                  phrase="West-of-N (Pace et al.)"))
# Controls under the same budget and schedule: is MARS more than reweighting, easy-first, dropping
# likely-mislabelled pairs or self-training?
register(Strategy("reweight", "Reweight (MARS q)", "#9D7660", bl.reweight, phrase="reweighting the base pairs"))
register(Strategy("easy_first", "Easy-first", "#BAB0AC", bl.easy_first, phrase="easy-first allocation"))
register(Strategy("hard_filter", "Hard-filter", "#D37295", bl.hard_filter,
                  phrase="dropping the most negative-gap pairs"))
register(Strategy("self_train", "Self-training", "#499894", bl.self_train, needs=("self_pool",),
                  phrase="RM self-training"))
# MARS itself (mars_lib.mars)
register(Strategy("mars_v1", "MARS v1 (|Δ|)", "#2F4B7C", mars_rule("abs", "tau_v1"), phrase="MARS v1",
                  baselines=("uniform", "uniform_stratified", "none", "none_matched", "won", "won_pace", "reweight",
                             "easy_first", "hard_filter", "self_train"),
                  q=_mars_q("abs"), tau_field="tau_v1", aliases=("v1",), key=True))
register(Strategy("mars_v2", "MARS v2 (signed Δ)", "#F28E2B", mars_rule("signed", "tau_v2"), phrase="MARS v2",
                  baselines=("uniform", "uniform_stratified", "none", "none_matched", "won", "mars_v1"),
                  q=_mars_q("signed"), tau_field="tau_v2", aliases=("v2",), key=True))

# The arms a run trains unless told otherwise (cpu profile), in the order runs and tables list them.
DEFAULT = ("none", "uniform", "won", "won_pace", "mars_v1", "mars_v2", "none_matched", "reweight", "easy_first",
           "hard_filter", "self_train", "uniform_stratified")
