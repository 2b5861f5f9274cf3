"""The rules: one small pure class per check, asked in the order the chains declare.

``RULES`` are the eligibility rules of an e-mail request; ``evaluate`` asks them (or other
rules) in order, ``run`` a whole chain (mailbot.rules.chains: the e-mail, test and desk
chains, with the rate limit before and the pool or a verdict after). The first rule that
refuses decides the outcome; the trail records every rule asked.
"""

from __future__ import annotations

from mailbot.rules.chains import DESK, EMAIL, RULES, TEST, Chain, evaluate, run

__all__ = ["DESK", "EMAIL", "RULES", "TEST", "Chain", "evaluate", "run"]
