"""schemathesis hooks for scripts/api-fuzz: keep every request short.

The API has streams (`?watch=true`, which never end) and long polls
(`after` with `timeout`, logs' `newer-than` with `wait`). Fuzzed as they
come, one request can hold the run for minutes. These hooks send a watch as
a plain list and cut a valid wait to at most a second; invalid values go
out untouched, so the server's refusal of them is still checked. The
streams themselves are tested in master/tests (api.rs, events.rs).
"""

import schemathesis

# (parameter, its valid maximum) of each long poll's wait, in seconds.
WAITS = {"timeout": 300, "wait": 30}


def _valid_wait(value, maximum):
    # The coverage phase sends numbers as strings.
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


@schemathesis.hook
def before_call(context, case, kwargs):
    query = case.query
    if not isinstance(query, dict):
        return
    if query.get("watch") in (True, "true"):
        query["watch"] = "false"
    waits = "after" in query or "newer-than" in query
    for name, maximum in WAITS.items():
        if name not in case.operation.query:
            continue
        if name in query:
            if _valid_wait(query[name], maximum):
                query[name] = min(int(query[name]), 1)
        elif waits:
            query[name] = 1
