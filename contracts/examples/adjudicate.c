/* adjudicate.c: a payer's own adjudication rule, which the claims module consults for the items
 * of a plan that names it (`medledger claim set-rule-contract`). The built-in checks run first
 * (coverage, covered code, duplicates, authorisation, code pairs); this rule then decides each
 * item it is asked about, answering in the built-in checks' codes, so its denials carry their X12
 * reasons. A rule that fails leaves the claim waiting for the payer's review, never paid.
 *
 * The rule, set at instantiation and changed by the payer's own members with `configure`:
 *   {"owner": "payer-org",
 *    "denied_codes": ["97039"],                   deny: code-not-covered
 *    "units_max": {"97110": 4},                   more units: deny impossible-quantity
 *    "review_charge_above": 50000,                a larger charge (minor units): review above-allowed
 *    "needs_diagnosis": {"83036": "E11"}}         without a diagnosis under the prefix: deny
 *                                                 code-not-covered (a medical-necessity rule)
 *
 * query   {"adjudicate": {...}}   the claims module's question (contracts/INTERFACE.md)
 * query   {"rule": {}}            the rule in force
 * execute {"configure": {...}}    replaces the rule (the owner's members only)
 */
#include "medledger.h"

static ml_str rule(void) { return ml_get(ml_s("rule")); }

static int store_rule(ml_str proposed) {
    if (ml_string(ml_member(proposed, "owner")).len <= 0) return ml_refuse("the rule needs an owner organisation");
    ml_set(ml_s("rule"), proposed);
    return ML_OK;
}

ML_ENTRY(instantiate) {
    ml_str message = {msg, msg_len};
    return store_rule(message);
}

ML_ENTRY(execute) {
    ml_str message = {msg, msg_len};
    ml_str proposed = ml_member(message, "configure");
    if (proposed.len < 0) return ml_refuse("unknown message: configure");
    ml_str caller = ml_member(ml_env(), "caller");
    ml_str org = ml_string(ml_member(caller, "org"));
    ml_str owner = ml_string(ml_member(rule(), "owner"));
    if (org.len < 0 || !ml_same(org, owner)) return ml_refuse("only the owner's members configure the rule");
    ml_str role = ml_string(ml_member(caller, "role"));
    if (!ml_eq(role, "insurer") && !ml_eq(role, "organisation")) return ml_refuse("only insurers configure the rule");
    int done = store_rule(proposed);
    if (done == ML_OK) ml_event(ml_s("{\"configured\":true}"));
    return done;
}

/* Appends one decision to the answer. */
static void decide(ml_buf *answer, int *first, ml_i64 sequence, const char *decision, const char *check) {
    if (!*first) ml_put_text(answer, ",");
    *first = 0;
    ml_put_text(answer, "{\"sequence\":");
    ml_put_int(answer, sequence);
    ml_put_text(answer, ",\"decision\":\"");
    ml_put_text(answer, decision);
    ml_put_text(answer, "\",\"check\":\"");
    ml_put_text(answer, check);
    ml_put_text(answer, "\"}");
}

static int has_diagnosis(ml_str diagnoses, ml_str prefix) {
    int cursor = 0;
    for (ml_str element = ml_array_next(diagnoses, &cursor); element.len >= 0;
         element = ml_array_next(diagnoses, &cursor)) {
        if (ml_starts_with(ml_string(element), prefix)) return 1;
    }
    return 0;
}

static int adjudicate(ml_str claim) {
    ml_str config = rule();
    ml_str denied = ml_member(config, "denied_codes");
    ml_str units_max = ml_member(config, "units_max");
    ml_str needs = ml_member(config, "needs_diagnosis");
    int has_ceiling = 0;
    ml_i64 ceiling = ml_integer(ml_member(config, "review_charge_above"), &has_ceiling);
    ml_str diagnoses = ml_member(claim, "diagnoses");

    ml_buf answer = ml_buf_new(256);
    ml_put_text(&answer, "{\"items\":[");
    int first = 1, cursor = 0;
    ml_str items = ml_member(claim, "items");
    for (ml_str item = ml_array_next(items, &cursor); item.len >= 0; item = ml_array_next(items, &cursor)) {
        int ok = 0;
        ml_i64 sequence = ml_integer(ml_member(item, "sequence"), &ok);
        if (!ok) return ml_refuse("an item without a sequence");
        ml_str code = ml_string(ml_member(item, "code"));
        ml_i64 units = ml_integer(ml_member(item, "units"), &ok);
        ml_i64 charge = ml_integer(ml_member(item, "charge"), &ok);
        if (denied.len >= 0 && ml_array_has_string(denied, code)) {
            decide(&answer, &first, sequence, "deny", "code-not-covered");
            continue;
        }
        int limited = 0;
        ml_i64 limit = ml_integer(ml_member_s(units_max, code), &limited);
        if (limited && units > limit) {
            decide(&answer, &first, sequence, "deny", "impossible-quantity");
            continue;
        }
        ml_str prefix = ml_string(ml_member_s(needs, code));
        if (prefix.len > 0 && !has_diagnosis(diagnoses, prefix)) {
            decide(&answer, &first, sequence, "deny", "code-not-covered");
            continue;
        }
        if (has_ceiling && charge > ceiling) {
            decide(&answer, &first, sequence, "review", "above-allowed");
            continue;
        }
        decide(&answer, &first, sequence, "approve", "code-not-covered");
    }
    ml_put_text(&answer, "]}");
    ml_result(ml_buf_str(&answer));
    return ML_OK;
}

ML_ENTRY(query) {
    ml_str message = {msg, msg_len};
    ml_str claim = ml_member(message, "adjudicate");
    if (claim.len >= 0) return adjudicate(claim);
    if (ml_member(message, "rule").len >= 0) {
        ml_result(rule());
        return ML_OK;
    }
    return ml_refuse("unknown query: adjudicate, rule");
}
