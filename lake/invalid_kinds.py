"""The invalid table's rows grouped by kind of problem, for the report: by problem code (pipeline/problems.py) where a
row has one; by its reason's wording where an older collector's row has none."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline import problems

#: Schema violations: (regex on the reason, kind). The reason starts with the JSON path of the offending value
#: ("$.event.price: ..."); both the collector's current wording (jsonschema-rs) and its earlier one are known.
VIOLATION_KINDS: tuple[tuple[str, str], ...] = (
    (r"is a required property$|must contain \[.*\] properties$", "missing"),
    (r"Additional properties are not allowed|must not contain .* properties$", "unexpected property"),
    (r"is not one of |must be one of ", "not an allowed value"),
    (r"is not valid under any of the schemas|must be valid by one of", "fits none of the allowed shapes"),
    (r"does not match |must match pattern ", "wrong format"),
    (r"(less|greater) than (or equal to )?the (minimum|maximum)|must be (bigger|smaller) than", "out of range"),
    (r"is (shorter|longer) than|must be (shorter|longer) than", "wrong length"),
    (r"is not of types? |must be (number|string|integer|object|array|boolean|null)", "wrong type"),
)
#: Refused requests (the whole body, with an HTTP status): (regex on the reason, what went wrong).
REFUSAL_KINDS: tuple[tuple[str, str], ...] = (
    (r"^body is not valid JSON", "body is not valid JSON"),
    (r"^body is not UTF-8", "body is not UTF-8"),
    (r"^body is nested too deeply", "body is nested too deeply"),
    (r"^content type .* is not accepted", "content type not accepted"),
    (r"^body of \d+ bytes exceeds", "body too large"),
    (r"^batch of \d+ events exceeds", "too many events in one batch"),
    (r"event\(s\) exceed the per-event size limit", "an event too large"),
    (r"^body must be an event object or an array", "body is not an event or an array"),
    (r"^body is an empty array", "empty array"),
)


def _case(subject: str, rules: Sequence[tuple[str, str]], fallback: str) -> tuple[str, list[str]]:
    """A SQL CASE mapping `subject` through regex rules; the patterns and labels are bound as parameters."""
    whens = " ".join(f"WHEN regexp_matches({subject}, ?) THEN ?" for _ in rules)
    parameters = [item for rule in rules for item in rule]
    return f"CASE {whens} ELSE {fallback} END", parameters


def invalid_group_sql() -> tuple[str, list[str]]:
    """SQL for one label per kind of problem: the JSON path plus the kind of violation, or the refusal."""
    # A generic form for an unknown wording: quoted values and numbers blanked out, so values do not split it.
    generic = r"""left(regexp_replace(regexp_replace({0}, '"[^"]*"|''[^'']*''', '…', 'g'), '[0-9]+', 'N', 'g'), 80)"""
    message = r"regexp_replace(reason, '^\$[^\s:]*:?\s*', '')"
    coded, coded_parameters = _code_case()
    kind, kind_parameters = _case("reason", VIOLATION_KINDS, generic.format(message))
    refusal, refusal_parameters = _case("reason", REFUSAL_KINDS, generic.format("reason"))
    # A missing property is reported on its parent ("$.event: \"price\" is a required property"): name it.
    missing = r"""coalesce(
        nullif(regexp_extract(reason, '"([^"]+)" is a required property$', 1), ''),
        nullif(regexp_replace(regexp_extract(reason, 'must contain \[(.*)\] properties$', 1), '[''\s]', '', 'g'), '')
    )"""
    path = r"regexp_extract(reason, '^(\$[^\s:]*)', 1)"
    sql = f"""
        SELECT CASE
            WHEN code IS NOT NULL THEN
                CASE WHEN status_code IS NOT NULL THEN 'HTTP ' || status_code ELSE coalesce(path, '$') END
                || ': ' || ({coded})
            WHEN status_code IS NOT NULL THEN 'HTTP ' || status_code || ': ' || coalesce(({refusal}), 'no reason')
            WHEN reason IS NULL THEN '(no reason)'
            WHEN reason = 'event must be a JSON object' THEN '$: not a JSON object'
            WHEN {path} = '' THEN {generic.format("reason")}
            WHEN {missing} IS NOT NULL THEN {path} || '.'
                || CASE WHEN contains({missing}, ',') THEN '{{' || {missing} || '}}' ELSE {missing} END
                || ': missing'
            ELSE {path} || ': ' || ({kind})
        END AS problem, reason
        FROM invalid
    """
    return sql, coded_parameters + refusal_parameters + kind_parameters


def _code_case() -> tuple[str, list[str]]:
    """SQL naming a code's kind (pipeline/problems.py); a code the table does not know is its own name."""
    whens = ["WHEN starts_with(code, ?) THEN ?"]
    parameters = [problems.SCHEMA_FORMAT_PREFIX, problems.SCHEMA_FORMAT_KIND]
    for code in problems.CODES.values():
        whens.append("WHEN code = ? THEN ?")
        parameters += [code.code, code.kind]
    return f"CASE {' '.join(whens)} ELSE code END", parameters
