/* release_condition.c: a custodian's data-use condition on research releases, written by its
 * data access committee rather than built into the node. The research module consults it before
 * every release of the custodian's patients (`medledger research set-condition`), with the
 * request's public facts (never a patient), and refuses the release unless it permits.
 *
 * The condition: the researcher's organisation is approved by the committee; a release names at
 * most `patients_max` patients; genomic data (MolecularSequence) goes only to organisations the
 * committee approved for genomics.
 *
 * instantiate {"owner": "org0", "patients_max": 100}
 * execute     {"approve": {"org": "org2", "genomics": false}}   the owner's members (committee)
 * execute     {"withdraw": {"org": "org2"}}
 * query       {"release": {...}}                                 the research module's question
 * query       {"approved": {}}                                   -> {"orgs": [{"org", "genomics"}]}
 */
#include "medledger.h"

static ml_str org_key(ml_str org) {
    ml_buf key = ml_buf_new(8 + org.len);
    ml_put_text(&key, "org:");
    ml_put_str(&key, org);
    return ml_buf_str(&key);
}

ML_ENTRY(instantiate) {
    ml_str message = {msg, msg_len};
    int ok = 0;
    ml_i64 max = ml_integer(ml_member(message, "patients_max"), &ok);
    ml_str owner = ml_string(ml_member(message, "owner"));
    if (!ok || max < 1 || owner.len <= 0) return ml_refuse("instantiate needs an owner and patients_max >= 1");
    ml_set(ml_s("config"), message);
    return ML_OK;
}

ML_ENTRY(execute) {
    ml_str message = {msg, msg_len};
    ml_str caller = ml_member(ml_env(), "caller");
    ml_str owner = ml_string(ml_member(ml_get(ml_s("config")), "owner"));
    if (!ml_same(ml_string(ml_member(caller, "org")), owner)) return ml_refuse("only the committee's organisation decides");
    ml_str approve = ml_member(message, "approve");
    if (approve.len >= 0) {
        ml_str org = ml_string(ml_member(approve, "org"));
        if (org.len <= 0 || org.len > 64) return ml_refuse("approve needs an organisation id");
        int genomics = ml_eq(ml_member(approve, "genomics"), "true");
        ml_set(org_key(org), genomics ? ml_s("genomics") : ml_s("approved"));
        return ML_OK;
    }
    ml_str withdraw = ml_member(message, "withdraw");
    if (withdraw.len >= 0) {
        ml_remove(org_key(ml_string(ml_member(withdraw, "org"))));
        return ML_OK;
    }
    return ml_refuse("unknown message: approve, withdraw");
}

static int deny(const char *reason) {
    ml_buf answer = ml_buf_new(128);
    ml_put_text(&answer, "{\"permit\":false,\"reason\":");
    ml_put_quoted(&answer, ml_s(reason));
    ml_put_text(&answer, "}");
    ml_result(ml_buf_str(&answer));
    return ML_OK;
}

ML_ENTRY(query) {
    ml_str message = {msg, msg_len};
    ml_str release = ml_member(message, "release");
    if (release.len >= 0) {
        ml_str org = ml_string(ml_member(release, "researcher_org"));
        ml_str standing = ml_get(org_key(org));
        if (standing.len < 0) return deny("the researcher's organisation is not approved by the committee");
        int ok = 0;
        ml_i64 patients = ml_integer(ml_member(release, "patients"), &ok);
        ml_i64 max = ml_integer(ml_member(ml_get(ml_s("config")), "patients_max"), &ok);
        if (patients > max) return deny("more patients in one release than the committee allows");
        if (ml_array_has_string(ml_member(release, "resource_types"), ml_s("MolecularSequence")) &&
            !ml_eq(standing, "genomics"))
            return deny("genomic data only to organisations approved for genomics");
        ml_result(ml_s("{\"permit\":true}"));
        return ML_OK;
    }
    if (ml_member(message, "approved").len >= 0) {
        ml_buf answer = ml_buf_new(128);
        ml_put_text(&answer, "{\"orgs\":[");
        ml_str prefix = ml_s("org:");
        int first = 1;
        for (ml_str key = ml_next(prefix); key.len >= 0 && ml_starts_with(key, prefix); key = ml_next(key)) {
            if (!first) ml_put_text(&answer, ",");
            first = 0;
            ml_put_text(&answer, "{\"org\":");
            ml_put_quoted(&answer, ml_slice(key, 4, key.len));
            ml_put_text(&answer, ",\"genomics\":");
            ml_put_text(&answer, ml_eq(ml_get(key), "genomics") ? "true" : "false");
            ml_put_text(&answer, "}");
        }
        ml_put_text(&answer, "]}");
        ml_result(ml_buf_str(&answer));
        return ML_OK;
    }
    return ml_refuse("unknown query: release, approved");
}
