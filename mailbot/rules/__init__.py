"""The rules: one small pure class per check, asked in the order the chains declare.

``chains`` declares the e-mail, test and desk chains (``RULES`` are an e-mail request's
eligibility rules; ``evaluate`` asks rules in order, ``run`` a whole chain, with the rate
limit before and the pool or a verdict after) and ``intake`` the intake chain. The first
rule that refuses decides the outcome; the trail records every rule asked.

Nothing is imported here: intake imports its chain when the daemon starts, without the
deciding code of the other chains (a restarted daemon stores mail within a second).
"""
