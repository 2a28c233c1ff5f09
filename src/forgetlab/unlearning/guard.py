"""The guards of `forgetlab unlearn`: decide, from the measured scores alone, when to stop and which checkpoint to
keep. Pure: no model, so the rules can be checked by hand (tests/test_unlearn_guard.py).

Worked example (floors 0.9 × retain and 0.8 × general, target 0.35, min_drop 0.3). Start: forget 0.80, retain
0.90, general 1.00, so the floors are retain 0.81 and general 0.80.
    step 2: forget 0.60, retain 0.88, general 0.95  floors held, not yet forgotten (down 0.20)   → go on
    step 4: forget 0.45, retain 0.85, general 0.90  floors held, down 0.35 ≥ min_drop: acceptable → go on
    step 6: forget 0.30, retain 0.70, general 0.85  retain below 0.81                             → stop (floor)
Kept: step 4, the acceptable checkpoint with the lowest forget accuracy.

With a QA target (0.2), the greedy chat answers count too: a check whose option accuracy says forgotten is
forgotten only if at most 20% of its forget answers still hold the fact (QA is measured only at such checks: its
generation costs more than the option scores). Step 4 above with QA 0.30 is not forgotten: training goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Check:
    """One guard evaluation: the step it was taken at, its scores, and the verdicts."""

    step: int
    epoch: int
    forget: float
    retain: float | None
    general: float | None
    qa: float | None = None  # forget QA; None: not measured here (no condition)
    floors_held: bool = True
    forgotten: bool = False

    @property
    def acceptable(self) -> bool:
        return self.floors_held and self.forgotten


@dataclass
class Guard:
    """Floors and target from the start scores; `see` each evaluation, `stop_reason` says whether to stop."""

    start_forget: float
    start_retain: float | None
    start_general: float | None
    target: float
    min_drop: float
    retain_floor: float
    general_floor: float
    qa_target: float | None = None
    patience: int = 1  # checks in a row below a floor before stopping
    backtracks: int = 0  # floor stops with nothing acceptable yet that go back to the last check above the floors
    checks: list[Check] = field(default_factory=list)
    retreats: list[tuple[int, int]] = field(default_factory=list)  # (step stopped at, step gone back to)
    since: int = 0  # where in `checks` the stretch since the last retreat begins (patience counts within it)

    @property
    def retain_min(self) -> float | None:
        return None if self.start_retain is None else self.retain_floor * self.start_retain

    @property
    def general_min(self) -> float | None:
        return None if self.start_general is None else self.general_floor * self.start_general

    def see(self, check: Check) -> Check:
        eps = 1e-9
        low_retain = self.retain_min is not None and check.retain is not None and check.retain < self.retain_min - eps
        low_general = (self.general_min is not None and check.general is not None
                       and check.general < self.general_min - eps)
        check.floors_held = not (low_retain or low_general)
        check.forgotten = self.options_forgotten(check.forget) and self.qa_ok(check.qa)
        self.checks.append(check)
        return check

    def options_forgotten(self, forget: float) -> bool:
        """Forgotten by the option accuracy alone: at or below the target, or down by at least min_drop."""
        return forget <= self.target + 1e-9 or self.start_forget - forget >= self.min_drop - 1e-9

    def qa_ok(self, qa: float | None) -> bool:
        return self.qa_target is None or qa is None or qa <= self.qa_target + 1e-9

    def stop_reason(self, check: Check) -> str | None:
        """Why to stop after `check` (None: go on). A floor stops the run after `patience` checks in a row below one
        (the damage of a first step is often undone by the next few)."""
        if not check.floors_held:
            recent = self.checks[self.since:][-self.patience:]
            if len(recent) < self.patience or any(c.floors_held for c in recent):
                return None
            what = [name for name, value, floor in (("retain", check.retain, self.retain_min),
                                                    ("general", check.general, self.general_min))
                    if value is not None and floor is not None and value < floor - 1e-9]
            return f"{' and '.join(what)} below the floor"
        if check.forget <= self.target + 1e-9 and self.qa_ok(check.qa):
            return "forget target reached"
        return None

    def retreat(self, check: Check) -> Check | None:
        """Where a floor stops the run at `check` before any checkpoint was acceptable, and backtracks remain: the
        latest check with the floors held (the start at worst), to restore and carry on from, more gently. None: stop
        (a floor with an acceptable checkpoint in hand keeps it; no backtracks left)."""
        if (check.floors_held or not self.stop_reason(check) or self.kept()[0] is not None
                or len(self.retreats) >= self.backtracks):
            return None
        back = self.last_held()
        self.retreats.append((check.step, back.step))
        self.since = len(self.checks)
        return back

    def last_held(self) -> Check | None:
        """The latest check with retain and general above their floors (where a retreat goes back to)."""
        return next((c for c in reversed(self.checks) if c.floors_held), None)

    def retain_scale(self, gain: float, retain: float | None) -> float:
        """The retain term's multiplier after a check: 1 + gain × (retain accuracy lost since the start) / (the loss
        the floor allows)."""
        if not gain or retain is None or self.retain_min is None:
            return 1.0
        allowed = max(self.start_retain - self.retain_min, 1e-6)
        return 1.0 + gain * max(0.0, self.start_retain - retain) / allowed

    def kept(self) -> tuple[Check | None, str]:
        """The checkpoint to keep and why. Acceptable checkpoints first, the lowest forget accuracy (then the higher
        retain, then the earlier step) winning; None when no checkpoint is acceptable."""
        good = [c for c in self.checks if c.acceptable and c.step > 0]
        if good:
            best = min(good, key=lambda c: (round(c.forget, 9), -(c.retain or 0.0), c.step))
            return best, "lowest forget accuracy with retain and general above their floors"
        return None, self.why_none()

    def best_rejected(self) -> Check | None:
        """Where no checkpoint is acceptable, the nearest miss after the start: floors held first, then the lowest
        forget accuracy."""
        later = [c for c in self.checks if c.step > 0]
        if not later:
            return None
        return min(later, key=lambda c: (not c.floors_held, round(c.forget, 9), c.step))

    def why_none(self) -> str:
        held = [c for c in self.checks if c.step > 0 and c.floors_held]
        if not held:
            return "no checkpoint kept retain and general above their floors"
        chat = [c.qa for c in held if self.options_forgotten(c.forget) and c.qa is not None]
        if chat:
            return (f"the option accuracy came down but forget QA went only to {min(chat):.2f} (needed ≤ "
                    f"{self.qa_target:.2f}) while retain and general held")
        lowest = min(c.forget for c in held)
        return (f"forgetting went only to {lowest:.2f} (needed ≤ {self.target:.2f} or a drop of {self.min_drop:.2f} "
                f"from {self.start_forget:.2f}) while retain and general held")


def chance(n_choices: list[int]) -> float:
    """Accuracy of a uniform guess over each item's options, averaged over items (0 with no items)."""
    return sum(1 / n for n in n_choices) / len(n_choices) if n_choices else 0.0
