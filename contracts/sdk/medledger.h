/* medledger.h: the C SDK for medledger contracts, interface version 1.
 *
 * A contract is one C file that includes this header and defines its entry points with
 * ML_ENTRY(instantiate), ML_ENTRY(execute), ML_ENTRY(query) and, to be upgradable to,
 * ML_ENTRY(migrate). Each receives the message (JSON) as `msg` and `msg_len` and returns
 * ML_OK, or ml_refuse("why") to refuse the call (nothing it wrote is kept). Build it with
 * `medledger contract build file.c`, which runs clang for wasm32 with this header.
 *
 * Everything here is freestanding: no libc, no floating point (the chain refuses modules that
 * use it), no threads. Memory comes from a bump allocator that is never freed: each call runs in
 * a fresh instance, so memory lives exactly as long as the call. See contracts/INTERFACE.md for
 * the host functions, the JSON of the environment and of chain queries, and the fuel each costs.
 */
#ifndef MEDLEDGER_H
#define MEDLEDGER_H

typedef unsigned char ml_u8;
typedef unsigned int ml_u32;
typedef int ml_i32;
typedef long long ml_i64;
typedef unsigned long long ml_u64;
typedef unsigned long ml_size;

#define ML_OK 0
#define ML_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define ML_EXPORT(name) __attribute__((export_name(#name)))
#define ML_ENTRY(name) ML_EXPORT(name) int name(const char *msg, int msg_len)

/* ---- Host functions (module "env") ---------------------------------------------------- */

ML_IMPORT(env) int ml_host_env(void);
ML_IMPORT(register_read) void ml_host_register_read(void *ptr);
ML_IMPORT(db_read) int ml_host_db_read(const void *key, int key_len);
ML_IMPORT(db_write) void ml_host_db_write(const void *key, int key_len, const void *value, int value_len);
ML_IMPORT(db_remove) void ml_host_db_remove(const void *key, int key_len);
ML_IMPORT(db_next) int ml_host_db_next(const void *key, int key_len);
ML_IMPORT(emit_event) void ml_host_emit_event(const void *json, int len);
ML_IMPORT(set_result) void ml_host_set_result(const void *bytes, int len);
ML_IMPORT(query_chain) int ml_host_query_chain(const void *json, int len);
ML_IMPORT(transfer) void ml_host_transfer(const void *json, int len);
ML_IMPORT(call_contract) int ml_host_call_contract(const void *json, int len);
ML_IMPORT(abort) void ml_host_abort(const void *message, int len);

/* ---- Memory ----------------------------------------------------------------------------- */

extern unsigned char __heap_base;
static ml_size ml_heap_top;

static void *ml_alloc(ml_size size) {
    if (ml_heap_top == 0) ml_heap_top = (ml_size)&__heap_base;
    ml_size start = (ml_heap_top + 7) & ~(ml_size)7;
    ml_size end = start + size;
    ml_size have = __builtin_wasm_memory_size(0) * 65536;
    if (end > have) {
        ml_size pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (ml_size)-1) {
            ml_host_abort("out of memory", 13);
        }
    }
    ml_heap_top = end;
    return (void *)start;
}

/* The host asks for room for each message. */
ML_EXPORT(allocate) void *allocate(int size) { return ml_alloc((ml_size)size); }

/* clang may call these for copies and zeroing. */
void *memcpy(void *dest, const void *src, ml_size n) {
    ml_u8 *d = dest;
    const ml_u8 *s = src;
    while (n--) *d++ = *s++;
    return dest;
}
void *memset(void *dest, int c, ml_size n) {
    ml_u8 *d = dest;
    while (n--) *d++ = (ml_u8)c;
    return dest;
}
int memcmp(const void *a, const void *b, ml_size n) {
    const ml_u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}

static ml_size ml_strlen(const char *s) {
    ml_size n = 0;
    while (s[n]) n++;
    return n;
}

/* A byte string: a pointer and a length (not NUL-terminated). */
typedef struct {
    const char *ptr;
    int len;
} ml_str;

static ml_str ml_s(const char *text) {
    ml_str s = {text, (int)ml_strlen(text)};
    return s;
}

static int ml_eq(ml_str a, const char *b) {
    int n = (int)ml_strlen(b);
    return a.len == n && memcmp(a.ptr, b, (ml_size)n) == 0;
}

static int ml_same(ml_str a, ml_str b) {
    return a.len == b.len && memcmp(a.ptr, b.ptr, (ml_size)a.len) == 0;
}

/* Stops the call: nothing it wrote is kept, and the transaction is refused with `message`. */
static void ml_abort(const char *message) { ml_host_abort(message, (int)ml_strlen(message)); }

/* ---- Results, refusals, events ------------------------------------------------------------ */

static void ml_result(ml_str bytes) { ml_host_set_result(bytes.ptr, bytes.len); }

/* Refuses the call with a reason: return its value from an entry point. */
static int ml_refuse(const char *reason) {
    ml_host_set_result(reason, (int)ml_strlen(reason));
    return 1;
}

static void ml_event(ml_str json) { ml_host_emit_event(json.ptr, json.len); }

/* The register's content after a host function that returned `len` (-1: none). */
static ml_str ml_take_register(int len) {
    ml_str out = {0, -1};
    if (len < 0) return out;
    char *buffer = ml_alloc((ml_size)len + 1);
    ml_host_register_read(buffer);
    buffer[len] = 0;
    out.ptr = buffer;
    out.len = len;
    return out;
}

/* ---- State: the contract's own keys --------------------------------------------------------- */

/* The value under `key`; `.len == -1` if there is none. */
static ml_str ml_get(ml_str key) { return ml_take_register(ml_host_db_read(key.ptr, key.len)); }
static void ml_set(ml_str key, ml_str value) { ml_host_db_write(key.ptr, key.len, value.ptr, value.len); }
static void ml_remove(ml_str key) { ml_host_db_remove(key.ptr, key.len); }
/* The first key after `after` (an empty key: the first key); `.len == -1` at the end. */
static ml_str ml_next(ml_str after) { return ml_take_register(ml_host_db_next(after.ptr, after.len)); }

/* The call's environment as JSON: {"interface", "chain_id", "block": {"height", "time_ms"},
 * "contract", "tx", "caller": {"key", "org", "role"} or null}. */
static ml_str ml_env(void) { return ml_take_register(ml_host_env()); }

/* A chain query (JSON in, JSON out): see INTERFACE.md. */
static ml_str ml_query_chain(ml_str request) {
    return ml_take_register(ml_host_query_chain(request.ptr, request.len));
}

/* ---- Tokens and other contracts ------------------------------------------------------------ */

/* Pays out of the contract's own account, through the token module's checks, if the call ends
 * well: {"symbol": "USD", "to": "<hex key>", "amount": "<minor units>", "reason"?: "settlement"}.
 * A transfer the token module refuses (too little in the account, no such account) refuses the
 * whole call. */
static void ml_transfer(ml_str json) { ml_host_transfer(json.ptr, json.len); }

/* Calls another contract: {"contract": "<hex address>", "msg": {...}}. Answers {"ok": <its
 * answer>} or {"refused": "<its reason>"}; if it traps or runs out of fuel, so does this call. */
static ml_str ml_call(ml_str json) {
    return ml_take_register(ml_host_call_contract(json.ptr, json.len));
}

/* ---- JSON reading -------------------------------------------------------------------------
 * Enough JSON for messages: find a member of an object, read integers (no fractions, no
 * exponents: amounts are integers in minor units, as strings or numbers) and strings (escapes
 * are kept as they are, so compare only escape-free text), and walk arrays. */

static int ml_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static int ml_skip_ws(ml_str s, int i) {
    while (i < s.len && ml_ws(s.ptr[i])) i++;
    return i;
}

/* The end of the value that starts at `i` (after whitespace), or -1. */
static int ml_value_end(ml_str s, int i) {
    i = ml_skip_ws(s, i);
    if (i >= s.len) return -1;
    char c = s.ptr[i];
    if (c == '"') {
        for (i++; i < s.len; i++) {
            if (s.ptr[i] == '\\') i++;
            else if (s.ptr[i] == '"') return i + 1;
        }
        return -1;
    }
    if (c == '{' || c == '[') {
        int depth = 0;
        for (; i < s.len; i++) {
            char d = s.ptr[i];
            if (d == '"') {
                int end = ml_value_end(s, i);
                if (end < 0) return -1;
                i = end - 1;
            } else if (d == '{' || d == '[') {
                depth++;
            } else if (d == '}' || d == ']') {
                if (--depth == 0) return i + 1;
            }
        }
        return -1;
    }
    while (i < s.len && s.ptr[i] != ',' && s.ptr[i] != '}' && s.ptr[i] != ']' && !ml_ws(s.ptr[i])) i++;
    return i;
}

static ml_str ml_slice(ml_str s, int from, int to) {
    ml_str out = {s.ptr + from, to - from};
    return out;
}

static ml_str ml_none(void) {
    ml_str out = {0, -1};
    return out;
}

/* The value of member `name` of the object `object` (raw JSON), or `.len == -1`. */
static ml_str ml_member_s(ml_str object, ml_str name) {
    int i = ml_skip_ws(object, 0);
    if (object.len < 0 || i >= object.len || object.ptr[i] != '{') return ml_none();
    i++;
    for (;;) {
        i = ml_skip_ws(object, i);
        if (i >= object.len || object.ptr[i] == '}') return ml_none();
        int key_end = ml_value_end(object, i);
        if (key_end < 0) return ml_none();
        ml_str key = ml_slice(object, i + 1, key_end - 1);
        i = ml_skip_ws(object, key_end);
        if (i >= object.len || object.ptr[i] != ':') return ml_none();
        int value_start = ml_skip_ws(object, i + 1);
        int value_end = ml_value_end(object, value_start);
        if (value_end < 0) return ml_none();
        if (ml_same(key, name)) return ml_slice(object, value_start, value_end);
        i = ml_skip_ws(object, value_end);
        if (i < object.len && object.ptr[i] == ',') i++;
    }
}

static ml_str ml_member(ml_str object, const char *name) { return ml_member_s(object, ml_s(name)); }

/* The contents of a JSON string value (without its quotes), or `.len == -1`. */
static ml_str ml_string(ml_str value) {
    if (value.len < 2 || value.ptr[0] != '"' || value.ptr[value.len - 1] != '"') return ml_none();
    return ml_slice(value, 1, value.len - 1);
}

/* An integer from a JSON number or a string of digits; 0 and `*ok = 0` if it is not one. */
static ml_i64 ml_integer(ml_str value, int *ok) {
    ml_str digits = value;
    if (value.len >= 2 && value.ptr[0] == '"') digits = ml_slice(value, 1, value.len - 1);
    int i = 0, negative = 0;
    ml_i64 n = 0;
    *ok = 0;
    if (digits.len <= 0) return 0;
    if (digits.ptr[0] == '-') {
        negative = 1;
        i = 1;
    }
    if (i >= digits.len) return 0;
    for (; i < digits.len; i++) {
        char c = digits.ptr[i];
        if (c < '0' || c > '9') return 0;
        if (n > (0x7fffffffffffffffLL - (c - '0')) / 10) return 0;
        n = n * 10 + (c - '0');
    }
    *ok = 1;
    return negative ? -n : n;
}

/* The elements of a JSON array, one by one: start with `*cursor = 0`; `.len == -1` at the end. */
static ml_str ml_array_next(ml_str array, int *cursor) {
    int i = *cursor;
    if (i == 0) {
        i = ml_skip_ws(array, 0);
        if (array.len < 0 || i >= array.len || array.ptr[i] != '[') return ml_none();
        i++;
    }
    i = ml_skip_ws(array, i);
    if (i >= array.len || array.ptr[i] == ']') return ml_none();
    int end = ml_value_end(array, i);
    if (end < 0) return ml_none();
    ml_str element = ml_slice(array, i, end);
    i = ml_skip_ws(array, end);
    if (i < array.len && array.ptr[i] == ',') i++;
    *cursor = i;
    return element;
}

/* Whether the JSON array `array` holds the string `text`. */
static int ml_array_has_string(ml_str array, ml_str text) {
    int cursor = 0;
    for (ml_str element = ml_array_next(array, &cursor); element.len >= 0;
         element = ml_array_next(array, &cursor)) {
        ml_str value = ml_string(element);
        if (value.len >= 0 && ml_same(value, text)) return 1;
    }
    return 0;
}

/* Whether `text` begins with `prefix`. */
static int ml_starts_with(ml_str text, ml_str prefix) {
    return prefix.len >= 0 && text.len >= prefix.len && memcmp(text.ptr, prefix.ptr, (ml_size)prefix.len) == 0;
}

/* ---- JSON writing ------------------------------------------------------------------------- */

typedef struct {
    char *ptr;
    int len;
    int cap;
} ml_buf;

static ml_buf ml_buf_new(int cap) {
    ml_buf b = {ml_alloc((ml_size)cap), 0, cap};
    return b;
}

static void ml_put(ml_buf *b, const char *bytes, int n) {
    if (b->len + n > b->cap) {
        int cap = (b->cap + n) * 2;
        char *grown = ml_alloc((ml_size)cap);
        memcpy(grown, b->ptr, (ml_size)b->len);
        b->ptr = grown;
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, bytes, (ml_size)n);
    b->len += n;
}

static void ml_put_text(ml_buf *b, const char *text) { ml_put(b, text, (int)ml_strlen(text)); }
static void ml_put_str(ml_buf *b, ml_str s) { ml_put(b, s.ptr, s.len); }

/* A JSON string of `s` (quotes and backslashes escaped; control bytes dropped). */
static void ml_put_quoted(ml_buf *b, ml_str s) {
    ml_put(b, "\"", 1);
    for (int i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '"' || c == '\\') ml_put(b, "\\", 1);
        if ((unsigned char)c >= 0x20) ml_put(b, &c, 1);
    }
    ml_put(b, "\"", 1);
}

static void ml_put_int(ml_buf *b, ml_i64 n) {
    char digits[24];
    int i = 24;
    ml_u64 u = n < 0 ? (ml_u64)(-(n + 1)) + 1 : (ml_u64)n;
    do {
        digits[--i] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (n < 0) digits[--i] = '-';
    ml_put(b, digits + i, 24 - i);
}

static ml_str ml_buf_str(ml_buf *b) {
    ml_str s = {b->ptr, b->len};
    return s;
}

#endif
