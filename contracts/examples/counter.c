/* counter.c: the README's first contract. It keeps a count per organisation and a total.
 *
 * instantiate {"start": 5}                the total starts at 5
 * execute     {"increment": {"by": 2}}    adds to the total and to the caller's organisation
 * execute     {"reset": {}}               sets the total to 0 (only a member of the organisation
 *                                         named "owner" at instantiation)
 * query       {"total": {}}               -> {"total": n, "version": V}
 * query       {"of": {"org": "a"}}        -> {"org": "a", "count": n}
 * query       {"orgs": {}}                -> {"orgs": [{"org", "count"}...]} (a range over its keys)
 * migrate     {"scale": k}                multiplies the total by k (an upgrade's migration)
 *
 * And three calls that fail on purpose, for the tests: {"spin": {}} loops until its fuel runs out,
 * {"trap": {}} traps after writing, {"wild": {}} writes from memory it does not have.
 */
#include "medledger.h"

#ifndef VERSION
#define VERSION 1
#endif

static ml_i64 total(void) {
    ml_str stored = ml_get(ml_s("total"));
    int ok = 0;
    ml_i64 n = ml_integer(stored, &ok);
    return ok ? n : 0;
}

static void set_number(ml_str key, ml_i64 n) {
    ml_buf b = ml_buf_new(24);
    ml_put_int(&b, n);
    ml_set(key, ml_buf_str(&b));
}

static ml_str org_key(ml_str org) {
    ml_buf b = ml_buf_new(8 + org.len);
    ml_put_text(&b, "org:");
    ml_put_str(&b, org);
    return ml_buf_str(&b);
}

ML_ENTRY(instantiate) {
    ml_str message = {msg, msg_len};
    int ok = 0;
    ml_i64 start = ml_integer(ml_member(message, "start"), &ok);
    if (!ok) return ml_refuse("instantiate needs {\"start\": n}");
    ml_str owner = ml_string(ml_member(message, "owner"));
    if (owner.len > 0) ml_set(ml_s("owner"), owner);
    set_number(ml_s("total"), start);
    return ML_OK;
}

ML_ENTRY(execute) {
    ml_str message = {msg, msg_len};
    ml_str env = ml_env();
    ml_str caller = ml_member(env, "caller");
    ml_str org = ml_string(ml_member(caller, "org"));
    ml_str increment = ml_member(message, "increment");
    if (increment.len > 0) {
        int ok = 0;
        ml_i64 by = ml_integer(ml_member(increment, "by"), &ok);
        if (!ok || by < 0 || by > 1000000) return ml_refuse("increment needs {\"by\": 0 to 1000000}");
        ml_i64 next = total() + by;
        set_number(ml_s("total"), next);
        if (org.len > 0) {
            ml_str key = org_key(org);
            int had = 0;
            ml_i64 mine = ml_integer(ml_get(key), &had);
            set_number(key, (had ? mine : 0) + by);
        }
        ml_buf event = ml_buf_new(64);
        ml_put_text(&event, "{\"incremented\":");
        ml_put_int(&event, by);
        ml_put_text(&event, ",\"total\":");
        ml_put_int(&event, next);
        ml_put_text(&event, "}");
        ml_event(ml_buf_str(&event));
        ml_buf answer = ml_buf_new(32);
        ml_put_text(&answer, "{\"total\":");
        ml_put_int(&answer, next);
        ml_put_text(&answer, "}");
        ml_result(ml_buf_str(&answer));
        return ML_OK;
    }
    if (ml_member(message, "reset").len > 0) {
        ml_str owner = ml_get(ml_s("owner"));
        if (owner.len < 0 || !ml_same(owner, org)) return ml_refuse("only the owner's members reset");
        set_number(ml_s("total"), 0);
        return ML_OK;
    }
    if (ml_member(message, "spin").len > 0) {
        volatile int forever = 1;
        while (forever) {
        }
    }
    if (ml_member(message, "trap").len > 0) {
        set_number(ml_s("total"), -1);
        __builtin_trap();
    }
    if (ml_member(message, "wild").len > 0) {
        ml_host_db_write("total", 5, (const void *)0x7ffffff0, 64);
        return ML_OK;
    }
    return ml_refuse("unknown message: increment, reset");
}

ML_ENTRY(query) {
    ml_str message = {msg, msg_len};
    ml_buf answer = ml_buf_new(128);
    if (ml_member(message, "total").len > 0) {
        ml_put_text(&answer, "{\"total\":");
        ml_put_int(&answer, total());
        ml_put_text(&answer, ",\"version\":");
        ml_put_int(&answer, VERSION);
        ml_put_text(&answer, "}");
    } else if (ml_member(message, "of").len > 0) {
        ml_str org = ml_string(ml_member(ml_member(message, "of"), "org"));
        int ok = 0;
        ml_i64 count = ml_integer(ml_get(org_key(org)), &ok);
        ml_put_text(&answer, "{\"org\":");
        ml_put_quoted(&answer, org);
        ml_put_text(&answer, ",\"count\":");
        ml_put_int(&answer, ok ? count : 0);
        ml_put_text(&answer, "}");
    } else if (ml_member(message, "orgs").len > 0) {
        ml_put_text(&answer, "{\"orgs\":[");
        ml_str key = ml_s("org:");
        int first = 1;
        for (key = ml_next(key); key.len > 4 && memcmp(key.ptr, "org:", 4) == 0; key = ml_next(key)) {
            int ok = 0;
            ml_i64 count = ml_integer(ml_get(key), &ok);
            if (!first) ml_put_text(&answer, ",");
            first = 0;
            ml_put_text(&answer, "{\"org\":");
            ml_put_quoted(&answer, ml_slice(key, 4, key.len));
            ml_put_text(&answer, ",\"count\":");
            ml_put_int(&answer, count);
            ml_put_text(&answer, "}");
        }
        ml_put_text(&answer, "]}");
    } else {
        return ml_refuse("unknown query: total, of, orgs");
    }
    ml_result(ml_buf_str(&answer));
    return ML_OK;
}

ML_ENTRY(migrate) {
    ml_str message = {msg, msg_len};
    int ok = 0;
    ml_i64 scale = ml_integer(ml_member(message, "scale"), &ok);
    if (!ok || scale < 0 || scale > 1000) return ml_refuse("migrate needs {\"scale\": 0 to 1000}");
    set_number(ml_s("total"), total() * scale);
    return ML_OK;
}
