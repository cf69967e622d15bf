"""One colour and one marker per pruning strategy, the same in every figure; colour-blind safe (Okabe-Ito).

A strategy keeps its look whichever figure draws it and whichever others are present; lines of one strategy that
differ otherwise (fig1's keeps, several pruning epochs) differ by dash pattern. The paper's values are drawn hollow.
"""

from __future__ import annotations

# Okabe & Ito (2008), "Color universal design": distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")

ORANGE, SKY_BLUE, BLUISH_GREEN, YELLOW, BLUE, VERMILLION, REDDISH_PURPLE, BLACK = OKABE_ITO
STRATEGY_COLORS = {
    "high": VERMILLION, "low": SKY_BLUE, "low+high": BLUISH_GREEN, "random": BLUE, "mean-distance": REDDISH_PURPLE,
}
STRATEGY_MARKERS = {"high": "v", "low": "^", "low+high": "D", "random": "o", "mean-distance": "s"}
# Strategies a plugin adds take the colours and markers left, in turn.
_SPARE_COLORS = tuple(color for color in OKABE_ITO if color not in STRATEGY_COLORS.values())
_SPARE_MARKERS = ("P", "X", "h")
DASHES = ("", (4, 2), (1, 1.5), (6, 2, 1, 2))  # solid, dashed, dotted, dash-dot
REFERENCE_COLOR = "0.3"  # full data as a reference, and the paper's values
PAPER_MARKER = {"markerfacecolor": "none", "markeredgewidth": 1.0, "markersize": 6}


def strategy_color(strategy: str) -> str:
    if strategy in STRATEGY_COLORS:
        return STRATEGY_COLORS[strategy]
    return _SPARE_COLORS[sum(map(ord, strategy)) % len(_SPARE_COLORS)]  # stable across figures and runs


def strategy_marker(strategy: str) -> str:
    if strategy in STRATEGY_MARKERS:
        return STRATEGY_MARKERS[strategy]
    return _SPARE_MARKERS[sum(map(ord, strategy)) % len(_SPARE_MARKERS)]
