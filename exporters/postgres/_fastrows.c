/*
 * OTLP ExportTraceServiceRequest bytes -> a binary COPY stream for the spans table.
 *
 * The compiled twin of rows.build_rows + psycopg's binary row formatter: same columns
 * (rows.COLUMNS), same JSON forms (_anyvalue.py), same escape of U+0000 and U+001A in
 * every string (nul_escape.py). It reads the protobuf wire format directly, so no Python
 * object is made per span or attribute. Every read is bounds-checked: malformed input
 * raises ValueError, never reads past the buffer.
 *
 *   encode(payload: bytes) -> (copy_data: bytes, rows: int, keys: bytes)
 *
 * keys: per stored span with 16/8-byte ids, trace_id + span_id + its role code (roles.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define NCOLUMNS 28
#define PG_EPOCH_US 946684800000000LL
#define MAX_DEPTH 100

/* ---------- growable output buffer ---------- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->failed) return -1;
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (!data) { b->failed = 1; return -1; }
    b->data = data;
    b->cap = cap;
    return 0;
}

static void buf_put(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n) == 0) { memcpy(b->data + b->len, src, n); b->len += n; }
}

static void buf_putc(Buf *b, char c) { buf_put(b, &c, 1); }
static void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_be32(Buf *b, int32_t v) {
    unsigned char out[4];
    uint32_t u = (uint32_t)v;
    out[0] = u >> 24; out[1] = u >> 16; out[2] = u >> 8; out[3] = u;
    buf_put(b, out, 4);
}

static void buf_be64(Buf *b, int64_t v) {
    unsigned char out[8];
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--) { out[i] = u & 0xff; u >>= 8; }
    buf_put(b, out, 8);
}

/* ---------- protobuf wire reading ---------- */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Reader;

typedef struct {
    const unsigned char *p;
    size_t n;
} Slice;

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        unsigned char c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) { *out = v; return 0; }
    }
    return -1;
}

static int read_value(Reader *r, uint32_t field, int wt, uint64_t *num, Slice *s, int depth);

/* Skips an unknown group up to its END_GROUP tag with the same field number. OTLP has no
 * groups, but protobuf parsers keep unknown ones and serialize them back out. */
static int skip_group(Reader *r, uint32_t group_field, int depth) {
    if (depth > MAX_DEPTH) return -1;
    for (;;) {
        uint64_t key, num;
        Slice s;
        if (read_varint(r, &key) < 0) return -1;
        uint32_t f = (uint32_t)(key >> 3);
        int wt = (int)(key & 7);
        if (wt == 4) return f == group_field ? 0 : -1;
        if (read_value(r, f, wt, &num, &s, depth + 1) < 0) return -1;
    }
}

static int read_value(Reader *r, uint32_t field, int wt, uint64_t *num, Slice *s, int depth) {
    if (field == 0) return -1;  /* field number 0 is invalid on the wire */
    switch (wt) {
    case 0:
        return read_varint(r, num);
    case 1:
        if (r->end - r->p < 8) return -1;
        memcpy(num, r->p, 8);  /* little-endian hosts only; checked at import */
        r->p += 8;
        return 0;
    case 5: {
        uint32_t v;
        if (r->end - r->p < 4) return -1;
        memcpy(&v, r->p, 4);
        r->p += 4;
        *num = v;
        return 0;
    }
    case 2: {
        uint64_t len;
        if (read_varint(r, &len) < 0) return -1;
        if (len > (uint64_t)(r->end - r->p)) return -1;
        s->p = r->p;
        s->n = (size_t)len;
        r->p += len;
        return 0;
    }
    case 3:
        return skip_group(r, field, depth);
    default:
        return -1;  /* an END_GROUP with no group open, or wire types 6 and 7 */
    }
}

/* Reads one field: its number, wire type, and value (varint/fixed in *num, bytes in *s).
 * A group (wire type 3) is skipped whole and reported as wire type 3, which no caller
 * asks for: unknown fields, and known ones with the wrong wire type, are skipped as
 * protobuf parsers skip them (they keep them as unknown fields). */
static int read_field(Reader *r, uint32_t *field, int *wt, uint64_t *num, Slice *s) {
    uint64_t key;
    if (read_varint(r, &key) < 0) return -1;
    if (key >> 32) return -1;  /* a field number past 2^29 - 1 */
    *field = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    return read_value(r, *field, *wt, num, s, 0);
}

/* Whether field f with wire type wt is a member of AnyValue's oneof (string, bool, int,
 * double, array, kvlist, bytes). Any other pair is an unknown field to protobuf. */
static int anyvalue_member(uint32_t f, int wt) {
    switch (f) {
    case 1: case 5: case 6: case 7: return wt == 2;
    case 2: case 3: return wt == 0;
    case 4: return wt == 1;
    default: return 0;
    }
}

static Reader reader_of(Slice s) { Reader r = {s.p, s.p + s.n}; return r; }

/* ---------- JSON writing ---------- */

typedef struct {
    Buf *out;
    int bad;      /* malformed wire data */
} Json;

static const char HEX[] = "0123456789abcdef";

static void json_string(Json *j, Slice s) {
    Buf *b = j->out;
    buf_putc(b, '"');
    const unsigned char *p = s.p, *end = s.p + s.n, *run = p;
    for (; p < end; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        buf_put(b, run, p - run);
        run = p + 1;
        switch (c) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '\b': buf_puts(b, "\\b"); break;
        case '\f': buf_puts(b, "\\f"); break;
        /* NUL and the escape character U+001A: the pairs of nul_escape.py, in JSON. */
        case 0: buf_puts(b, "\\u001a0"); break;
        case 0x1a: buf_puts(b, "\\u001a\\u001a"); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', HEX[c >> 4], HEX[c & 15]};
            buf_put(b, esc, 6);
        }
        }
    }
    buf_put(b, run, p - run);
    buf_putc(b, '"');
}

static void json_cstr(Json *j, const char *s) { Slice sl = {(const unsigned char *)s, strlen(s)}; json_string(j, sl); }

static void json_uint(Json *j, uint64_t v) { char t[24]; snprintf(t, sizeof t, "%llu", (unsigned long long)v); buf_puts(j->out, t); }
static void json_int(Json *j, int64_t v) { char t[24]; snprintf(t, sizeof t, "%lld", (long long)v); buf_puts(j->out, t); }

static void json_hex(Json *j, Slice s) {
    buf_putc(j->out, '"');
    for (size_t i = 0; i < s.n; i++) { buf_putc(j->out, HEX[s.p[i] >> 4]); buf_putc(j->out, HEX[s.p[i] & 15]); }
    buf_putc(j->out, '"');
}

static void json_base64(Json *j, Slice s) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    Buf *b = j->out;
    size_t i = 0;
    buf_putc(b, '"');
    for (; i + 3 <= s.n; i += 3) {
        uint32_t v = (s.p[i] << 16) | (s.p[i + 1] << 8) | s.p[i + 2];
        char q[4] = {T[v >> 18], T[(v >> 12) & 63], T[(v >> 6) & 63], T[v & 63]};
        buf_put(b, q, 4);
    }
    if (s.n - i == 1) {
        uint32_t v = s.p[i] << 16;
        char q[4] = {T[v >> 18], T[(v >> 12) & 63], '=', '='};
        buf_put(b, q, 4);
    } else if (s.n - i == 2) {
        uint32_t v = (s.p[i] << 16) | (s.p[i + 1] << 8);
        char q[4] = {T[v >> 18], T[(v >> 12) & 63], T[(v >> 6) & 63], '='};
        buf_put(b, q, 4);
    }
    buf_putc(b, '"');
}

static void json_double(Json *j, double d) {
    /* repr(), as Python writes it; wrapped where JSON would lose it (see _anyvalue.py). */
    char *text = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!text) { j->out->failed = 1; return; }
    if (strchr(text, 'e') || !isfinite(d) || (d == 0.0 && signbit(d))) {
        buf_puts(j->out, "{\"@double\":");
        json_cstr(j, text);
        buf_putc(j->out, '}');
    } else {
        buf_puts(j->out, text);
    }
    PyMem_Free(text);
}

static void json_attributes(Json *j, Slice list_owner, uint32_t kv_field, int depth, int wrap_at_sign);

/* One AnyValue message -> JSON. */
static void json_anyvalue(Json *j, Slice msg, int depth) {
    if (depth > MAX_DEPTH) { j->bad = 1; return; }
    Reader r = reader_of(msg);
    uint32_t f; int wt; uint64_t num = 0; Slice s = {0};
    /* proto3 oneof: the last member present wins. */
    int kind = 0; uint64_t knum = 0; Slice ks = {0};
    while (r.p < r.end) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) { j->bad = 1; return; }
        if (anyvalue_member(f, wt)) { kind = (int)f; knum = num; ks = s; }
    }
    switch (kind) {
    case 0: buf_puts(j->out, "null"); break;
    case 1: json_string(j, ks); break;
    case 2: buf_puts(j->out, knum ? "true" : "false"); break;
    case 3: json_int(j, (int64_t)knum); break;
    case 4: { double d; memcpy(&d, &knum, 8); json_double(j, d); break; }
    case 5: {  /* ArrayValue.values = 1 */
        Reader a = reader_of(ks);
        int first = 1;
        buf_putc(j->out, '[');
        while (a.p < a.end) {
            if (read_field(&a, &f, &wt, &num, &s) < 0) { j->bad = 1; return; }
            if (f != 1 || wt != 2) continue;
            if (!first) buf_putc(j->out, ',');
            first = 0;
            json_anyvalue(j, s, depth + 1);
        }
        buf_putc(j->out, ']');
        break;
    }
    case 6: json_attributes(j, ks, 1, depth + 1, 1); break;  /* KeyValueList.values = 1 */
    case 7:
        buf_puts(j->out, "{\"@bytes\":");
        json_base64(j, ks);
        buf_putc(j->out, '}');
        break;
    }
}

/* KeyValue entries (field kv_field of list_owner) -> a JSON object. With wrap_at_sign, an
 * object whose only distinct key starts with '@' is wrapped as {"@kvlist": ...}. */
static void json_attributes(Json *j, Slice owner, uint32_t kv_field, int depth, int wrap_at_sign) {
    if (depth > MAX_DEPTH) { j->bad = 1; return; }
    Reader r = reader_of(owner);
    uint32_t f; int wt; uint64_t num; Slice s = {0};
    int first = 1, wrapped = 0;
    if (wrap_at_sign) {
        /* Find whether all keys are one key that starts with '@'. */
        Reader scan = r;
        Slice only = {0};
        int count = 0, same = 1;
        while (scan.p < scan.end) {
            if (read_field(&scan, &f, &wt, &num, &s) < 0) { j->bad = 1; return; }
            if (f != kv_field || wt != 2) continue;
            Reader kr = reader_of(s);
            Slice key = {(const unsigned char *)"", 0};
            Slice t; uint32_t kf; int kwt; uint64_t kn;
            while (kr.p < kr.end) {
                if (read_field(&kr, &kf, &kwt, &kn, &t) < 0) { j->bad = 1; return; }
                if (kf == 1 && kwt == 2) key = t;
            }
            if (count++ == 0) only = key;
            else if (key.n != only.n || memcmp(key.p, only.p, key.n) != 0) same = 0;
        }
        wrapped = count > 0 && same && only.n > 0 && only.p[0] == '@';
    }
    if (wrapped) buf_puts(j->out, "{\"@kvlist\":");
    buf_putc(j->out, '{');
    while (r.p < r.end) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) { j->bad = 1; return; }
        if (f != kv_field || wt != 2) continue;
        Reader kr = reader_of(s);
        Slice key = {(const unsigned char *)"", 0}, value = {(const unsigned char *)"", 0};
        Slice t; uint32_t kf; int kwt; uint64_t kn;
        while (kr.p < kr.end) {
            if (read_field(&kr, &kf, &kwt, &kn, &t) < 0) { j->bad = 1; return; }
            if (kf == 1 && kwt == 2) key = t;
            else if (kf == 2 && kwt == 2) value = t;
        }
        if (!first) buf_putc(j->out, ',');
        first = 0;
        json_string(j, key);
        buf_putc(j->out, ':');
        json_anyvalue(j, value, depth + 1);
    }
    buf_putc(j->out, '}');
    if (wrapped) buf_putc(j->out, '}');
}

/* ---------- COPY fields ---------- */

static void copy_null(Buf *b) { buf_be32(b, -1); }
static void copy_bytes(Buf *b, Slice s) { buf_be32(b, (int32_t)s.n); buf_put(b, s.p, s.n); }

/* A string for a text column, and whether it holds NUL or U+001A (nearly never). */
typedef struct {
    Slice s;
    int escape;
} Text;

static Text text_of(Slice s) {
    Text t = {s, s.n && (memchr(s.p, 0, s.n) || memchr(s.p, 0x1a, s.n))};
    return t;
}

/* Escaped as nul_escape.py does: U+0000 -> U+001A '0', U+001A -> U+001A U+001A. */
static void copy_escaped(Buf *b, Slice s) {
    const unsigned char *p = s.p, *end = s.p + s.n, *run = p;
    size_t extra = 0;
    for (; p < end; p++) extra += *p == 0 || *p == 0x1a;
    buf_be32(b, (int32_t)(s.n + extra));
    for (p = s.p; p < end; p++) {
        if (*p != 0 && *p != 0x1a) continue;
        buf_put(b, run, p - run);
        char pair[2] = {0x1a, *p ? 0x1a : '0'};
        buf_put(b, pair, 2);
        run = p + 1;
    }
    buf_put(b, run, end - run);
}

static void copy_text(Buf *b, Text t) { if (t.escape) copy_escaped(b, t.s); else copy_bytes(b, t.s); }
static void copy_int8(Buf *b, int64_t v) { buf_be32(b, 8); buf_be64(b, v); }
static void copy_int4(Buf *b, int32_t v) { buf_be32(b, 4); buf_be32(b, v); }

/* A jsonb field built in `tmp`: version byte 1, then the text. */
static void copy_jsonb(Buf *b, Buf *tmp) { buf_be32(b, (int32_t)tmp->len + 1); buf_putc(b, 1); buf_put(b, tmp->data, tmp->len); }

/* ---------- the request walk ---------- */

typedef struct {
    Buf json;       /* resource attributes JSON */
    Text schema_url;
    uint64_t dropped;
    Text service;   /* service.name when a string, else s.n == SIZE_MAX */
} Group;

/* service.name: the last string value under that key. */
static Slice find_service_name(Slice resource, int *found) {
    Reader r = reader_of(resource);
    uint32_t f; int wt; uint64_t num; Slice s = {0}, result = {0};
    *found = 0;
    while (r.p < r.end) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) return result;
        if (f != 1 || wt != 2) continue;
        Reader kr = reader_of(s);
        Slice key = {0}, value = {0}, t; uint32_t kf; int kwt; uint64_t kn; int has_value = 0;
        while (kr.p < kr.end) {
            if (read_field(&kr, &kf, &kwt, &kn, &t) < 0) return result;
            if (kf == 1 && kwt == 2) key = t;
            else if (kf == 2 && kwt == 2) { value = t; has_value = 1; }
        }
        if (key.n != 12 || memcmp(key.p, "service.name", 12) != 0) continue;
        /* The value's kind decides: later entries with the same key replace earlier ones. */
        *found = 0;
        if (!has_value) continue;
        Reader vr = reader_of(value);
        int kind = 0; Slice str = {0};
        while (vr.p < vr.end) {
            if (read_field(&vr, &kf, &kwt, &kn, &t) < 0) return result;
            if (anyvalue_member(kf, kwt)) { kind = (int)kf; str = t; }
        }
        if (kind == 1) { result = str; *found = 1; }
    }
    return result;
}

typedef struct {
    Buf *out;
    Buf tmp;
    Buf keys;
    long rows;
} Ctx;

/* Event or link list entries -> JSON, appended to tmp. is_link selects the shape. */
static int json_events_or_links(Json *j, Slice span, uint32_t list_field, int is_link) {
    Reader r = reader_of(span);
    uint32_t f; int wt; uint64_t num; Slice s = {0};
    int first = 1;
    buf_putc(j->out, '[');
    while (r.p < r.end) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) return -1;
        if (f != list_field || wt != 2) continue;
        if (!first) buf_putc(j->out, ',');
        first = 0;
        Reader er = reader_of(s);
        uint64_t time = 0, dropped = 0, flags = 0;
        Slice name = {(const unsigned char *)"", 0}, tid = name, sid = name, state = name;
        int has_attrs = 0;
        uint32_t ef; int ewt; uint64_t en; Slice es;
        while (er.p < er.end) {
            if (read_field(&er, &ef, &ewt, &en, &es) < 0) return -1;
            if (!is_link) {
                if (ef == 1 && ewt == 1) time = en;
                else if (ef == 2 && ewt == 2) name = es;
                else if (ef == 3 && ewt == 2) has_attrs = 1;
                else if (ef == 4 && ewt == 0) dropped = en;
            } else {
                if (ef == 1 && ewt == 2) tid = es;
                else if (ef == 2 && ewt == 2) sid = es;
                else if (ef == 3 && ewt == 2) state = es;
                else if (ef == 4 && ewt == 2) has_attrs = 1;
                else if (ef == 5 && ewt == 0) dropped = (uint32_t)en;
                else if (ef == 6 && ewt == 5) flags = en;
            }
        }
        if (!is_link) {
            buf_puts(j->out, "{\"time_unix_nano\":");
            json_uint(j, time);
            buf_puts(j->out, ",\"name\":");
            json_string(j, name);
            if (has_attrs) { buf_puts(j->out, ",\"attributes\":"); json_attributes(j, s, 3, 1, 0); }
            if ((uint32_t)dropped) { buf_puts(j->out, ",\"dropped_attributes_count\":"); json_uint(j, (uint32_t)dropped); }
        } else {
            buf_puts(j->out, "{\"trace_id\":");
            json_hex(j, tid);
            buf_puts(j->out, ",\"span_id\":");
            json_hex(j, sid);
            if (state.n) { buf_puts(j->out, ",\"trace_state\":"); json_string(j, state); }
            if (has_attrs) { buf_puts(j->out, ",\"attributes\":"); json_attributes(j, s, 4, 1, 0); }
            if (dropped) { buf_puts(j->out, ",\"dropped_attributes_count\":"); json_uint(j, dropped); }
            if (flags) { buf_puts(j->out, ",\"flags\":"); json_uint(j, flags); }
        }
        buf_putc(j->out, '}');
    }
    buf_putc(j->out, ']');
    return 0;
}

/* ---------- roles: the rules table of roles.py, in the same order ---------- */

/* Role codes and key literals: generated from instrumentation/conventions.py (gen_conventions.py). */
#include "_conventions.h"

static int slice_is(Slice s, const char *lit) { size_t n = strlen(lit); return s.n == n && memcmp(s.p, lit, n) == 0; }

/* An AnyValue's string (kind 1) or bool (kind 2); kind 0 for anything else. */
static int anyvalue_scalar(Slice value, Slice *str, uint64_t *boolean) {
    Reader r = reader_of(value);
    uint32_t f; int wt; uint64_t num = 0; Slice s = {0};
    int kind = 0;
    while (r.p < r.end) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) return 0;
        if (f == 1 && wt == 2) { kind = 1; *str = s; }
        else if (f == 2 && wt == 0) { kind = 2; *boolean = num; }
        else if (anyvalue_member(f, wt)) kind = 0;
    }
    return kind;
}

static int classify(Slice span, uint64_t kind, Slice parent, uint64_t flags) {
    Reader r = reader_of(span);
    uint32_t f; int wt; uint64_t num = 0; Slice s = {0};
    Slice flow_role = {0}, oi_kind = {0}, genai_op = {0};
    int has_flow_role = 0, pending = 0, has_call_key = 0, has_oi = 0, has_genai = 0;
    while (r.p < r.end) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) return ROLE_NONE;
        if (f != 9 || wt != 2) continue;
        Reader kr = reader_of(s);
        Slice key = {0}, value = {0}, t; uint32_t kf; int kwt; uint64_t kn;
        while (kr.p < kr.end) {
            if (read_field(&kr, &kf, &kwt, &kn, &t) < 0) return ROLE_NONE;
            if (kf == 1 && kwt == 2) key = t;
            else if (kf == 2 && kwt == 2) value = t;
        }
        if (key.n < 9) continue;
        if (slice_is(key, TT_KEY_HTTP_REQUEST_METHOD) || slice_is(key, TT_KEY_HTTP_METHOD)
            || slice_is(key, TT_KEY_RPC_SYSTEM_NAME) || slice_is(key, TT_KEY_RPC_SYSTEM)
            || slice_is(key, TT_KEY_MESSAGING_SYSTEM)) { has_call_key = 1; continue; }
        Slice str = {0}; uint64_t boolean = 0;
        int vk = anyvalue_scalar(value, &str, &boolean);  /* a later entry for the same key replaces it */
        if (slice_is(key, TT_KEY_FLOW_ROLE)) { has_flow_role = vk == 1; flow_role = str; }
        else if (slice_is(key, TT_KEY_FLOW_PENDING)) pending = vk == 2 && boolean;
        else if (slice_is(key, TT_KEY_OPENINFERENCE_SPAN_KIND)) { has_oi = vk == 1; oi_kind = str; }
        else if (slice_is(key, TT_KEY_GEN_AI_OPERATION_NAME)) { has_genai = vk == 1; genai_op = str; }
    }
    int run = has_flow_role && slice_is(flow_role, TT_FLOW_ROLE_RUN);
    if (pending) return run ? ROLE_RUN_PENDING : ROLE_CALL_PENDING;
    if (has_flow_role) {
        if (run) return ROLE_RUN;
        if (slice_is(flow_role, TT_FLOW_ROLE_STEP)) return ROLE_STEP;
        if (slice_is(flow_role, TT_FLOW_ROLE_CALL)) return ROLE_CALL;
        if (slice_is(flow_role, TT_FLOW_ROLE_ACTION)) return ROLE_ACTION;
        if (slice_is(flow_role, TT_FLOW_ROLE_EVENT)) return ROLE_EVENT;
    }
    if ((kind == 3 || kind == 4) && has_call_key) return ROLE_CALL;
    int agent = (has_oi && (slice_is(oi_kind, TT_AGENT_KIND_AGENT) || slice_is(oi_kind, TT_AGENT_KIND_CHAIN)))
                || (has_genai && slice_is(genai_op, TT_AGENT_OPERATION_INVOKE_AGENT));
    if (agent) {
        int local_root = parent.n == 0 || (flags & 0x300) == 0x300;
        return local_root ? ROLE_RUN : ROLE_STEP;
    }
    return ROLE_NONE;
}

/* One span -> one COPY row. */
static int encode_span(Ctx *c, Slice span, Group *g, Slice scope_json, Text scope_name, Text scope_version,
                       uint64_t scope_dropped, Text scope_url) {
    Reader r = reader_of(span);
    uint32_t f; int wt; uint64_t num = 0; Slice s = {0};
    Slice empty = {(const unsigned char *)"", 0};
    Slice trace_id = empty, span_id = empty, parent = empty, state = empty, name = empty, status = empty;
    uint64_t flags = 0, kind = 0, start = 0, end = 0, dropped_attrs = 0, dropped_events = 0, dropped_links = 0;
    int has_events = 0, has_links = 0;
    while (r.p < r.end) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) return -1;
        switch (f) {
        case 1: if (wt == 2) trace_id = s; break;
        case 2: if (wt == 2) span_id = s; break;
        case 3: if (wt == 2) state = s; break;
        case 4: if (wt == 2) parent = s; break;
        case 5: if (wt == 2) name = s; break;
        case 6: if (wt == 0) kind = num; break;
        case 7: if (wt == 1) start = num; break;
        case 8: if (wt == 1) end = num; break;
        case 10: if (wt == 0) dropped_attrs = (uint32_t)num; break;
        case 11: if (wt == 2) has_events = 1; break;
        case 12: if (wt == 0) dropped_events = (uint32_t)num; break;
        case 13: if (wt == 2) has_links = 1; break;
        case 14: if (wt == 0) dropped_links = (uint32_t)num; break;
        case 15: if (wt == 2) status = s; break;
        case 16: if (wt == 5) flags = num; break;
        }
    }
    Slice status_message = empty;
    uint64_t status_code = 0;
    {
        Reader sr = reader_of(status);
        while (sr.p < sr.end) {
            if (read_field(&sr, &f, &wt, &num, &s) < 0) return -1;
            if (f == 2 && wt == 2) status_message = s;
            else if (f == 3 && wt == 0) status_code = num;
        }
    }
    /* Span JSON columns into tmp: attributes, then events, then links, remembering offsets. */
    Buf *tmp = &c->tmp;
    tmp->len = 0;
    Json j = {tmp, 0};
    json_attributes(&j, span, 9, 0, 0);
    size_t attrs_end = tmp->len;
    if (has_events) { if (json_events_or_links(&j, span, 11, 0) < 0) return -1; }
    else buf_puts(tmp, "[]");
    size_t events_end = tmp->len;
    if (has_links) { if (json_events_or_links(&j, span, 13, 1) < 0) return -1; }
    else buf_puts(tmp, "[]");
    if (j.bad) return -1;
    if (tmp->failed) { PyErr_NoMemory(); return -2; }

    Buf *b = c->out;
    unsigned char count[2] = {0, NCOLUMNS};  /* int16 field count */
    buf_put(b, count, 2);
    copy_bytes(b, trace_id);
    copy_bytes(b, span_id);
    if (parent.n) copy_bytes(b, parent); else copy_null(b);
    copy_text(b, text_of(state));
    copy_int8(b, (int64_t)flags);
    copy_text(b, text_of(name));
    copy_int4(b, (int32_t)kind);
    copy_int8(b, (int64_t)start);
    copy_int8(b, (int64_t)end);
    if (start > 0 && start <= INT64_MAX) copy_int8(b, (int64_t)(start / 1000) - PG_EPOCH_US); else copy_null(b);
    if (end > 0 && end <= INT64_MAX) copy_int8(b, (int64_t)(end / 1000) - PG_EPOCH_US); else copy_null(b);
    copy_int4(b, (int32_t)status_code);
    copy_text(b, text_of(status_message));
    Buf part;
    part = (Buf){tmp->data, attrs_end, attrs_end, 0};
    copy_jsonb(b, &part);
    copy_int8(b, (int64_t)dropped_attrs);
    part = (Buf){tmp->data + attrs_end, events_end - attrs_end, 0, 0};
    copy_jsonb(b, &part);
    copy_int8(b, (int64_t)dropped_events);
    part = (Buf){tmp->data + events_end, tmp->len - events_end, 0, 0};
    copy_jsonb(b, &part);
    copy_int8(b, (int64_t)dropped_links);
    if (g->service.s.n != SIZE_MAX) copy_text(b, g->service); else copy_null(b);
    part = g->json;
    copy_jsonb(b, &part);
    copy_int8(b, (int64_t)g->dropped);
    copy_text(b, g->schema_url);
    copy_text(b, scope_name);
    copy_text(b, scope_version);
    part = (Buf){(char *)scope_json.p, scope_json.n, 0, 0};
    copy_jsonb(b, &part);
    copy_int8(b, (int64_t)scope_dropped);
    copy_text(b, scope_url);
    if (b->failed) { PyErr_NoMemory(); return -2; }
    c->rows++;
    if (trace_id.n == 16 && span_id.n == 8) {
        buf_put(&c->keys, trace_id.p, 16);
        buf_put(&c->keys, span_id.p, 8);
        buf_putc(&c->keys, (char)classify(span, kind, parent, flags));
        if (c->keys.failed) { PyErr_NoMemory(); return -2; }
    }
    return 0;
}

static int encode_scope_spans(Ctx *c, Slice ss, Group *g) {
    Reader r = reader_of(ss);
    uint32_t f; int wt; uint64_t num; Slice s = {0};
    Slice empty = {(const unsigned char *)"", 0};
    Slice scope = empty, url = empty;
    while (r.p < r.end) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) return -1;
        if (f == 1 && wt == 2) scope = s;
        else if (f == 3 && wt == 2) url = s;
    }
    Slice name = empty, version = empty;
    uint64_t dropped = 0;
    Reader sr = reader_of(scope);
    while (sr.p < sr.end) {
        if (read_field(&sr, &f, &wt, &num, &s) < 0) return -1;
        if (f == 1 && wt == 2) name = s;
        else if (f == 2 && wt == 2) version = s;
        else if (f == 4 && wt == 0) dropped = (uint32_t)num;
    }
    Buf sj = {0};
    Json j = {&sj, 0};
    json_attributes(&j, scope, 3, 0, 0);
    if (j.bad) { PyMem_Free(sj.data); return -1; }
    if (sj.failed) { PyMem_Free(sj.data); PyErr_NoMemory(); return -2; }
    Text scope_name = text_of(name), scope_version = text_of(version), scope_url = text_of(url);
    Slice scope_json = {(const unsigned char *)sj.data, sj.len};
    int rc = 0;
    r = reader_of(ss);
    while (r.p < r.end && rc == 0) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) { rc = -1; break; }
        if (f == 2 && wt == 2) rc = encode_span(c, s, g, scope_json, scope_name, scope_version, dropped, scope_url);
    }
    PyMem_Free(sj.data);
    return rc;
}

static PyObject *encode(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Buf out = {0};
    Ctx c = {&out, {0}, {0}, 0};
    PyObject *result = NULL;
    int rc = 0;
    static const unsigned char header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0, 0, 0, 0, 0, 0, 0, 0, 0};
    buf_put(&out, header, sizeof header);
    Slice all = {(const unsigned char *)view.buf, (size_t)view.len};
    Reader r = reader_of(all);
    uint32_t f; int wt; uint64_t num; Slice s = {0};
    while (r.p < r.end && rc == 0) {
        if (read_field(&r, &f, &wt, &num, &s) < 0) { rc = -1; break; }
        if (f != 1 || wt != 2) continue;
        /* One ResourceSpans. */
        Slice empty = {(const unsigned char *)"", 0};
        Slice resource = empty, url = empty, t;
        Reader rr = reader_of(s);
        uint32_t rf; int rwt; uint64_t rn;
        while (rr.p < rr.end) {
            if (read_field(&rr, &rf, &rwt, &rn, &t) < 0) { rc = -1; break; }
            if (rf == 1 && rwt == 2) resource = t;
            else if (rf == 3 && rwt == 2) url = t;
        }
        if (rc) break;
        Group g = {{0}, text_of(url), 0, {{0}, 0}};
        Reader res = reader_of(resource);
        while (res.p < res.end) {
            if (read_field(&res, &rf, &rwt, &rn, &t) < 0) { rc = -1; break; }
            if (rf == 2 && rwt == 0) g.dropped = (uint32_t)rn;
        }
        if (rc) break;
        Json j = {&g.json, 0};
        json_attributes(&j, resource, 1, 0, 0);
        int found;
        Slice service = find_service_name(resource, &found);
        if (found) g.service = text_of(service);
        else g.service.s.n = SIZE_MAX;
        if (j.bad) rc = -1;
        else if (g.json.failed) { PyErr_NoMemory(); rc = -2; }
        Reader sr = reader_of(s);
        while (rc == 0 && sr.p < sr.end) {
            if (read_field(&sr, &rf, &rwt, &rn, &t) < 0) { rc = -1; break; }
            if (rf == 2 && rwt == 2) rc = encode_scope_spans(&c, t, &g);
        }
        PyMem_Free(g.json.data);
    }
    if (rc == 0) {
        unsigned char trailer[2] = {0xff, 0xff};
        buf_put(&out, trailer, 2);
        if (out.failed) { PyErr_NoMemory(); goto done; }
        result = Py_BuildValue("(y#ly#)", out.data, (Py_ssize_t)out.len, c.rows, c.keys.data ? c.keys.data : "",
                               (Py_ssize_t)c.keys.len);
    } else if (rc == -1) {
        PyErr_SetString(PyExc_ValueError, "malformed OTLP protobuf");
    }
done:
    PyMem_Free(out.data);
    PyMem_Free(c.tmp.data);
    PyMem_Free(c.keys.data);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_O,
     "encode(payload) -> (copy_data, rows, keys): ExportTraceServiceRequest bytes to a binary COPY stream."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastrows", "Compiled OTLP to COPY encoder.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fastrows(void) {
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "_fastrows reads protobuf fixed-width fields as little-endian");
        return NULL;
    }
    return PyModule_Create(&module);
}
