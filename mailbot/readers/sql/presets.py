"""The SQL the `sql` reader source runs: a preset named in ``sql.query``, or the library's own.

A custom query must use the bound parameter ``:card``; a preset is written for one SQL
dialect and refused on another engine (``PRESET_BACKENDS``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mailbot.errors import ConfigError

__all__ = ["KOHA_QUERY", "PRESETS", "PRESET_BACKENDS", "resolve_query"]

KOHA_QUERY = """\
SELECT
    f.card_number,
    f.first_name,
    f.last_name,
    f.email,
    CASE
        WHEN f.restricted_since IS NOT NULL
            THEN LEAST(COALESCE(f.dateexpiry, f.restricted_since - INTERVAL 1 DAY),
                       f.restricted_since - INTERVAL 1 DAY)
        ELSE f.dateexpiry
    END AS valid_until,
    GREATEST(COALESCE(f.balance, 0), 0) AS balance_due,
    f.overdue_items,
    DATE(f.updated_on) AS data_updated_on,
    DATE(GREATEST(COALESCE(f.current_loan, f.past_loan),
                  COALESCE(f.past_loan, f.current_loan))) AS last_loan_on,
    f.dateofbirth AS birth_date,
    CASE
        WHEN :unconfirmed_categories = '' THEN NULL
        WHEN FIND_IN_SET(f.categorycode, :unconfirmed_categories) > 0 THEN 0
        ELSE 1
    END AS confirmed
FROM (
    SELECT
        b.cardnumber AS card_number,
        b.firstname AS first_name,
        b.surname AS last_name,
        NULLIF(TRIM(b.email), '') AS email,
        b.dateexpiry,
        b.dateofbirth,
        b.categorycode,
        b.updated_on,
        (SELECT MIN(DATE(d.created))
           FROM borrower_debarments d
          WHERE d.borrowernumber = b.borrowernumber
            AND (d.expiration IS NULL OR d.expiration >= CURDATE())) AS restricted_since,
        (SELECT SUM(a.amountoutstanding)
           FROM accountlines a
          WHERE a.borrowernumber = b.borrowernumber) AS balance,
        (SELECT COUNT(*)
           FROM issues i
          WHERE i.borrowernumber = b.borrowernumber
            AND i.date_due < NOW()) AS overdue_items,
        (SELECT MAX(i.issuedate)
           FROM issues i
          WHERE i.borrowernumber = b.borrowernumber) AS current_loan,
        (SELECT MAX(o.issuedate)
           FROM old_issues o
          WHERE o.borrowernumber = b.borrowernumber) AS past_loan
    FROM borrowers b
    WHERE b.cardnumber = :card
) AS f"""
"""The preset ``query = "koha"``: Koha's own schema (``kohastructure.sql``), MariaDB/MySQL.

How each field is read from Koha:

- ``card_number``, ``first_name``, ``last_name``, ``email``, ``birth_date``:
  ``borrowers.cardnumber``, ``firstname``, ``surname``, ``email`` (empty is none),
  ``dateofbirth``; the card is found by ``borrowers.cardnumber = :card``.
- ``valid_until``: ``borrowers.dateexpiry`` -- unless the patron has an active restriction
  (a ``borrower_debarments`` row whose ``expiration`` is ``NULL``, i.e. indefinite, or not
  before today), of any type (manual, overdues, suspension, discharge). Koha blocks such a
  patron, so the account counts as not valid since the day before the earliest active
  restriction was placed (``DATE(created) - 1 day``, or ``dateexpiry`` if that is
  earlier; Koha also moves ``created`` when a restriction is edited): the
  ``inactive_account`` rule then refuses, also a request that waited days while the
  source was down (a plain "yesterday" would have let that one through). Expired
  restrictions are ignored. (The legacy column ``borrowers.debarred`` is Koha's cached
  copy of the same rows and is not read.)
- ``balance_due``: Koha's account balance, ``SUM(accountlines.amountoutstanding)`` over
  all the patron's lines -- debits (fines, fees) are positive, unapplied credits negative
  -- and 0 when the patron is in credit.
- ``overdue_items``: current loans (``issues``) whose ``date_due`` is before ``NOW()``.
- ``data_updated_on``: the date of ``borrowers.updated_on``. Koha bumps that timestamp on
  *any* change of the row (staff edits, card renewal, but also OPAC logins when
  ``TrackLastPatronActivity`` is on), so it is lenient. A library that means "the patron
  confirmed their data at the desk" can use a custom query with
  ``COALESCE(b.date_renewed, b.dateenrolled) AS data_updated_on`` instead.
- ``last_loan_on``: the latest ``issuedate`` over current (``issues``) and returned
  (``old_issues``) loans: the day of the checkout. A renewal does not count as a loan
  (Tarnów's "renewals not counting"): Koha records it in ``lastreneweddate`` and
  ``renewals_count`` and leaves ``issuedate`` alone, so a book checked out in January and
  renewed in May is a January loan. Patrons whose reading history Koha anonymises
  (privacy "never") lose their ``old_issues``; only their current loans count.
- ``confirmed``: Koha has no "confirmed at the desk" flag. Patrons who register in the
  OPAC (``PatronSelfRegistration``) are put in the category
  ``PatronSelfRegistrationDefaultCategory``, and the staff move them to a regular one
  when they come to the desk with an ID; so ``sql.unconfirmed_categories`` (bound as
  ``:unconfirmed_categories``, comma-separated) names those categories: a patron in one
  of them is not confirmed, any other patron is. Empty (the default): ``NULL``, not
  known. A library that marks confirmation otherwise (a patron attribute, say) gives its
  own query, e.g. ``(SELECT a.attribute = 'TAK' FROM borrower_attributes a WHERE
  a.borrowernumber = b.borrowernumber AND a.code = 'POTW') AS confirmed``.

All aggregates are correlated subqueries on Koha's indexed ``borrowernumber`` columns, so
a lookup reads one patron's rows only. Dates are compared with the database's
``CURDATE()``/``NOW()``, in the time zone Koha stores its dates in.
"""

PRESETS: Mapping[str, str] = {"koha": KOHA_QUERY}
# Presets written in one SQL dialect: the backends they run on.
PRESET_BACKENDS: Mapping[str, frozenset[str]] = {"koha": frozenset({"mysql", "mariadb"})}

_CARD_PARAM = re.compile(r"(?<![:\w]):card\b")


def resolve_query(query: str) -> tuple[str, str | None]:
    """(SQL, preset name or None) for the ``sql.query`` setting."""
    name = (query or "").strip()
    if name.lower() in PRESETS:
        return PRESETS[name.lower()], name.lower()
    if not _CARD_PARAM.search(name):
        raise ConfigError(
            f"must be a preset ({', '.join(sorted(PRESETS))}) or an SQL query with the "
            "bound parameter :card", column="sql.query")
    return name, None
