/* escrow.c: a multi-party escrow. The payer funds the contract's own account (a token transfer to
 * its address); the money goes to the payee once `threshold` of the arbiters approve, or back to
 * the payer, at the payer's request, after `refund_after` (a block height) if it was not released.
 *
 * instantiate {"symbol": "USD", "amount": "5000", "payer": "<key>", "payee": "<key>",
 *              "arbiters": ["<key>", ...], "threshold": 2, "refund_after": 1000}
 * execute     {"approve": {}}   an arbiter approves (once); the last approval needed pays the payee
 * execute     {"refund": {}}    the payer takes the funds back after refund_after, if unreleased
 * query       {"status": {}}    -> {"approvals", "threshold", "released", "refunded", "balance"}
 */
#include "medledger.h"

static ml_str terms(void) { return ml_get(ml_s("terms")); }

static int flag(const char *name) { return ml_get(ml_s(name)).len >= 0; }

static ml_str caller_key(void) { return ml_string(ml_member(ml_member(ml_env(), "caller"), "key")); }

/* The contract's balance, from the token module. */
static ml_i64 balance(void) {
    ml_buf request = ml_buf_new(160);
    ml_put_text(&request, "{\"token_balance\":{\"symbol\":");
    ml_put_str(&request, ml_member(terms(), "symbol"));
    ml_put_text(&request, ",\"account\":");
    ml_put_quoted(&request, ml_string(ml_member(ml_env(), "contract")));
    ml_put_text(&request, "}}");
    int ok = 0;
    ml_i64 amount = ml_integer(ml_member(ml_query_chain(ml_buf_str(&request)), "amount"), &ok);
    return ok ? amount : 0;
}

static int approvals(void) {
    int count = 0;
    ml_str prefix = ml_s("approval:");
    for (ml_str key = ml_next(prefix); key.len >= 0 && ml_starts_with(key, prefix); key = ml_next(key)) count++;
    return count;
}

static void pay(ml_str to, const char *reason) {
    ml_buf transfer = ml_buf_new(200);
    ml_put_text(&transfer, "{\"symbol\":");
    ml_put_str(&transfer, ml_member(terms(), "symbol"));
    ml_put_text(&transfer, ",\"to\":");
    ml_put_quoted(&transfer, to);
    ml_put_text(&transfer, ",\"amount\":");
    ml_put_str(&transfer, ml_member(terms(), "amount"));
    ml_put_text(&transfer, ",\"reason\":\"");
    ml_put_text(&transfer, reason);
    ml_put_text(&transfer, "\"}");
    ml_transfer(ml_buf_str(&transfer));
}

ML_ENTRY(instantiate) {
    ml_str message = {msg, msg_len};
    int ok = 0;
    ml_i64 threshold = ml_integer(ml_member(message, "threshold"), &ok);
    int arbiters = 0, cursor = 0;
    for (ml_str a = ml_array_next(ml_member(message, "arbiters"), &cursor); a.len >= 0;
         a = ml_array_next(ml_member(message, "arbiters"), &cursor))
        arbiters++;
    if (!ok || threshold < 1 || threshold > arbiters) return ml_refuse("threshold must be 1 to the number of arbiters");
    ml_integer(ml_member(message, "amount"), &ok);
    if (!ok) return ml_refuse("amount must be an integer of minor units");
    ml_integer(ml_member(message, "refund_after"), &ok);
    if (!ok) return ml_refuse("refund_after must be a block height");
    if (ml_string(ml_member(message, "payer")).len != 64 || ml_string(ml_member(message, "payee")).len != 64)
        return ml_refuse("payer and payee must be keys");
    ml_set(ml_s("terms"), message);
    return ML_OK;
}

ML_ENTRY(execute) {
    ml_str message = {msg, msg_len};
    if (flag("released")) return ml_refuse("already released");
    if (flag("refunded")) return ml_refuse("already refunded");
    ml_str who = caller_key();
    int ok = 0;
    ml_i64 amount = ml_integer(ml_member(terms(), "amount"), &ok);
    if (ml_member(message, "approve").len >= 0) {
        if (who.len < 0 || !ml_array_has_string(ml_member(terms(), "arbiters"), who))
            return ml_refuse("only an arbiter approves");
        ml_buf key = ml_buf_new(80);
        ml_put_text(&key, "approval:");
        ml_put_str(&key, who);
        if (ml_get(ml_buf_str(&key)).len >= 0) return ml_refuse("this arbiter already approved");
        ml_set(ml_buf_str(&key), ml_s("1"));
        ml_i64 threshold = ml_integer(ml_member(terms(), "threshold"), &ok);
        if (approvals() < threshold) return ML_OK;
        if (balance() < amount) return ml_refuse("the escrow is not funded yet");
        pay(ml_string(ml_member(terms(), "payee")), "settlement");
        ml_set(ml_s("released"), ml_s("1"));
        ml_event(ml_s("{\"released\":true}"));
        return ML_OK;
    }
    if (ml_member(message, "refund").len >= 0) {
        if (!ml_same(who, ml_string(ml_member(terms(), "payer")))) return ml_refuse("only the payer takes a refund");
        ml_i64 after = ml_integer(ml_member(terms(), "refund_after"), &ok);
        ml_i64 height = ml_integer(ml_member(ml_member(ml_env(), "block"), "height"), &ok);
        if (height <= after) return ml_refuse("too early for a refund");
        if (balance() < amount) return ml_refuse("nothing to refund");
        pay(who, "refund");
        ml_set(ml_s("refunded"), ml_s("1"));
        ml_event(ml_s("{\"refunded\":true}"));
        return ML_OK;
    }
    return ml_refuse("unknown message: approve, refund");
}

ML_ENTRY(query) {
    ml_str message = {msg, msg_len};
    if (ml_member(message, "status").len < 0) return ml_refuse("unknown query: status");
    ml_buf answer = ml_buf_new(160);
    ml_put_text(&answer, "{\"approvals\":");
    ml_put_int(&answer, approvals());
    ml_put_text(&answer, ",\"threshold\":");
    ml_put_str(&answer, ml_member(terms(), "threshold"));
    ml_put_text(&answer, flag("released") ? ",\"released\":true" : ",\"released\":false");
    ml_put_text(&answer, flag("refunded") ? ",\"refunded\":true" : ",\"refunded\":false");
    ml_put_text(&answer, ",\"balance\":\"");
    ml_put_int(&answer, balance());
    ml_put_text(&answer, "\"}");
    ml_result(ml_buf_str(&answer));
    return ML_OK;
}
