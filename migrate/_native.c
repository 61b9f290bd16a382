/* qldb_migrate._native: the work `migrate` and `check` add on top of verification, in C.
 *
 * Six functions, each with an exact pure-Python counterpart that stays the reference:
 *
 *   encode(value) -> bytes        binary Ion 1.0 of a value amazon-ion parsed (IVM, one local
 *                                 symbol table, the value).  Raises on anything it does not
 *                                 handle; the caller then uses amazon-ion's writers.
 *   hash_binary(data, identity=False) -> bytes
 *                                 Ion Hash (SHA-256) of the one value in binary Ion ``data``,
 *                                 computed from the bytes, with no Python objects in between.
 *                                 It accepts only the canonical subset of binary Ion whose hash
 *                                 it can state for certain (minimal integers and VarUInts, no
 *                                 NOP pads, symbol tables of plain strings, ...) and raises
 *                                 NonCanonical for everything else: the caller then parses with
 *                                 amazon-ion and hashes in Python.  ``identity`` returns the
 *                                 serialised bytes s(value) with identity field "hashes", as
 *                                 the Ion Hash test suite states its expectations.
 *   stream_record(data) -> tuple | None
 *                                 the identifying fields of one QLDB stream record (its type, stream
 *                                 ARN, block address, revision hash, document id and version, or its
 *                                 revision summaries), every byte of it checked as hash_binary checks
 *                                 them (without hashing) and no annotation anywhere; None for anything
 *                                 else (bytes outside the subset, a field missing, repeated or of
 *                                 another type): streams.py then parses the record with amazon-ion
 *                                 and judges it in Python, the reference.
 *   stream_details(data) -> (bytes, bytes) | None
 *                                 a REVISION_DETAILS record, read as stream_record reads it, as the
 *                                 second pass needs it: its symbol tables and payload.revision without
 *                                 `data` (binary Ion for amazon-ion to parse: the data, the bulk of a
 *                                 record, is never built as Python values), and the Ion hash of that
 *                                 `data` from its bytes (hash_binary's).  None for anything else.
 *   copy_tuple(kinds, row, fields) -> bytes
 *                                 one PostgreSQL binary COPY tuple (copybinary.row_encoder's).
 *   canonical_json(value, render) -> str
 *                                 the jsonb text of jsoncanon.canonical_json for structs, lists,
 *                                 strings, symbols, ints, bools and nulls; every other value
 *                                 (decimals, floats, timestamps, blobs, unusual field names) is
 *                                 handed to ``render``, the Python implementation.
 *
 * Why it is safe to trust: every byte ``encode`` writes is proven by ``hash_binary`` against the
 * hash the ledger commits to before it is stored, and ``hash_binary`` reads every byte of its
 * input (any byte it cannot account for is an error, never skipped).  An encoder fault therefore
 * shows as a hash mismatch (and the Python path decides), never as wrong bytes stored.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
/* The low-level SHA-256 calls: OpenSSL 3's one-shot SHA256() looks the algorithm up in its provider
 * table on every call (~3 us), which cost most of hash_binary's time on small values (an Ion hash is
 * one SHA-256 per struct field).  SHA256_Init/Update/Final are deprecated in 3.0 but still the same
 * implementation, without the lookup. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 200

/* ------------------------------------------------------------------------------------------ */
/* growable byte buffer */

typedef struct {
    unsigned char *p;
    Py_ssize_t len, cap;
} buf_t;

static inline void sha256_of(const unsigned char *data, size_t n, unsigned char *digest) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, n);
    SHA256_Final(digest, &ctx);
}

static int buf_reserve(buf_t *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *p = PyMem_Realloc(b->p, cap);
    if (!p) { PyErr_NoMemory(); return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* buf_put, buf_byte and ser_scalar write nothing to a NULL buffer: stream_record's walk checks without writing */
static inline int buf_put(buf_t *b, const void *data, Py_ssize_t n) {
    if (n == 0 || !b) return 0;
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static inline int buf_byte(buf_t *b, unsigned char c) {
    if (!b) return 0;
    if (b->len >= b->cap && buf_reserve(b, 1) < 0) return -1;
    b->p[b->len++] = c;
    return 0;
}

static void buf_free(buf_t *b) {
    PyMem_Free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Ion primitives */

static int varuint_size(uint64_t v) {
    int n = 1;
    while (v >>= 7) n++;
    return n;
}

static void varuint_write(unsigned char *out, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        out[i] = v & 0x7F;
        v >>= 7;
    }
    out[n - 1] |= 0x80;
}

static int buf_varuint(buf_t *b, uint64_t v) {
    int n = varuint_size(v);
    if (buf_reserve(b, n) < 0) return -1;
    varuint_write(b->p + b->len, v, n);
    b->len += n;
    return 0;
}

/* VarInt: sign in bit 0x40 of the first byte, end flag 0x80 on the last; minimal. */
static int buf_varint(buf_t *b, int64_t v) {
    uint64_t mag = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    unsigned char tmp[12];
    int n = 0;
    tmp[n++] = mag & 0x7F;
    mag >>= 7;
    while (mag) {
        tmp[n++] = mag & 0x7F;
        mag >>= 7;
    }
    if (tmp[n - 1] & 0x40) tmp[n++] = 0;
    if (v < 0) tmp[n - 1] |= 0x40;
    tmp[0] |= 0x80;
    if (buf_reserve(b, n) < 0) return -1;
    for (int i = 0; i < n; i++) b->p[b->len + i] = tmp[n - 1 - i];
    b->len += n;
    return 0;
}

/* Close a container or wrapper whose one-byte header slot is at ``start``. */
static int close_header(buf_t *b, Py_ssize_t start, unsigned char type) {
    uint64_t body = (uint64_t)(b->len - start - 1);
    if (body < 14) {
        b->p[start] = (unsigned char)(type << 4 | body);
        return 0;
    }
    int n = varuint_size(body);
    if (buf_reserve(b, n) < 0) return -1;
    memmove(b->p + start + 1 + n, b->p + start + 1, (size_t)body);
    b->p[start] = (unsigned char)(type << 4 | 14);
    varuint_write(b->p + start + 1, body, n);
    b->len += n;
    return 0;
}

static int put_header(buf_t *b, unsigned char type, uint64_t length) {
    if (length < 14) return buf_byte(b, (unsigned char)(type << 4 | length));
    if (buf_byte(b, (unsigned char)(type << 4 | 14)) < 0) return -1;
    return buf_varuint(b, length);
}

/* The low ``n`` bytes of ``v``, big-endian. */
static int put_be(buf_t *b, uint64_t v, int n) {
    if (buf_reserve(b, n) < 0) return -1;
    for (int i = n - 1; i >= 0; i--) {
        b->p[b->len + i] = v & 0xFF;
        v >>= 8;
    }
    b->len += n;
    return 0;
}

/* A value whose representation is an unsigned magnitude in as few bytes as it needs (int, symbol id). */
static int put_typed_uint(buf_t *b, unsigned char type, uint64_t v) {
    int n = 0;
    for (uint64_t t = v; t; t >>= 8) n++;
    return put_header(b, type, n) < 0 ? -1 : put_be(b, v, n);
}

/* ------------------------------------------------------------------------------------------ */
/* module state: amazon-ion's classes, given by setup() */

static PyObject *T_IonPyDict, *T_IonPyList, *T_IonPyText, *T_IonPySymbol, *T_IonPyInt, *T_IonPyBool,
    *T_IonPyFloat, *T_IonPyDecimal, *T_IonPyTimestamp, *T_IonPyBytes, *T_IonPyNull, *T_SymbolToken,
    *T_Timestamp, *T_Decimal, *ION_SYMBOL, *ION_SEXP, *ION_CLOB, *NULL_CODES /* dict IonType -> int */;
static PyObject *NonCanonical;
static PyObject *S_store, *S_annotations, *S_ion_type, *S_as_tuple, *S_precision, *S_fractional_seconds,
    *S_fractional_precision, *S_utcoffset;

#define IS(obj, t) ((PyObject *)Py_TYPE(obj) == (t))

/* ------------------------------------------------------------------------------------------ */
/* encode */

typedef struct {
    buf_t out;
    PyObject *sids; /* dict: text -> sid */
    PyObject *texts; /* list of texts in sid order from 10 */
} enc_t;

static int enc_sid(enc_t *e, PyObject *text, uint64_t *sid) {
    PyObject *found = PyDict_GetItemWithError(e->sids, text);
    if (found) {
        *sid = PyLong_AsUnsignedLongLong(found);
        return 0;
    }
    if (PyErr_Occurred()) return -1;
    Py_ssize_t n = PyList_GET_SIZE(e->texts);
    PyObject *num = PyLong_FromSsize_t(10 + n);
    if (!num) return -1;
    int rc = PyDict_SetItem(e->sids, text, num);
    Py_DECREF(num);
    if (rc < 0 || PyList_Append(e->texts, text) < 0) return -1;
    *sid = 10 + (uint64_t)n;
    return 0;
}

/* A field name, annotation or symbol value: str, or a SymbolToken (text, sid, location). */
static int enc_symbol_ref(enc_t *e, PyObject *token, uint64_t *sid) {
    if (token == Py_None) { /* amazon-ion's field name of unknown text, $0 */
        *sid = 0;
        return 0;
    }
    if (PyUnicode_CheckExact(token) || IS(token, T_IonPyText)) return enc_sid(e, token, sid);
    if (IS(token, T_SymbolToken) || IS(token, T_IonPySymbol)) {
        PyObject *text = PyTuple_GET_ITEM(token, 0);
        if (text == Py_None) {
            PyObject *num = PyTuple_GET_ITEM(token, 1);
            if (PyLong_Check(num) && PyLong_AsLong(num) == 0) {
                *sid = 0;
                return 0;
            }
            PyErr_SetString(PyExc_ValueError, "symbol of unknown text");
            return -1;
        }
        if (!PyUnicode_Check(text)) {
            PyErr_SetString(PyExc_TypeError, "symbol text is not str");
            return -1;
        }
        return enc_sid(e, text, sid);
    }
    PyErr_Format(PyExc_TypeError, "cannot encode a symbol of type %s", Py_TYPE(token)->tp_name);
    return -1;
}

static int enc_value(enc_t *e, PyObject *v, int depth);

static int enc_uint_bytes(buf_t *b, unsigned char type, PyObject *magnitude) {
    /* magnitude: a non-negative int */
    int overflow = 0;
    unsigned long long m = PyLong_AsUnsignedLongLong(magnitude);
    if (m == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        overflow = 1;
    }
    if (!overflow) return put_typed_uint(b, type, m);
    size_t bits = _PyLong_NumBits(magnitude);
    if (bits == (size_t)-1) return -1;
    Py_ssize_t n = (Py_ssize_t)((bits + 7) / 8);
    if (put_header(b, type, n) < 0 || buf_reserve(b, n) < 0) return -1;
    if (_PyLong_AsByteArray((PyLongObject *)magnitude, b->p + b->len, n, 0, 0) < 0) return -1;
    b->len += n;
    return 0;
}

static int enc_int(buf_t *b, PyObject *v) {
    int negative = _PyLong_Sign(v) < 0;
    if (!negative) return enc_uint_bytes(b, 0x2, v);
    PyObject *mag = PyNumber_Negative(v);
    if (!mag) return -1;
    int rc = enc_uint_bytes(b, 0x3, mag);
    Py_DECREF(mag);
    return rc;
}

static int enc_float(buf_t *b, double d) {
    uint64_t bits;
    if (d != d) {
        bits = 0x7ff8000000000000ULL;
    } else {
        memcpy(&bits, &d, 8);
        if (bits == 0) return buf_byte(b, 0x40);
    }
    if (buf_byte(b, 0x48) < 0) return -1;
    return put_be(b, bits, 8);
}

/* Decimal -> (sign, coefficient, exponent).  The coefficient is in *coefficient when it has at most
 * 18 digits, else a new int in *big (which the caller releases). */
static int decimal_parts(PyObject *v, int *sign, uint64_t *coefficient, int64_t *exponent, PyObject **big) {
    PyObject *t = PyObject_CallMethodNoArgs(v, S_as_tuple);
    if (!t) return -1;
    int rc = -1;
    PyObject *s = PyTuple_GET_ITEM(t, 0), *digits = PyTuple_GET_ITEM(t, 1), *exp = PyTuple_GET_ITEM(t, 2);
    char *text = NULL;
    if (!PyLong_Check(exp)) {
        PyErr_SetString(PyExc_ValueError, "decimal is not finite");
        goto done;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(exp, &overflow);
    if (overflow || x > ((long long)1 << 60) || x < -((long long)1 << 60)) {
        PyErr_SetString(PyExc_ValueError, "decimal exponent out of range");
        goto done;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(digits);
    uint64_t c = 0;
    if (big) *big = NULL;
    if (n > 18) {
        if (!big) {
            PyErr_SetString(PyExc_ValueError, "decimal coefficient beyond 18 digits");
            goto done;
        }
        text = PyMem_Malloc(n + 1);
        if (!text) { PyErr_NoMemory(); goto done; }
        for (Py_ssize_t i = 0; i < n; i++) text[i] = (char)('0' + PyLong_AsLong(PyTuple_GET_ITEM(digits, i)));
        text[n] = 0;
        *big = PyLong_FromString(text, NULL, 10);
        if (!*big) goto done;
    } else {
        for (Py_ssize_t i = 0; i < n; i++) c = c * 10 + (uint64_t)PyLong_AsLong(PyTuple_GET_ITEM(digits, i));
    }
    *sign = PyObject_IsTrue(s);
    *coefficient = c;
    *exponent = x;
    rc = 0;
done:
    PyMem_Free(text);
    Py_DECREF(t);
    return rc;
}

static int put_signed_magnitude(buf_t *b, int negative, uint64_t magnitude) {
    /* Ion Int: sign in the high bit of the first byte; as many bytes as bit_length // 8 + 1 */
    int bits = 0;
    uint64_t t = magnitude;
    while (t) { bits++; t >>= 1; }
    Py_ssize_t at = b->len;
    if (put_be(b, magnitude, bits / 8 + 1) < 0) return -1;
    if (negative) b->p[at] |= 0x80;
    return 0;
}

static int enc_decimal(buf_t *b, PyObject *v) {
    int sign;
    uint64_t c;
    int64_t exp;
    PyObject *big;
    if (decimal_parts(v, &sign, &c, &exp, &big) < 0) return -1;
    if (!big && c == 0 && exp == 0 && !sign) return buf_byte(b, 0x50);
    Py_ssize_t start = b->len;
    if (buf_byte(b, 0) < 0 || buf_varint(b, exp) < 0) goto fail;
    if (big) {
        /* bit_length // 8 + 1 bytes, sign in the high bit of the first */
        size_t bits = _PyLong_NumBits(big);
        Py_ssize_t n = (Py_ssize_t)(bits / 8 + 1);
        if (bits == (size_t)-1 || buf_reserve(b, n) < 0) goto fail;
        if (_PyLong_AsByteArray((PyLongObject *)big, b->p + b->len, n, 0, 0) < 0) goto fail;
        if (sign) b->p[b->len] |= 0x80;
        b->len += n;
        Py_DECREF(big);
    } else if ((c || sign) && put_signed_magnitude(b, sign, c) < 0) {
        return -1;
    }
    return close_header(b, start, 0x5);
fail:
    Py_XDECREF(big);
    return -1;
}

static int days_in_month(int y, int m) {
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dim[m - 1];
}

static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* The representation bytes of a timestamp, exactly as ionhash._timestamp_uncached makes them. */
static int enc_timestamp(buf_t *b, PyObject *v) {
    int precision = 4; /* SECOND, for a bare datetime */
    PyObject *p = NULL;
    if (!PyDateTime_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "not a datetime");
        return -1;
    }
    if (!IS(v, (PyObject *)PyDateTimeAPI->DateTimeType)) {
        p = PyObject_GetAttr(v, S_precision);
        if (!p) return -1;
        if (p != Py_None) {
            precision = (int)PyLong_AsLong(p);
            if (precision == -1 && PyErr_Occurred()) { Py_DECREF(p); return -1; }
        }
        Py_DECREF(p);
    }
    if (precision < 0 || precision > 4) {
        PyErr_SetString(PyExc_ValueError, "unknown timestamp precision");
        return -1;
    }
    int64_t year = PyDateTime_GET_YEAR(v);
    int month = PyDateTime_GET_MONTH(v), day = PyDateTime_GET_DAY(v);
    int hour = PyDateTime_DATE_GET_HOUR(v), minute = PyDateTime_DATE_GET_MINUTE(v);
    int second = PyDateTime_DATE_GET_SECOND(v), micro = PyDateTime_DATE_GET_MICROSECOND(v);
    int known_offset = 0;
    int64_t offset = 0;
    if (precision >= 3) {
        PyObject *delta = PyObject_CallMethodNoArgs(v, S_utcoffset);
        if (!delta) return -1;
        if (delta != Py_None) {
            if (!PyDelta_Check(delta)) { Py_DECREF(delta); PyErr_SetString(PyExc_TypeError, "utcoffset"); return -1; }
            int64_t secs = (int64_t)PyDateTime_DELTA_GET_DAYS(delta) * 86400 + PyDateTime_DELTA_GET_SECONDS(delta);
            int us = PyDateTime_DELTA_GET_MICROSECONDS(delta);
            Py_DECREF(delta);
            if (us || secs % 60) {
                PyErr_SetString(PyExc_ValueError, "offset is not whole minutes");
                return -1;
            }
            known_offset = 1;
            offset = secs / 60;
            int64_t total = days_from_civil(year, month, day) * 1440 + hour * 60 + minute - offset;
            int64_t days = total >= 0 ? total / 1440 : -((-total + 1439) / 1440);
            int64_t mins = total - days * 1440;
            civil_from_days(days, &year, &month, &day);
            hour = (int)(mins / 60);
            minute = (int)(mins % 60);
            if (year < 1 || year > 9999) {
                PyErr_SetString(PyExc_ValueError, "timestamp outside years 1-9999 in UTC");
                return -1;
            }
        } else {
            Py_DECREF(delta);
        }
    }
    Py_ssize_t start = b->len;
    if (buf_byte(b, 0) < 0) return -1;
    if (known_offset) {
        if (buf_varint(b, offset) < 0) return -1;
    } else if (buf_byte(b, 0xC0) < 0) {
        return -1;
    }
    if (buf_varuint(b, (uint64_t)year) < 0) return -1;
    if (precision >= 1 && buf_varuint(b, month) < 0) return -1;
    if (precision >= 2 && buf_varuint(b, day) < 0) return -1;
    if (precision >= 3 && (buf_varuint(b, hour) < 0 || buf_varuint(b, minute) < 0)) return -1;
    if (precision >= 4) {
        if (buf_varuint(b, second) < 0) return -1;
        /* the fraction: fractional_seconds if present, else fractional_precision digits of microsecond */
        int has = 0;
        int64_t fexp = 0;
        uint64_t fcoef = 0;
        PyObject *fs = PyObject_GetAttr(v, S_fractional_seconds);
        if (!fs) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
            PyErr_Clear();
            fs = Py_NewRef(Py_None);
        }
        if (fs != Py_None) {
            int sign;
            int rc = decimal_parts(fs, &sign, &fcoef, &fexp, NULL); /* 18 digits at most, else the fallback */
            Py_DECREF(fs);
            if (rc < 0) return -1;
            if (sign && fcoef) {
                PyErr_SetString(PyExc_ValueError, "negative fractional seconds");
                return -1;
            }
            has = !(fexp >= 0 && fcoef == 0);
        } else {
            Py_DECREF(fs);
            PyObject *fp = PyObject_GetAttr(v, S_fractional_precision);
            long prec = 0;
            if (!fp) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
                PyErr_Clear();
            } else {
                if (fp != Py_None) prec = PyLong_AsLong(fp);
                Py_DECREF(fp);
                if (prec == -1 && PyErr_Occurred()) return -1;
            }
            if (prec > 6) {
                PyErr_SetString(PyExc_ValueError, "fractional precision beyond microseconds");
                return -1;
            }
            if (prec > 0) {
                has = 1;
                fexp = -prec;
                uint64_t div = 1;
                for (long i = prec; i < 6; i++) div *= 10;
                fcoef = (uint64_t)micro / div;
            }
        }
        if (has) {
            if (buf_varint(b, fexp) < 0) return -1;
            if (fcoef && put_signed_magnitude(b, 0, fcoef) < 0) return -1;
        }
    }
    return close_header(b, start, 0x6);
}

static int enc_text_value(buf_t *b, unsigned char type, PyObject *text) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (!s) return -1;
    if (put_header(b, type, (uint64_t)n) < 0) return -1;
    return buf_put(b, s, n);
}

static int enc_bytes(buf_t *b, unsigned char type, PyObject *v) {
    char *s;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(v, &s, &n) < 0) return -1;
    if (put_header(b, type, (uint64_t)n) < 0) return -1;
    return buf_put(b, s, n);
}

static int enc_sequence(enc_t *e, PyObject *seq, unsigned char type, int depth) {
    PyObject *fast = PySequence_Fast(seq, "not a sequence");
    if (!fast) return -1;
    Py_ssize_t start = e->out.len;
    if (buf_byte(&e->out, 0) < 0) goto fail;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < n; i++)
        if (enc_value(e, PySequence_Fast_GET_ITEM(fast, i), depth + 1) < 0) goto fail;
    Py_DECREF(fast);
    return close_header(&e->out, start, type);
fail:
    Py_DECREF(fast);
    return -1;
}

static int enc_field(enc_t *e, PyObject *name, PyObject *value, int depth) {
    uint64_t sid;
    if (enc_symbol_ref(e, name, &sid) < 0 || buf_varuint(&e->out, sid) < 0) return -1;
    return enc_value(e, value, depth + 1);
}

static int enc_struct(enc_t *e, PyObject *v, int depth) {
    Py_ssize_t start = e->out.len;
    if (buf_byte(&e->out, 0) < 0) return -1;
    if (PyDict_CheckExact(v)) {
        PyObject *k, *val;
        Py_ssize_t pos = 0;
        while (PyDict_Next(v, &pos, &k, &val))
            if (enc_field(e, k, val, depth) < 0) return -1;
    } else {
        PyObject *store = PyObject_GetAttr(v, S_store);
        if (!store) return -1;
        if (!PyDict_CheckExact(store)) {
            Py_DECREF(store);
            PyErr_SetString(PyExc_TypeError, "IonPyDict store is not a dict");
            return -1;
        }
        PyObject *k, *vals;
        Py_ssize_t pos = 0;
        while (PyDict_Next(store, &pos, &k, &vals)) {
            if (!PyList_CheckExact(vals)) {
                Py_DECREF(store);
                PyErr_SetString(PyExc_TypeError, "IonPyDict store value is not a list");
                return -1;
            }
            for (Py_ssize_t i = 0; i < PyList_GET_SIZE(vals); i++)
                if (enc_field(e, k, PyList_GET_ITEM(vals, i), depth) < 0) { Py_DECREF(store); return -1; }
        }
        Py_DECREF(store);
    }
    if (e->out.len - start - 1 == 1) {
        PyErr_SetString(PyExc_ValueError, "struct of one byte");
        return -1;
    }
    return close_header(&e->out, start, 0xD);
}

static int enc_unannotated(enc_t *e, PyObject *v, int depth) {
    buf_t *b = &e->out;
    if (v == Py_None) return buf_byte(b, 0x0F);
    if (PyUnicode_CheckExact(v)) return enc_text_value(b, 0x8, v);
    if (PyLong_CheckExact(v) || IS(v, T_IonPyInt)) return enc_int(b, v);
    if (IS(v, T_IonPyDict) || PyDict_CheckExact(v)) return enc_struct(e, v, depth);
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) return enc_sequence(e, v, 0xB, depth);
    if (IS(v, T_IonPyList)) {
        PyObject *t = PyObject_GetAttr(v, S_ion_type);
        if (!t) return -1;
        Py_DECREF(t);
        return enc_sequence(e, v, t == ION_SEXP ? 0xC : 0xB, depth);
    }
    if (IS(v, T_IonPyText)) {
        PyObject *t = PyObject_GetAttr(v, S_ion_type);
        if (!t) return -1;
        Py_DECREF(t);
        if (t == ION_SYMBOL) {
            uint64_t sid;
            if (enc_sid(e, v, &sid) < 0) return -1;
            return put_typed_uint(b, 0x7, sid);
        }
        return enc_text_value(b, 0x8, v);
    }
    if (IS(v, T_Decimal) || IS(v, T_IonPyDecimal)) return enc_decimal(b, v);
    if (PyBool_Check(v)) return buf_byte(b, v == Py_True ? 0x11 : 0x10);
    if (IS(v, T_IonPyBool)) {
        int t = PyObject_IsTrue(v);
        if (t < 0) return -1;
        return buf_byte(b, t ? 0x11 : 0x10);
    }
    if (PyFloat_CheckExact(v) || IS(v, T_IonPyFloat)) return enc_float(b, PyFloat_AS_DOUBLE(v));
    if (IS(v, T_IonPyTimestamp) || IS(v, T_Timestamp) || IS(v, (PyObject *)PyDateTimeAPI->DateTimeType))
        return enc_timestamp(b, v);
    if (IS(v, T_SymbolToken) || IS(v, T_IonPySymbol)) {
        uint64_t sid;
        if (enc_symbol_ref(e, v, &sid) < 0) return -1;
        return put_typed_uint(b, 0x7, sid);
    }
    if (PyBytes_CheckExact(v)) return enc_bytes(b, 0xA, v);
    if (IS(v, T_IonPyBytes)) {
        PyObject *t = PyObject_GetAttr(v, S_ion_type);
        if (!t) return -1;
        Py_DECREF(t);
        return enc_bytes(b, t == ION_CLOB ? 0x9 : 0xA, v);
    }
    if (IS(v, T_IonPyNull)) {
        PyObject *t = PyObject_GetAttr(v, S_ion_type);
        if (!t) return -1;
        PyObject *code = PyDict_GetItemWithError(NULL_CODES, t);
        Py_DECREF(t);
        if (!code) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "unknown null type");
            return -1;
        }
        return buf_byte(b, (unsigned char)(PyLong_AsLong(code) << 4 | 0x0F));
    }
    PyErr_Format(PyExc_TypeError, "cannot encode a value of type %s", Py_TYPE(v)->tp_name);
    return -1;
}

static int is_ionpy(PyObject *v) {
    PyObject *t = (PyObject *)Py_TYPE(v);
    return t == T_IonPyDict || t == T_IonPyList || t == T_IonPyText || t == T_IonPySymbol || t == T_IonPyInt ||
           t == T_IonPyBool || t == T_IonPyFloat || t == T_IonPyDecimal || t == T_IonPyTimestamp ||
           t == T_IonPyBytes || t == T_IonPyNull;
}

static int enc_value(enc_t *e, PyObject *v, int depth) {
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "value nested too deeply");
        return -1;
    }
    PyObject *ann = NULL;
    if (is_ionpy(v)) {
        ann = PyObject_GetAttr(v, S_annotations);
        if (!ann) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
            PyErr_Clear();
        } else if (PyObject_Not(ann)) {
            Py_CLEAR(ann);
        }
    }
    if (!ann) return enc_unannotated(e, v, depth);
    PyObject *fast = PySequence_Fast(ann, "annotations are not a sequence");
    Py_DECREF(ann);
    if (!fast) return -1;
    buf_t sids = {0};
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t sid;
        if (enc_symbol_ref(e, PySequence_Fast_GET_ITEM(fast, i), &sid) < 0 || buf_varuint(&sids, sid) < 0) {
            Py_DECREF(fast);
            buf_free(&sids);
            return -1;
        }
    }
    Py_DECREF(fast);
    Py_ssize_t start = e->out.len;
    int rc = buf_byte(&e->out, 0);
    if (rc == 0) rc = buf_varuint(&e->out, (uint64_t)sids.len);
    if (rc == 0) rc = buf_put(&e->out, sids.p, sids.len);
    buf_free(&sids);
    if (rc == 0) rc = enc_unannotated(e, v, depth);
    if (rc == 0) rc = close_header(&e->out, start, 0xE);
    return rc;
}

static PyObject *py_encode(PyObject *self, PyObject *value) {
    if (!T_IonPyDict) {
        PyErr_SetString(PyExc_RuntimeError, "_native.setup() was not called");
        return NULL;
    }
    enc_t e = {{0}, PyDict_New(), PyList_New(0)};
    buf_t head = {0};
    PyObject *result = NULL;
    if (!e.sids || !e.texts) goto done;
    if (enc_value(&e, value, 0) < 0) goto done;
    if (buf_put(&head, "\xE0\x01\x00\xEA", 4) < 0) goto done;
    Py_ssize_t n = PyList_GET_SIZE(e.texts);
    if (n) {
        /* $ion_symbol_table::{symbols:[...]} */
        Py_ssize_t ann = head.len;
        if (buf_byte(&head, 0) < 0 || buf_put(&head, "\x81\x83", 2) < 0) goto done;
        Py_ssize_t st = head.len;
        if (buf_byte(&head, 0) < 0 || buf_byte(&head, 0x87) < 0) goto done;
        Py_ssize_t list = head.len;
        if (buf_byte(&head, 0) < 0) goto done;
        for (Py_ssize_t i = 0; i < n; i++)
            if (enc_text_value(&head, 0x8, PyList_GET_ITEM(e.texts, i)) < 0) goto done;
        if (close_header(&head, list, 0xB) < 0 || close_header(&head, st, 0xD) < 0 ||
            close_header(&head, ann, 0xE) < 0)
            goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, head.len + e.out.len);
    if (result) {
        memcpy(PyBytes_AS_STRING(result), head.p, head.len);
        memcpy(PyBytes_AS_STRING(result) + head.len, e.out.p, e.out.len);
    }
done:
    buf_free(&e.out);
    buf_free(&head);
    Py_XDECREF(e.sids);
    Py_XDECREF(e.texts);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* hash_binary */

typedef struct {
    const unsigned char *p;
    Py_ssize_t len;
} text_t; /* p == NULL: unknown text */

typedef struct {
    const unsigned char *base;
    text_t *symbols;
    Py_ssize_t nsymbols, cap;
    int identity;
    int validate; /* stream_record: walk and check every byte, hash nothing, accept no annotations */
} hctx_t;

static const char *SYSTEM_SYMBOLS[] = {NULL, "$ion", "$ion_1_0", "$ion_symbol_table", "name", "version",
                                        "imports", "symbols", "max_id", "$ion_shared_symbol_table"};

static int nc(hctx_t *c, const unsigned char *at, const char *why) {
    PyErr_Format(NonCanonical, "%s (byte %zd)", why, (Py_ssize_t)(at - c->base));
    return -1;
}

static int read_varuint(hctx_t *c, const unsigned char **p, const unsigned char *end, uint64_t *out) {
    uint64_t v = 0;
    const unsigned char *q = *p;
    for (int i = 0; i < 9; i++) {
        if (q >= end) return nc(c, q, "VarUInt runs past its container");
        unsigned char x = *q++;
        v = (v << 7) | (x & 0x7F);
        if (x & 0x80) {
            *p = q;
            *out = v;
            return 0;
        }
    }
    return nc(c, q, "VarUInt too long");
}

static int read_varint(hctx_t *c, const unsigned char **p, const unsigned char *end, int64_t *out, int *negzero) {
    const unsigned char *q = *p;
    if (q >= end) return nc(c, q, "VarInt runs past its container");
    unsigned char x = *q++;
    int negative = x & 0x40;
    uint64_t v = x & 0x3F;
    int i = 0;
    while (!(x & 0x80)) {
        if (q >= end) return nc(c, q, "VarInt runs past its container");
        if (++i > 8) return nc(c, q, "VarInt too long");
        x = *q++;
        v = (v << 7) | (x & 0x7F);
    }
    if (v > ((uint64_t)1 << 60)) return nc(c, q, "VarInt out of range");
    *p = q;
    *out = negative ? -(int64_t)v : (int64_t)v;
    if (negzero) *negzero = negative && v == 0;
    return 0;
}

/* A timestamp's or a decimal's VarUInt/VarInt in its shortest form.  A zero-padded one is valid Ion, but
 * amazon-ion's C reader misreads it (a timestamp whose hour is written 0x00 0x8A reads as another time), and
 * check would then compare a stored column with that misreading: such bytes are not in the subset, the exact
 * reader decides. */
static int read_varuint_min(hctx_t *c, const unsigned char **p, const unsigned char *end, uint64_t *out) {
    if (*p < end && **p == 0x00) return nc(c, *p, "zero-padded VarUInt");
    return read_varuint(c, p, end, out);
}

static int read_varint_min(hctx_t *c, const unsigned char **p, const unsigned char *end, int64_t *out, int *negzero) {
    const unsigned char *start = *p;
    if (read_varint(c, p, end, out, negzero) < 0) return -1;
    /* padded: the magnitude would fit in one byte less (the first byte's 6 bits and the next byte's top bit free) */
    if (*p - start > 1 && (start[0] & 0x3F) == 0 && (start[1] & 0x40) == 0) return nc(c, start, "zero-padded VarInt");
    return 0;
}

static int utf8_valid(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        int len;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return 0;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

/* 0x0B TQ escape(rep) 0x0E */
static int ser_scalar(buf_t *out, unsigned char tq, const unsigned char *rep, Py_ssize_t n) {
    if (!out) return 0;
    if (buf_reserve(out, 2 * n + 3) < 0) return -1;
    unsigned char *w = out->p + out->len;
    *w++ = 0x0B;
    *w++ = tq;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char x = rep[i];
        if (x == 0x0B || x == 0x0C || x == 0x0E) *w++ = 0x0C;
        *w++ = x;
    }
    *w++ = 0x0E;
    out->len = w - out->p;
    return 0;
}

static int ser_symbol(hctx_t *c, buf_t *out, uint64_t sid, const unsigned char *at) {
    if (sid == 0) return buf_put(out, "\x0B\x71\x0E", 3);
    if (sid >= (uint64_t)c->nsymbols || c->symbols[sid].p == NULL) return nc(c, at, "symbol of unknown text");
    return ser_scalar(out, 0x70, c->symbols[sid].p, c->symbols[sid].len);
}

/* Header of the value at *p: type, and the [start, end) of its representation. */
static int read_header(hctx_t *c, const unsigned char **p, const unsigned char *end, int *type, int *low,
                       const unsigned char **rep, const unsigned char **rep_end) {
    const unsigned char *q = *p;
    if (q >= end) return nc(c, q, "value expected");
    unsigned char td = *q++;
    int t = td >> 4, l = td & 0x0F;
    uint64_t length;
    if (t == 0x0 && l != 0x0F) return nc(c, q - 1, "NOP pad");
    if (t == 0xF) return nc(c, q - 1, "reserved type code");
    if (l == 0x0F) {
        if (t == 0xE) return nc(c, q - 1, "invalid type descriptor");
        length = 0; /* null.<type> */
    } else if (t == 0x1) {
        length = 0; /* bool */
    } else if (t == 0xD && l == 1) {
        return nc(c, q - 1, "sorted-struct form");
    } else if (l == 14) {
        if (read_varuint(c, &q, end, &length) < 0) return -1;
    } else {
        length = l;
    }
    if (length > (uint64_t)(end - q)) return nc(c, q, "value runs past its container");
    *type = t;
    *low = l;
    *rep = q;
    *rep_end = q + length;
    *p = q + length;
    return 0;
}

static int ser_value(hctx_t *c, buf_t *out, const unsigned char **p, const unsigned char *end, int depth,
                     int annotated_ok);

static int cmp_digest(const void *a, const void *b) { return memcmp(a, b, 32); }

typedef struct {
    const unsigned char *p;
    Py_ssize_t len;
} span_t;

static int cmp_span(const void *a, const void *b) {
    const span_t *x = a, *y = b;
    Py_ssize_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->p, y->p, (size_t)n);
    if (r) return r;
    return (x->len > y->len) - (x->len < y->len);
}

static int ser_struct(hctx_t *c, buf_t *out, const unsigned char *q, const unsigned char *end, int depth) {
    buf_t field = {0}, hashes = {0};
    buf_t ident = {0}; /* identity mode: the serialisations, back to back */
    span_t *spans = NULL;
    Py_ssize_t nfields = 0, cap = 0;
    int rc = -1;
    while (q < end) {
        uint64_t sid;
        const unsigned char *at = q;
        if (read_varuint(c, &q, end, &sid) < 0) goto done;
        field.len = 0;
        buf_t *f = c->validate ? NULL : &field;
        if (ser_symbol(c, f, sid, at) < 0) goto done;
        if (ser_value(c, f, &q, end, depth + 1, 1) < 0) goto done;
        if (c->validate) {
            /* checked, not hashed */
        } else if (c->identity) {
            if (nfields == cap) {
                cap = cap ? cap * 2 : 16;
                span_t *s = PyMem_Realloc(spans, cap * sizeof(span_t));
                if (!s) { PyErr_NoMemory(); goto done; }
                spans = s;
            }
            spans[nfields].p = (const unsigned char *)(intptr_t)ident.len; /* offset, fixed up below */
            spans[nfields].len = field.len;
            if (buf_put(&ident, field.p, field.len) < 0) goto done;
        } else {
            if (buf_reserve(&hashes, 32) < 0) goto done;
            sha256_of(field.p, (size_t)field.len, hashes.p + hashes.len);
            hashes.len += 32;
        }
        nfields++;
    }
    if (c->validate) {
        hashes.len = 0;
    } else if (c->identity) {
        for (Py_ssize_t i = 0; i < nfields; i++) spans[i].p = ident.p + (intptr_t)spans[i].p;
        if (nfields > 1) qsort(spans, (size_t)nfields, sizeof(span_t), cmp_span);
        hashes.len = 0;
        for (Py_ssize_t i = 0; i < nfields; i++)
            if (buf_put(&hashes, spans[i].p, spans[i].len) < 0) goto done;
    } else {
        if (nfields > 1) qsort(hashes.p, (size_t)nfields, 32, cmp_digest);
    }
    rc = ser_scalar(out, 0xD0, hashes.p, hashes.len);
done:
    buf_free(&field);
    buf_free(&hashes);
    buf_free(&ident);
    PyMem_Free(spans);
    return rc;
}

/* uint from big-endian bytes, at most 8 of them */
static int small_uint(const unsigned char *p, Py_ssize_t n, uint64_t *out) {
    if (n > 8) return -1;
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) v = (v << 8) | p[i];
    *out = v;
    return 0;
}

/* A timestamp's offset and its fields up to the seconds, in the subset both C readers accept: the hash
 * (ser_timestamp) and the JSON rendering (bj_timestamp) must refuse the same timestamps for the same reasons.
 * The fraction, where one follows, is left at *p for each of them. */
typedef struct {
    int64_t offset;
    int negzero; /* -00:00: the offset is unknown */
    uint64_t f[6]; /* year, month, day, hour, minute, second */
    int nf;
} ts_fields_t;

static int read_ts_fields(hctx_t *c, const unsigned char **p, const unsigned char *end, ts_fields_t *t) {
    const unsigned char *start = *p, *q = *p;
    memset(t, 0, sizeof *t);
    if (read_varint_min(c, &q, end, &t->offset, &t->negzero) < 0) return -1;
    while (q < end && t->nf < 6)
        if (read_varuint_min(c, &q, end, &t->f[t->nf++]) < 0) return -1;
    int nf = t->nf;
    if (nf == 0 || nf == 4) return nc(c, start, "timestamp fields incomplete");
    uint64_t year = t->f[0], month = nf > 1 ? t->f[1] : 1, day = nf > 2 ? t->f[2] : 1;
    if (year < 2 || year > 9998) return nc(c, start, "timestamp year at the edge of the range");
    if (month < 1 || month > 12 || day < 1 || day > (uint64_t)days_in_month((int)year, (int)month))
        return nc(c, start, "timestamp date out of range");
    if (nf >= 5 && (t->f[3] > 23 || t->f[4] > 59)) return nc(c, start, "timestamp time out of range");
    if (nf == 6 && t->f[5] > 59) return nc(c, start, "timestamp second out of range");
    if (nf <= 3 && !t->negzero) return nc(c, start, "date with an offset");
    if (!t->negzero && (t->offset <= -1440 || t->offset >= 1440)) return nc(c, start, "offset out of range");
    if (q < end && nf != 6) return nc(c, q, "fraction without seconds");
    *p = q;
    return 0;
}

static int ser_timestamp(hctx_t *c, buf_t *out, const unsigned char *q, const unsigned char *end) {
    buf_t r = {0};
    const unsigned char *start = q;
    ts_fields_t t;
    if (read_ts_fields(c, &q, end, &t) < 0) return -1;
    int64_t offset = t.offset;
    int negzero = t.negzero, nf = t.nf;
    const uint64_t *f = t.f;
    int rc = -1;
    if (negzero) {
        if (buf_byte(&r, 0xC0) < 0) goto done;
    } else if (buf_varint(&r, offset) < 0) {
        goto done;
    }
    for (int i = 0; i < nf; i++)
        if (buf_varuint(&r, f[i]) < 0) goto done;
    if (q < end) {
        int64_t fexp;
        if (read_varint_min(c, &q, end, &fexp, NULL) < 0) goto done;
        if (fexp < -9) { nc(c, start, "fraction finer than nanoseconds"); goto done; } /* amazon-ion clamps it */
        const unsigned char *mag = q;
        Py_ssize_t n = end - q;
        q = end;
        if (n && (mag[0] & 0x80)) { nc(c, mag, "negative fraction"); goto done; }
        while (n && mag[0] == 0) { mag++; n--; } /* leading zero bytes of the magnitude */
        if (fexp >= 0) {
            if (n) { nc(c, start, "fraction of a second not below one"); goto done; }
            /* a zero fraction at a non-negative exponent is no fraction at all */
        } else {
            if (n) {
                uint64_t coef, limit = 1;
                if (-fexp > 19 || small_uint(mag, n, &coef) < 0) { nc(c, start, "long fraction"); goto done; }
                for (int64_t i = 0; i < -fexp; i++) limit *= 10;
                if (coef >= limit) { nc(c, start, "fraction of a second not below one"); goto done; }
            }
            if (buf_varint(&r, fexp) < 0) goto done;
            if (n) {
                if ((mag[0] & 0x80) && buf_byte(&r, 0) < 0) goto done;
                if (buf_put(&r, mag, n) < 0) goto done;
            }
        }
    }
    rc = ser_scalar(out, 0x60, r.p, r.len);
done:
    buf_free(&r);
    return rc;
}

static int ser_decimal(hctx_t *c, buf_t *out, const unsigned char *q, const unsigned char *end) {
    if (q == end) return buf_put(out, "\x0B\x50\x0E", 3);
    int64_t exp;
    const unsigned char *at = q;
    if (read_varint_min(c, &q, end, &exp, NULL) < 0) return -1;
    /* amazon-ion's C reader holds decimals in decNumber: beyond these it reads a different value than
     * the bytes say (it clamps exponents), so its readers and this hash would disagree.  Not ours to
     * settle here: the Python path decides. */
    if (exp < -6000 || exp > 6000) return nc(c, at, "decimal exponent beyond 6000");
    int negative = 0;
    const unsigned char *mag = q;
    Py_ssize_t n = end - q;
    unsigned char first = 0;
    if (n) {
        negative = mag[0] & 0x80;
        first = mag[0] & 0x7F;
    }
    /* magnitude: first byte without its sign bit, then the rest; strip leading zeros */
    buf_t m = {0}, r = {0};
    int rc = -1;
    if (n) {
        if (buf_byte(&m, first) < 0 || buf_put(&m, mag + 1, n - 1) < 0) goto done;
    }
    Py_ssize_t skip = 0;
    while (skip < m.len && m.p[skip] == 0) skip++;
    Py_ssize_t mlen = m.len - skip;
    static const unsigned char max34[15] = {0x01, 0xed, 0x09, 0xbe, 0xad, 0x87, 0xc0, 0x37, 0x8d, 0x8e, 0x63, 0xff,
                                            0xff, 0xff, 0xff}; /* 10**34 - 1 */
    if (mlen > 15 || (mlen == 15 && memcmp(m.p + skip, max34, 15) > 0)) {
        nc(c, at, "decimal beyond 34 digits");
        goto done;
    }
    if (mlen == 0 && exp == 0 && !negative) {
        rc = buf_put(out, "\x0B\x50\x0E", 3);
        goto done;
    }
    if (buf_varint(&r, exp) < 0) goto done;
    if (mlen || negative) {
        /* Ion Int, minimal: the sign in the first magnitude byte when its high bit is free, else a byte of its own */
        unsigned char sign = negative ? 0x80 : 0x00;
        if (mlen && !(m.p[skip] & 0x80)) {
            if (buf_byte(&r, m.p[skip] | sign) < 0 || buf_put(&r, m.p + skip + 1, mlen - 1) < 0) goto done;
        } else if (buf_byte(&r, sign) < 0 || (mlen && buf_put(&r, m.p + skip, mlen) < 0)) {
            goto done;
        }
    }
    rc = ser_scalar(out, 0x50, r.p, r.len);
done:
    buf_free(&m);
    buf_free(&r);
    return rc;
}

static int ser_value(hctx_t *c, buf_t *out, const unsigned char **p, const unsigned char *end, int depth,
                     int annotated_ok) {
    if (depth > MAX_DEPTH) return nc(c, *p, "nested too deeply");
    const unsigned char *at = *p, *q, *e;
    int t, l;
    if (read_header(c, p, end, &t, &l, &q, &e) < 0) return -1;
    if (l == 0x0F) {
        unsigned char s[3] = {0x0B, (unsigned char)(t << 4 | 0x0F), 0x0E};
        return buf_put(out, s, 3);
    }
    switch (t) {
    case 0x1:
        if (l > 1) return nc(c, at, "invalid bool");
        return buf_put(out, l ? "\x0B\x11\x0E" : "\x0B\x10\x0E", 3);
    case 0x2:
    case 0x3:
        if (e > q && q[0] == 0) return nc(c, at, "integer with a leading zero byte");
        if (t == 0x3 && e == q) return nc(c, at, "negative zero integer");
        return ser_scalar(out, (unsigned char)(t << 4), q, e - q);
    case 0x4: {
        double d;
        if (e - q == 0) return buf_put(out, "\x0B\x40\x0E", 3);
        if (e - q == 8) {
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++) bits = (bits << 8) | q[i];
            memcpy(&d, &bits, 8);
        } else if (e - q == 4) {
            uint32_t bits = 0;
            float f;
            for (int i = 0; i < 4; i++) bits = (bits << 8) | q[i];
            memcpy(&f, &bits, 4);
            d = f;
        } else {
            return nc(c, at, "float of unusual width");
        }
        uint64_t bits;
        if (d != d) bits = 0x7ff8000000000000ULL;
        else memcpy(&bits, &d, 8);
        if (bits == 0) return buf_put(out, "\x0B\x40\x0E", 3);
        unsigned char rep[8];
        for (int i = 7; i >= 0; i--) { rep[i] = bits & 0xFF; bits >>= 8; }
        return ser_scalar(out, 0x40, rep, 8);
    }
    case 0x5:
        return ser_decimal(c, out, q, e);
    case 0x6:
        return ser_timestamp(c, out, q, e);
    case 0x7: {
        if (e > q && q[0] == 0) return nc(c, at, "symbol id with a leading zero byte");
        uint64_t sid;
        if (small_uint(q, e - q, &sid) < 0) return nc(c, at, "symbol id too large");
        return ser_symbol(c, out, sid, at);
    }
    case 0x8:
        if (!utf8_valid(q, e - q)) return nc(c, at, "string is not UTF-8");
        return ser_scalar(out, 0x80, q, e - q);
    case 0x9:
    case 0xA:
        return ser_scalar(out, (unsigned char)(t << 4), q, e - q);
    case 0xB:
    case 0xC:
        if (buf_byte(out, 0x0B) < 0 || buf_byte(out, (unsigned char)(t << 4)) < 0) return -1;
        while (q < e)
            if (ser_value(c, out, &q, e, depth + 1, 1) < 0) return -1;
        return buf_byte(out, 0x0E);
    case 0xD:
        return ser_struct(c, out, q, e, depth);
    case 0xE: {
        if (c->validate) return nc(c, at, "annotated value (left to the reader)");
        if (!annotated_ok) return nc(c, at, "annotation wrapper inside an annotation wrapper");
        uint64_t alen;
        if (read_varuint(c, &q, e, &alen) < 0) return -1;
        if (alen == 0 || alen > (uint64_t)(e - q)) return nc(c, at, "annotation list length");
        const unsigned char *aend = q + alen;
        if (buf_put(out, "\x0B\xE0", 2) < 0) return -1;
        while (q < aend) {
            uint64_t sid;
            const unsigned char *sat = q;
            if (read_varuint(c, &q, aend, &sid) < 0 || ser_symbol(c, out, sid, sat) < 0) return -1;
        }
        if (ser_value(c, out, &q, e, depth + 1, 0) < 0) return -1;
        if (q != e) return nc(c, q, "annotation wrapper holds more than one value");
        return buf_byte(out, 0x0E);
    }
    }
    return nc(c, at, "unknown type");
}

static int add_symbol(hctx_t *c, const unsigned char *p, Py_ssize_t n) {
    if (c->nsymbols == c->cap) {
        Py_ssize_t cap = c->cap * 2;
        text_t *s = PyMem_Realloc(c->symbols, cap * sizeof(text_t));
        if (!s) { PyErr_NoMemory(); return -1; }
        c->symbols = s;
        c->cap = cap;
    }
    c->symbols[c->nsymbols].p = p;
    c->symbols[c->nsymbols].len = n;
    c->nsymbols++;
    return 0;
}

/* $ion_symbol_table::{ [imports: $ion_symbol_table,] symbols: [ "..."... ] } — nothing else */
static int read_symbol_table(hctx_t *c, const unsigned char *q, const unsigned char *end) {
    int append = 0, seen_symbols = 0, seen_imports = 0;
    const unsigned char *list = NULL, *list_end = NULL;
    while (q < end) {
        uint64_t sid;
        const unsigned char *at = q, *r, *re;
        int t, l;
        if (read_varuint(c, &q, end, &sid) < 0 || read_header(c, &q, end, &t, &l, &r, &re) < 0) return -1;
        if (sid == 6 && !seen_imports) {
            seen_imports = 1;
            if (t != 0x7 || l != 1 || r[0] != 3) return nc(c, at, "symbol table imports other than the current");
            append = 1;
        } else if (sid == 7 && !seen_symbols) {
            seen_symbols = 1;
            if (t != 0xB || l == 0x0F) return nc(c, at, "symbol table symbols is not a list");
            list = r;
            list_end = re;
        } else {
            return nc(c, at, "symbol table field other than imports and symbols");
        }
    }
    if (!append) c->nsymbols = 10;
    while (list && list < list_end) {
        const unsigned char *at = list, *r, *re;
        int t, l;
        if (read_header(c, &list, list_end, &t, &l, &r, &re) < 0) return -1;
        if (t == 0x8 && l != 0x0F) {
            if (!utf8_valid(r, re - r)) return nc(c, at, "symbol text is not UTF-8");
            if (add_symbol(c, r, re - r) < 0) return -1;
        } else {
            return nc(c, at, "symbol table entry that is not a string");
        }
    }
    return 0;
}

/* The one value of binary Ion [p, end): version marker, local symbol tables, the value, serialised into out.
 * *value_at is where the value starts (after the symbol tables). */
static int walk_top(hctx_t *c, const unsigned char *p, const unsigned char *end, buf_t *out,
                    const unsigned char **value_at) {
    c->symbols = PyMem_Malloc(c->cap * sizeof(text_t));
    if (!c->symbols) { PyErr_NoMemory(); return -1; }
    for (int i = 0; i < 10; i++) {
        c->symbols[i].p = (const unsigned char *)SYSTEM_SYMBOLS[i];
        c->symbols[i].len = SYSTEM_SYMBOLS[i] ? (Py_ssize_t)strlen(SYSTEM_SYMBOLS[i]) : 0;
    }
    c->nsymbols = 10;
    if (end - p < 4 || memcmp(p, "\xE0\x01\x00\xEA", 4) != 0) return nc(c, p, "no binary Ion version marker");
    p += 4;
    int values = 0;
    while (p < end) {
        const unsigned char *at = p;
        if (*p == 0xE0) return nc(c, p, "version marker after the first");
        /* a local symbol table: an annotation wrapper whose first annotation is $ion_symbol_table */
        if ((*p >> 4) == 0xE && (*p & 0x0F) != 0x0F) {
            const unsigned char *q = p, *r, *re;
            int t, l;
            if (read_header(c, &q, end, &t, &l, &r, &re) < 0) return -1;
            const unsigned char *a = r;
            uint64_t alen, first;
            if (read_varuint(c, &a, re, &alen) < 0) return -1;
            const unsigned char *aend = a + alen;
            if (alen && aend <= re && read_varuint(c, &a, aend, &first) == 0) {
                int is_table = first == 3;
                if (!is_table && first < (uint64_t)c->nsymbols && c->symbols[first].p &&
                    c->symbols[first].len == 17 && memcmp(c->symbols[first].p, "$ion_symbol_table", 17) == 0)
                    return nc(c, at, "$ion_symbol_table by a local symbol id");
                if (is_table) {
                    if (values) return nc(c, at, "symbol table after the value");
                    const unsigned char *s = aend, *sr, *sre;
                    int st, sl;
                    if (a != aend) return nc(c, at, "symbol table with several annotations");
                    if (read_header(c, &s, re, &st, &sl, &sr, &sre) < 0) return -1;
                    if (st != 0xD || sl == 0x0F || s != re)
                        return nc(c, at, "$ion_symbol_table on a value that is not a struct");
                    if (read_symbol_table(c, sr, sre) < 0) return -1;
                    p = q;
                    continue;
                }
            }
            if (PyErr_Occurred()) return -1;
        }
        if ((*p >> 4) == 0x7 && values == 0) {
            /* a top-level symbol could be a system value ($ion_1_0); not in our subset */
            return nc(c, p, "top-level symbol value");
        }
        if (values) return nc(c, p, "more than one top-level value");
        *value_at = p;
        if (ser_value(c, out, &p, end, 0, 1) < 0) return -1;
        values++;
    }
    if (!values) return nc(c, p, "no value");
    return 0;
}

static PyObject *py_hash_binary(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", "identity", NULL};
    Py_buffer view;
    int identity = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|p", kwlist, &view, &identity)) return NULL;
    const unsigned char *p = view.buf, *value_at = NULL;
    hctx_t c = {p, NULL, 0, 64, identity, 0};
    buf_t out = {0};
    PyObject *result = NULL;
    if (walk_top(&c, p, p + view.len, &out, &value_at) < 0) goto done;
    if (identity) {
        result = PyBytes_FromStringAndSize((const char *)out.p, out.len);
    } else {
        unsigned char digest[32];
        sha256_of(out.p, (size_t)out.len, digest);
        result = PyBytes_FromStringAndSize((const char *)digest, 32);
    }
done:
    PyMem_Free(c.symbols);
    buf_free(&out);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* stream_record */

/* One value of a struct being read: its type, low nibble, the whole value [at, next) and its representation. */
typedef struct {
    int t, l;
    const unsigned char *at, *next, *rep, *rep_end;
} item_t;

/* The field `name` of the struct whose representation is [q, end): 1 found, 0 absent, -1 declined (read
 * twice: a struct may repeat a field name, and which one a reader returns is its business). */
static int st_field(hctx_t *c, const unsigned char *q, const unsigned char *end, const char *name, item_t *out) {
    size_t n = strlen(name);
    int found = 0;
    while (q < end) {
        uint64_t sid;
        item_t v;
        if (read_varuint(c, &q, end, &sid) < 0) return -1;
        v.at = q;
        if (read_header(c, &q, end, &v.t, &v.l, &v.rep, &v.rep_end) < 0) return -1;
        v.next = q;
        if (sid < (uint64_t)c->nsymbols && c->symbols[sid].p && (size_t)c->symbols[sid].len == n &&
            memcmp(c->symbols[sid].p, name, n) == 0) {
            if (found) return -1;
            found = 1;
            *out = v;
        }
    }
    return found;
}

static int is_struct(const item_t *v) { return v->t == 0xD && v->l != 0x0F; }

/* A field that must be a (non-null) struct: 1, or 0 to decline. */
static int st_struct(hctx_t *c, const item_t *parent, const char *name, item_t *out) {
    return st_field(c, parent->rep, parent->rep_end, name, out) == 1 && is_struct(out);
}

/* The text of a string or of a symbol with known text, as a new str; NULL (no error set) to decline. */
static PyObject *item_text(hctx_t *c, const item_t *v) {
    if (v->l == 0x0F) return NULL;
    if (v->t == 0x8) return PyUnicode_DecodeUTF8((const char *)v->rep, v->rep_end - v->rep, "strict");
    if (v->t == 0x7) {
        uint64_t sid;
        if (small_uint(v->rep, v->rep_end - v->rep, &sid) < 0 || sid == 0 || sid >= (uint64_t)c->nsymbols ||
            !c->symbols[sid].p)
            return NULL;
        return PyUnicode_DecodeUTF8((const char *)c->symbols[sid].p, c->symbols[sid].len, "strict");
    }
    return NULL;
}

static PyObject *field_text(hctx_t *c, const item_t *parent, const char *name) {
    item_t v;
    if (st_field(c, parent->rep, parent->rep_end, name, &v) != 1) return NULL;
    return item_text(c, &v);
}

/* A non-null int field within int64: 1, or 0 to decline. */
static int field_int(hctx_t *c, const item_t *parent, const char *name, int64_t *out) {
    item_t v;
    uint64_t m;
    if (st_field(c, parent->rep, parent->rep_end, name, &v) != 1 || v.l == 0x0F || (v.t != 0x2 && v.t != 0x3))
        return 0;
    if (small_uint(v.rep, v.rep_end - v.rep, &m) < 0 || m > (uint64_t)INT64_MAX) return 0;
    *out = v.t == 0x2 ? (int64_t)m : -(int64_t)m;
    return 1;
}

/* A non-null blob, as a new bytes object; NULL (no error set) to decline. */
static PyObject *item_blob(const item_t *v) {
    if (v->t != 0xA || v->l == 0x0F) return NULL;
    return PyBytes_FromStringAndSize((const char *)v->rep, v->rep_end - v->rep);
}

/* blockAddress {strandId: text, sequenceNo: int >= 0}: 1, or 0 to decline (*strand is a new reference). */
static int block_address(hctx_t *c, const item_t *holder, PyObject **strand, int64_t *seq) {
    item_t address;
    if (!st_struct(c, holder, "blockAddress", &address)) return 0;
    if (!field_int(c, &address, "sequenceNo", seq) || *seq < 0) return 0;
    *strand = field_text(c, &address, "strandId");
    return *strand != NULL;
}

/* revisionSummaries as [(hash, documentId or None)]: a new list, or NULL (no error set) to decline. */
static PyObject *summary_entries(hctx_t *c, const item_t *payload) {
    item_t list;
    int found = st_field(c, payload->rep, payload->rep_end, "revisionSummaries", &list);
    if (found < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (!out || !found || list.l == 0x0F) return out; /* absent or null: no entries */
    if (list.t != 0xB) goto decline;
    const unsigned char *q = list.rep;
    while (q < list.rep_end) {
        item_t entry, hash, doc;
        entry.at = q;
        if (read_header(c, &q, list.rep_end, &entry.t, &entry.l, &entry.rep, &entry.rep_end) < 0) goto decline;
        if (!is_struct(&entry) || st_field(c, entry.rep, entry.rep_end, "hash", &hash) != 1) goto decline;
        int has_doc = st_field(c, entry.rep, entry.rep_end, "documentId", &doc);
        if (has_doc < 0) goto decline;
        PyObject *digest = item_blob(&hash), *text;
        if (!digest) goto decline;
        if (!has_doc || doc.l == 0x0F) {
            text = Py_NewRef(Py_None);
        } else if (!(text = item_text(c, &doc))) {
            Py_DECREF(digest);
            goto decline;
        }
        PyObject *pair = PyTuple_Pack(2, digest, text);
        Py_DECREF(digest);
        Py_DECREF(text);
        if (!pair || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            goto decline;
        }
        Py_DECREF(pair);
    }
    return out;
decline:
    Py_DECREF(out);
    return NULL;
}

static int is_text(PyObject *s, const char *text) { return PyUnicode_CompareWithASCIIString(s, text) == 0; }

static PyObject *py_stream_record(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = view.buf, *value_at = NULL;
    hctx_t c = {p, NULL, 0, 64, 0, 1};
    PyObject *result = NULL, *arn = NULL, *type = NULL, *strand = NULL, *doc = NULL, *rhash = NULL,
             *entries = NULL, *control = NULL;
    int64_t seq = -1, version = -1;
    item_t top, payload, revision = {0}, metadata;
    if (walk_top(&c, p, p + view.len, NULL, &value_at) < 0) goto decline;
    top.at = value_at;
    {
        const unsigned char *q = value_at;
        if (read_header(&c, &q, p + view.len, &top.t, &top.l, &top.rep, &top.rep_end) < 0) goto decline;
        top.next = q;
    }
    if (!is_struct(&top) || !st_struct(&c, &top, "payload", &payload)) goto decline;
    if (!(arn = field_text(&c, &top, "qldbStreamArn")) || !(type = field_text(&c, &top, "recordType"))) goto decline;
    if (is_text(type, "CONTROL")) {
        if (!(control = field_text(&c, &payload, "controlRecordType"))) goto decline;
    } else if (is_text(type, "BLOCK_SUMMARY")) {
        if (!block_address(&c, &payload, &strand, &seq) || !(entries = summary_entries(&c, &payload))) goto decline;
    } else if (is_text(type, "REVISION_DETAILS")) {
        item_t hash;
        if (!st_struct(&c, &payload, "revision", &revision) || !block_address(&c, &revision, &strand, &seq) ||
            !st_struct(&c, &revision, "metadata", &metadata) || !(doc = field_text(&c, &metadata, "id")) ||
            !field_int(&c, &metadata, "version", &version) || st_field(&c, revision.rep, revision.rep_end, "hash",
                                                                       &hash) != 1 || !(rhash = item_blob(&hash)))
            goto decline;
    } else {
        goto decline;
    }
    {
        Py_ssize_t base = (Py_ssize_t)(value_at - p);
        result = Py_BuildValue(
            "(OOOLOLOOOnnnnn)", type, arn, strand ? strand : Py_None, (long long)seq, doc ? doc : Py_None,
            (long long)version, rhash ? rhash : Py_None, entries ? entries : Py_None, control ? control : Py_None,
            base, (Py_ssize_t)(payload.at - p), (Py_ssize_t)(payload.next - p),
            revision.at ? (Py_ssize_t)(revision.at - p) : (Py_ssize_t)0,
            revision.at ? (Py_ssize_t)(revision.next - p) : (Py_ssize_t)0);
    }
    goto done;
decline:
    /* not the common shape, or not in the subset: None, and the reader decides (errors other than ours stand) */
    if (!PyErr_Occurred() || PyErr_ExceptionMatches(NonCanonical) || PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        result = Py_NewRef(Py_None);
    }
done:
    Py_XDECREF(arn);
    Py_XDECREF(type);
    Py_XDECREF(strand);
    Py_XDECREF(doc);
    Py_XDECREF(rhash);
    Py_XDECREF(entries);
    Py_XDECREF(control);
    PyMem_Free(c.symbols);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* stream_details */

/* A REVISION_DETAILS record read as stream_record reads it (every byte checked, no annotation), split for the
 * second pass: (the record's symbol tables followed by its payload.revision without the `data` field, as one
 * binary Ion stream; the Ion hash of that `data` value, computed from its bytes as hash_binary computes it).
 * `data` must be there exactly once and be a non-null struct, `revision` and `payload` present once each;
 * anything else is None (no error), and streams.py parses the whole record instead. */
static PyObject *py_stream_details(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = view.buf, *end = p + view.len, *value_at = NULL;
    hctx_t c = {p, NULL, 0, 64, 0, 1};
    PyObject *result = NULL, *type = NULL;
    buf_t hashed = {0}, out = {0};
    item_t top, payload, revision, data = {0};
    const unsigned char *field_at = NULL;
    if (walk_top(&c, p, end, NULL, &value_at) < 0) goto decline;
    {
        const unsigned char *q = value_at;
        if (read_header(&c, &q, end, &top.t, &top.l, &top.rep, &top.rep_end) < 0) goto decline;
    }
    if (!is_struct(&top) || !st_struct(&c, &top, "payload", &payload)) goto decline;
    if (!(type = field_text(&c, &top, "recordType")) || !is_text(type, "REVISION_DETAILS")) goto decline;
    if (!st_struct(&c, &payload, "revision", &revision)) goto decline;
    /* the one `data` field, and where its field name starts (the field is cut from its symbol id on) */
    {
        const unsigned char *q = revision.rep;
        int found = 0;
        while (q < revision.rep_end) {
            const unsigned char *at = q;
            uint64_t sid;
            item_t v;
            if (read_varuint(&c, &q, revision.rep_end, &sid) < 0) goto decline;
            v.at = q;
            if (read_header(&c, &q, revision.rep_end, &v.t, &v.l, &v.rep, &v.rep_end) < 0) goto decline;
            v.next = q;
            if (sid < (uint64_t)c.nsymbols && c.symbols[sid].p && c.symbols[sid].len == 4 &&
                memcmp(c.symbols[sid].p, "data", 4) == 0) {
                if (found++) goto decline;
                data = v;
                field_at = at;
            }
        }
        if (!found || !is_struct(&data)) goto decline;
    }
    /* the data's hash: the walk above validated every byte; now serialise it as hash_binary does */
    c.validate = 0;
    {
        const unsigned char *q = data.at;
        if (ser_value(&c, &hashed, &q, data.next, 0, 1) < 0 || q != data.next) goto decline;
    }
    {
        unsigned char digest[32];
        uint64_t length = (uint64_t)((field_at - revision.rep) + (revision.rep_end - data.next));
        /* whole fields are at least 2 bytes each, so never 1 (0xD1 would read as the sorted-struct form) */
        if (length == 1) goto decline;
        sha256_of(hashed.p, (size_t)hashed.len, digest);
        /* IVM and symbol tables as they are, then {the revision's other fields, bytes unchanged} */
        if (buf_put(&out, p, value_at - p) < 0 || put_header(&out, 0xD, length) < 0 ||
            buf_put(&out, revision.rep, field_at - revision.rep) < 0 ||
            buf_put(&out, data.next, revision.rep_end - data.next) < 0)
            goto done;
        result = Py_BuildValue("(y#y#)", (const char *)out.p, out.len, (const char *)digest, (Py_ssize_t)32);
    }
    goto done;
decline:
    if (!PyErr_Occurred() || PyErr_ExceptionMatches(NonCanonical) || PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        result = Py_NewRef(Py_None);
    }
done:
    Py_XDECREF(type);
    buf_free(&hashed);
    buf_free(&out);
    PyMem_Free(c.symbols);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* canonical JSON */

typedef struct {
    buf_t out;
    PyObject *render; /* Python fallback for one value -> str */
} json_t;

static int json_value(json_t *j, PyObject *v, int depth);

/* Append the UTF-8 of ``s`` (a new reference, released here; NULL: an error is set). */
static int put_str_steal(buf_t *b, PyObject *s) {
    if (!s) return -1;
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    int rc = u ? buf_put(b, u, n) : -1;
    Py_DECREF(s);
    return rc;
}

static int json_fallback(json_t *j, PyObject *v) { return put_str_steal(&j->out, PyObject_CallOneArg(j->render, v)); }

/* json.encoder.encode_basestring (ensure_ascii=False); U+0000 first becomes the text \u0000 */
static int json_string_utf8(buf_t *b, const unsigned char *s, Py_ssize_t n) {
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(b, n + 2) < 0) return -1;
    b->p[b->len++] = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            if (buf_byte(b, c) < 0) return -1;
            continue;
        }
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case 0: esc = "\\\\u0000"; break;
        default:
            u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0'; u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = 0;
            esc = u;
        }
        if (buf_put(b, esc, (Py_ssize_t)strlen(esc)) < 0) return -1;
    }
    return buf_byte(b, '"');
}

static int json_string(json_t *j, PyObject *text) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (!s) {
        PyErr_Clear(); /* lone surrogates: the Python rendering decides */
        return json_fallback(j, text);
    }
    return json_string_utf8(&j->out, (const unsigned char *)s, n);
}

typedef struct {
    const char *key;
    Py_ssize_t len;
    PyObject *value;
} field_t;

static int cmp_field(const void *a, const void *b) {
    const field_t *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return memcmp(x->key, y->key, (size_t)x->len);
}

/* Fast path: every key a plain str without U+0000; jsonb order (byte length, then bytes). */
static int json_struct(json_t *j, PyObject *v, int depth) {
    PyObject *src;
    int multi = 0;
    if (PyDict_CheckExact(v)) {
        src = Py_NewRef(v);
    } else {
        src = PyObject_GetAttr(v, S_store);
        if (!src) return -1;
        multi = 1;
        if (!PyDict_CheckExact(src)) { Py_DECREF(src); return json_fallback(j, v); }
    }
    Py_ssize_t n = PyDict_GET_SIZE(src), i = 0, pos = 0;
    field_t stack[32];
    field_t *fields = n <= 32 ? stack : PyMem_Malloc(n * sizeof(field_t));
    int rc = -1;
    if (!fields) { PyErr_NoMemory(); goto done; }
    PyObject *k, *val;
    while (PyDict_Next(src, &pos, &k, &val)) {
        if (!PyUnicode_CheckExact(k)) goto slow;
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(k, &len);
        if (!s) { PyErr_Clear(); goto slow; }
        if (memchr(s, 0, (size_t)len)) goto slow;
        if (multi) {
            if (!PyList_CheckExact(val) || PyList_GET_SIZE(val) == 0) goto slow;
            val = PyList_GET_ITEM(val, PyList_GET_SIZE(val) - 1); /* a repeated field keeps its last value */
        }
        fields[i].key = s;
        fields[i].len = len;
        fields[i].value = val;
        i++;
    }
    if (n > 1) qsort(fields, (size_t)n, sizeof(field_t), cmp_field);
    if (buf_byte(&j->out, '{') < 0) goto done;
    for (i = 0; i < n; i++) {
        if (i && buf_put(&j->out, ", ", 2) < 0) goto done;
        if (json_string_utf8(&j->out, (const unsigned char *)fields[i].key, fields[i].len) < 0 ||
            buf_put(&j->out, ": ", 2) < 0 || json_value(j, fields[i].value, depth + 1) < 0)
            goto done;
    }
    rc = buf_byte(&j->out, '}');
    goto done;
slow:
    rc = json_fallback(j, v);
done:
    if (fields != stack) PyMem_Free(fields);
    Py_DECREF(src);
    return rc;
}

static int json_sequence(json_t *j, PyObject *seq, int depth) {
    PyObject *fast = PySequence_Fast(seq, "not a sequence");
    if (!fast) return -1;
    int rc = -1;
    if (buf_byte(&j->out, '[') < 0) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i && buf_put(&j->out, ", ", 2) < 0) goto done;
        if (json_value(j, PySequence_Fast_GET_ITEM(fast, i), depth + 1) < 0) goto done;
    }
    rc = buf_byte(&j->out, ']');
done:
    Py_DECREF(fast);
    return rc;
}

static int json_int(json_t *j, PyObject *v) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        PyObject *plain = PyNumber_Long(v);
        if (!plain) return -1;
        PyObject *s = PyObject_Str(plain);
        Py_DECREF(plain);
        return put_str_steal(&j->out, s);
    }
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", x);
    return buf_put(&j->out, tmp, n);
}

static int json_value(json_t *j, PyObject *v, int depth) {
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "value nested too deeply");
        return -1;
    }
    if (PyUnicode_CheckExact(v) || IS(v, T_IonPyText)) return json_string(j, v);
    if (IS(v, T_IonPyDict) || PyDict_CheckExact(v)) return json_struct(j, v, depth);
    if (v == Py_None || IS(v, T_IonPyNull)) return buf_put(&j->out, "null", 4);
    if (PyBool_Check(v)) return v == Py_True ? buf_put(&j->out, "true", 4) : buf_put(&j->out, "false", 5);
    if (IS(v, T_IonPyBool)) {
        int t = PyObject_IsTrue(v);
        if (t < 0) return -1;
        return t ? buf_put(&j->out, "true", 4) : buf_put(&j->out, "false", 5);
    }
    if (PyLong_CheckExact(v) || IS(v, T_IonPyInt)) return json_int(j, v);
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v) || IS(v, T_IonPyList)) return json_sequence(j, v, depth);
    if (IS(v, T_SymbolToken) || IS(v, T_IonPySymbol)) {
        PyObject *text = PyTuple_GET_ITEM(v, 0);
        if (text == Py_None) return buf_put(&j->out, "\"$0\"", 4);
        if (PyUnicode_Check(text)) return json_string(j, text);
    }
    return json_fallback(j, v);
}

static PyObject *py_canonical_json(PyObject *self, PyObject *args) {
    PyObject *value, *render;
    if (!PyArg_ParseTuple(args, "OO", &value, &render)) return NULL;
    if (!T_IonPyDict) {
        PyErr_SetString(PyExc_RuntimeError, "_native.setup() was not called");
        return NULL;
    }
    json_t j = {{0}, render};
    PyObject *result = NULL;
    if (json_value(&j, value, 0) == 0) result = PyUnicode_DecodeUTF8((const char *)j.out.p, j.out.len, "strict");
    buf_free(&j.out);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* PostgreSQL binary COPY tuples (copybinary.py is the reference) */

static inline int put_be32(buf_t *b, int32_t v) { return put_be(b, (uint32_t)v, 4); }

static inline int put_be64(buf_t *b, int64_t v) { return put_be(b, (uint64_t)v, 8); }

static int put_sized(buf_t *b, const void *data, Py_ssize_t n) {
    if (n > INT32_MAX - 1) { PyErr_SetString(PyExc_OverflowError, "field too large"); return -1; }
    if (put_be32(b, (int32_t)n) < 0) return -1;
    return buf_put(b, data, n);
}

static int copy_text(buf_t *b, PyObject *v, int jsonb) {
    if (!PyUnicode_Check(v)) { PyErr_SetString(PyExc_TypeError, "text field is not str"); return -1; }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (!s) return -1;
    if (!jsonb) return put_sized(b, s, n);
    if (put_be32(b, (int32_t)(n + 1)) < 0 || buf_byte(b, 1) < 0) return -1;
    return buf_put(b, s, n);
}

static int copy_bytes(buf_t *b, PyObject *v) {
    Py_buffer view;
    if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0) return -1;
    int rc = put_sized(b, view.buf, view.len);
    PyBuffer_Release(&view);
    return rc;
}

static int copy_array(buf_t *b, PyObject *v, int text) {
    if (!PyList_CheckExact(v)) { PyErr_SetString(PyExc_TypeError, "array field is not a list"); return -1; }
    Py_ssize_t n = PyList_GET_SIZE(v), start = b->len;
    if (put_be32(b, 0) < 0) return -1; /* size, filled in below */
    int has_null = 0;
    for (Py_ssize_t i = 0; i < n; i++) has_null |= PyList_GET_ITEM(v, i) == Py_None;
    if (n == 0) {
        if (put_be32(b, 0) < 0 || put_be32(b, 0) < 0 || put_be32(b, text ? 25 : 17) < 0) return -1;
    } else {
        if (put_be32(b, 1) < 0 || put_be32(b, has_null) < 0 || put_be32(b, text ? 25 : 17) < 0 ||
            put_be32(b, (int32_t)n) < 0 || put_be32(b, 1) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PyList_GET_ITEM(v, i);
            int rc = item == Py_None ? put_be32(b, -1) : text ? copy_text(b, item, 0) : copy_bytes(b, item);
            if (rc < 0) return -1;
        }
    }
    Py_ssize_t size = b->len - start - 4;
    if (size > INT32_MAX) { PyErr_SetString(PyExc_OverflowError, "array too large"); return -1; }
    unsigned char *w = b->p + start;
    w[0] = (unsigned char)(size >> 24); w[1] = (unsigned char)(size >> 16); w[2] = (unsigned char)(size >> 8);
    w[3] = (unsigned char)size;
    return 0;
}

static int copy_timestamptz(buf_t *b, PyObject *v) {
    /* only an aware datetime in UTC: anything else is the Python encoder's to convert */
    if (!PyDateTime_Check(v) || !((_PyDateTime_BaseTZInfo *)v)->hastzinfo ||
        PyDateTime_DATE_GET_TZINFO(v) != PyDateTime_TimeZone_UTC) {
        PyErr_SetString(PyExc_TypeError, "timestamptz field is not a datetime in UTC");
        return -1;
    }
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v)) -
                   days_from_civil(2000, 1, 1);
    int64_t secs = days * 86400 + PyDateTime_DATE_GET_HOUR(v) * 3600 + PyDateTime_DATE_GET_MINUTE(v) * 60 +
                   PyDateTime_DATE_GET_SECOND(v);
    if (put_be32(b, 8) < 0) return -1;
    return put_be64(b, secs * 1000000 + PyDateTime_DATE_GET_MICROSECOND(v));
}

static int copy_int(buf_t *b, PyObject *v, int wide) {
    if (!PyLong_Check(v)) { PyErr_SetString(PyExc_TypeError, "integer field is not int"); return -1; }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (wide) return put_be32(b, 8) < 0 ? -1 : put_be64(b, x);
    if (x < INT32_MIN || x > INT32_MAX) { PyErr_SetString(PyExc_OverflowError, "int4 out of range"); return -1; }
    return put_be32(b, 4) < 0 ? -1 : put_be32(b, (int32_t)x);
}

static PyObject *py_copy_tuple(PyObject *self, PyObject *args) {
    const char *kinds;
    Py_ssize_t nkinds;
    PyObject *row;
    int fields;
    if (!PyArg_ParseTuple(args, "y#O!i", &kinds, &nkinds, &PyTuple_Type, &row, &fields)) return NULL;
    if (PyTuple_GET_SIZE(row) != nkinds) return PyErr_Format(PyExc_ValueError, "row has %zd values for %zd kinds",
                                                             PyTuple_GET_SIZE(row), nkinds);
    buf_t b = {0};
    PyObject *result = NULL;
    if (buf_byte(&b, (unsigned char)(fields >> 8)) < 0 || buf_byte(&b, (unsigned char)fields) < 0) goto done;
    for (Py_ssize_t i = 0; i < nkinds; i++) {
        PyObject *v = PyTuple_GET_ITEM(row, i);
        int rc;
        if (v == Py_None) {
            rc = put_be32(&b, -1);
        } else {
            switch (kinds[i]) {
            case 't': rc = copy_text(&b, v, 0); break;
            case 'j': rc = copy_text(&b, v, 1); break;
            case 'i': rc = copy_int(&b, v, 0); break;
            case 'l': rc = copy_int(&b, v, 1); break;
            case 'b': rc = copy_bytes(&b, v); break;
            case '?': rc = put_be32(&b, 1) < 0 ? -1 : buf_byte(&b, PyObject_IsTrue(v) ? 1 : 0); break;
            case 'T': rc = copy_timestamptz(&b, v); break;
            case 'B': rc = copy_array(&b, v, 0); break;
            case 'S': rc = copy_array(&b, v, 1); break;
            default: PyErr_Format(PyExc_ValueError, "unknown field kind %c", kinds[i]); rc = -1;
            }
        }
        if (rc < 0) goto done;
    }
    result = PyBytes_FromStringAndSize((const char *)b.p, b.len);
done:
    buf_free(&b);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* binary_json: jsoncanon's canonical JSON straight from canonical binary Ion bytes
 *
 * ``check`` compares every stored ``data`` (jsonb) with the canonical JSON of its ``data_ion``.  Parsing
 * the bytes into amazon-ion values first cost most of check's time.  This renders the common subset
 * (what QLDB documents are made of) from the bytes, and raises NonCanonical for anything else (floats,
 * integers and decimal coefficients over 64 bits, NUL in a field name, unusual timestamps, symbols of
 * unknown text): there the Python rendering decides.  The caller only ever accepts an *equal* rendering as
 * a match; any difference goes to the Python path, which has the last word (tests hold the two equal).
 *
 * ``typed`` marks each scalar with its Ion type (s"text", y"symbol", t"timestamp", i12, d1.50, b, z, ...),
 * refuses annotations and repeated field names: a key that tells a string from a timestamp, for the
 * metadata columns, whose check must not confuse the two. */

typedef struct {
    hctx_t c;
    buf_t out;
    int typed;
} bj_t;

static int bj_value(bj_t *j, const unsigned char **p, const unsigned char *end, int depth);

static int bj_tag(bj_t *j, char tag) { return j->typed ? buf_byte(&j->out, (unsigned char)tag) : 0; }

static int bj_uint_text(buf_t *b, uint64_t v) {
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    if (buf_reserve(b, n) < 0) return -1;
    while (n) b->p[b->len++] = (unsigned char)digits[--n];
    return 0;
}

static int bj_int(bj_t *j, const unsigned char *at, int negative, const unsigned char *q, const unsigned char *e) {
    uint64_t v;
    if (e > q && q[0] == 0) return nc(&j->c, at, "integer with a leading zero byte");
    if (negative && e == q) return nc(&j->c, at, "negative zero integer");
    if (small_uint(q, e - q, &v) < 0) return nc(&j->c, at, "integer over 64 bits");
    if (bj_tag(j, 'i') < 0 || (negative && buf_byte(&j->out, '-') < 0)) return -1;
    return bj_uint_text(&j->out, v);
}

/* PostgreSQL numeric's plain notation, as jsoncanon._number writes it */
static int bj_decimal(bj_t *j, const unsigned char *at, const unsigned char *q, const unsigned char *e) {
    buf_t *b = &j->out;
    if (bj_tag(j, 'd') < 0) return -1;
    if (q == e) return buf_byte(b, '0');
    int64_t exp;
    if (read_varint_min(&j->c, &q, e, &exp, NULL) < 0) return -1;
    if (exp < -6000 || exp > 6000) return nc(&j->c, at, "decimal exponent beyond 6000");
    int negative = 0;
    uint64_t coef = 0;
    if (q < e) {
        Py_ssize_t n = e - q;
        negative = q[0] & 0x80;
        unsigned char m[8];
        if (n > 8) return nc(&j->c, at, "decimal coefficient over 64 bits");
        memcpy(m, q, (size_t)n);
        m[0] &= 0x7F;
        if (small_uint(m, n, &coef) < 0) return -1;
    }
    char digits[24];
    int nd = 0;
    uint64_t v = coef;
    do { digits[nd++] = (char)('0' + v % 10); v /= 10; } while (v);
    /* digits are reversed; coef == 0 gives "0" */
    if (coef && negative && buf_byte(b, '-') < 0) return -1;
    if (exp >= 0) {
        if (coef == 0) return buf_byte(b, '0');
        if (buf_reserve(b, nd + exp) < 0) return -1;
        while (nd) b->p[b->len++] = (unsigned char)digits[--nd];
        for (int64_t i = 0; i < exp; i++) b->p[b->len++] = '0';
        return 0;
    }
    int64_t places = -exp;
    if (buf_reserve(b, nd + places + 2) < 0) return -1;
    if (nd > places) {
        int64_t whole = nd - places;
        while (whole--) b->p[b->len++] = (unsigned char)digits[--nd];
        b->p[b->len++] = '.';
        while (nd) b->p[b->len++] = (unsigned char)digits[--nd];
    } else {
        b->p[b->len++] = '0';
        b->p[b->len++] = '.';
        for (int64_t i = nd; i < places; i++) b->p[b->len++] = '0';
        while (nd) b->p[b->len++] = (unsigned char)digits[--nd];
    }
    return 0;
}

static int put2(buf_t *b, int v) {
    char s[2] = {(char)('0' + v / 10 % 10), (char)('0' + v % 10)};
    return buf_put(b, s, 2);
}

/* iontext.timestamp_text: the local fields and the offset, the fraction at its precision */
static int bj_timestamp(bj_t *j, const unsigned char *at, const unsigned char *q, const unsigned char *end) {
    ts_fields_t t;
    if (read_ts_fields(&j->c, &q, end, &t) < 0) return -1;
    int64_t offset = t.offset;
    int negzero = t.negzero, nf = t.nf;
    const uint64_t *f = t.f;
    uint64_t year = f[0], month = nf > 1 ? f[1] : 1, day = nf > 2 ? f[2] : 1;
    int64_t fexp = 0;
    uint64_t fcoef = 0;
    int has_fraction = 0;
    if (q < end) {
        if (read_varint_min(&j->c, &q, end, &fexp, NULL) < 0) return -1;
        Py_ssize_t n = end - q;
        if (fexp >= 0 || fexp < -9) return nc(&j->c, at, "fraction at an unusual exponent");
        if (n && (q[0] & 0x80)) return nc(&j->c, at, "negative fraction");
        while (n && q[0] == 0) { q++; n--; } /* the sign's own byte, when the magnitude's high bit is set */
        if (small_uint(q, n, &fcoef) < 0) return nc(&j->c, at, "long fraction");
        uint64_t limit = 1;
        for (int64_t i = 0; i < -fexp; i++) limit *= 10;
        if (fcoef >= limit) return nc(&j->c, at, "fraction of a second not below one");
        has_fraction = 1;
    }
    int64_t y = (int64_t)year;
    int m = (int)month, d = (int)day, hh = (int)f[3], mm = (int)f[4];
    if (nf >= 5 && !negzero && offset) {
        int64_t minutes = days_from_civil(y, m, d) * 1440 + hh * 60 + mm + offset;
        int64_t days = minutes >= 0 ? minutes / 1440 : -((-minutes + 1439) / 1440);
        int64_t rest = minutes - days * 1440;
        civil_from_days(days, &y, &m, &d);
        hh = (int)(rest / 60);
        mm = (int)(rest % 60);
        if (y < 1 || y > 9999) return nc(&j->c, at, "local time beyond the calendar");
    }
    buf_t *b = &j->out;
    char ys[5] = {(char)('0' + y / 1000), (char)('0' + y / 100 % 10), (char)('0' + y / 10 % 10), (char)('0' + y % 10), 0};
    if (bj_tag(j, 't') < 0 || buf_byte(b, '"') < 0 || buf_put(b, ys, 4) < 0) return -1;
    if (nf == 1) return buf_put(b, "T\"", 2);
    if (buf_byte(b, '-') < 0 || put2(b, m) < 0) return -1;
    if (nf == 2) return buf_put(b, "T\"", 2);
    if (buf_byte(b, '-') < 0 || put2(b, d) < 0) return -1;
    if (nf == 3) return buf_put(b, "T\"", 2);
    if (buf_byte(b, 'T') < 0 || put2(b, hh) < 0 || buf_byte(b, ':') < 0 || put2(b, mm) < 0) return -1;
    if (nf == 6) {
        if (buf_byte(b, ':') < 0 || put2(b, (int)f[5]) < 0) return -1;
        if (has_fraction) {
            char frac[10];
            int places = (int)-fexp;
            uint64_t v = fcoef;
            for (int i = places - 1; i >= 0; i--) { frac[i] = (char)('0' + v % 10); v /= 10; }
            if (buf_byte(b, '.') < 0 || buf_put(b, frac, places) < 0) return -1;
        }
    }
    if (negzero) {
        if (buf_put(b, "-00:00", 6) < 0) return -1;
    } else if (offset == 0) {
        if (buf_byte(b, 'Z') < 0) return -1;
    } else {
        int64_t a = offset < 0 ? -offset : offset;
        if (buf_byte(b, offset < 0 ? '-' : '+') < 0 || put2(b, (int)(a / 60)) < 0 || buf_byte(b, ':') < 0 ||
            put2(b, (int)(a % 60)) < 0)
            return -1;
    }
    return buf_byte(b, '"');
}

static int bj_base64(buf_t *b, const unsigned char *s, Py_ssize_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (buf_reserve(b, (n + 2) / 3 * 4 + 2) < 0) return -1;
    unsigned char *w = b->p + b->len;
    *w++ = '"';
    Py_ssize_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *w++ = tab[v >> 18]; *w++ = tab[(v >> 12) & 63]; *w++ = tab[(v >> 6) & 63]; *w++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *w++ = tab[v >> 18]; *w++ = tab[(v >> 12) & 63];
        *w++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *w++ = '=';
    }
    *w++ = '"';
    b->len = w - b->p;
    return 0;
}

typedef struct {
    const unsigned char *name;
    Py_ssize_t len;
    Py_ssize_t order;
    Py_ssize_t start, stop; /* the value's rendering in the struct's scratch buffer */
} bj_field_t;

static int cmp_bj_field(const void *a, const void *b) {
    const bj_field_t *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    int c = memcmp(x->name, y->name, (size_t)x->len);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* jsonb's object: keys by byte length, then bytes; a repeated name keeps its last value */
static int bj_struct(bj_t *j, const unsigned char *q, const unsigned char *end, int depth) {
    bj_field_t *fields = NULL;
    Py_ssize_t n = 0, cap = 0;
    buf_t saved = j->out, scratch = {0};
    int rc = -1, in_scratch = 1; /* the values render into a scratch buffer, then go out in key order */
    j->out = scratch;
    while (q < end) {
        uint64_t sid;
        const unsigned char *at = q;
        if (read_varuint(&j->c, &q, end, &sid) < 0) goto done;
        if (sid == 0 || sid >= (uint64_t)j->c.nsymbols || j->c.symbols[sid].p == NULL) {
            nc(&j->c, at, "field name of unknown text");
            goto done;
        }
        text_t name = j->c.symbols[sid];
        if (memchr(name.p, 0, (size_t)name.len)) { nc(&j->c, at, "U+0000 in a field name"); goto done; }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            bj_field_t *f = PyMem_Realloc(fields, cap * sizeof(bj_field_t));
            if (!f) { PyErr_NoMemory(); goto done; }
            fields = f;
        }
        fields[n].name = name.p;
        fields[n].len = name.len;
        fields[n].order = n;
        fields[n].start = j->out.len;
        if (bj_value(j, &q, end, depth + 1) < 0) goto done;
        fields[n].stop = j->out.len;
        n++;
    }
    if (n > 1) qsort(fields, (size_t)n, sizeof(bj_field_t), cmp_bj_field);
    scratch = j->out;
    j->out = saved;
    in_scratch = 0;
    if (buf_byte(&j->out, '{') < 0) goto done;
    int first = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + 1 < n && fields[i + 1].len == fields[i].len &&
            memcmp(fields[i + 1].name, fields[i].name, (size_t)fields[i].len) == 0) {
            if (j->typed) { nc(&j->c, q, "repeated field name"); goto done; }
            continue; /* a later one of the same name wins */
        }
        if (!first && buf_put(&j->out, ", ", 2) < 0) goto done;
        first = 0;
        if (json_string_utf8(&j->out, fields[i].name, fields[i].len) < 0 || buf_put(&j->out, ": ", 2) < 0 ||
            buf_put(&j->out, scratch.p + fields[i].start, fields[i].stop - fields[i].start) < 0)
            goto done;
    }
    rc = buf_byte(&j->out, '}');
done:
    if (in_scratch) { /* failed while the scratch buffer was in place */
        scratch = j->out;
        j->out = saved;
    }
    buf_free(&scratch);
    PyMem_Free(fields);
    return rc;
}

static int bj_value(bj_t *j, const unsigned char **p, const unsigned char *end, int depth) {
    if (depth > MAX_DEPTH) return nc(&j->c, *p, "nested too deeply");
    const unsigned char *at = *p, *q, *e;
    int t, l;
    if (read_header(&j->c, p, end, &t, &l, &q, &e) < 0) return -1;
    buf_t *b = &j->out;
    if (l == 0x0F) return bj_tag(j, 'z') < 0 ? -1 : buf_put(b, "null", 4);
    switch (t) {
    case 0x1:
        if (l > 1) return nc(&j->c, at, "invalid bool");
        if (bj_tag(j, 'b') < 0) return -1;
        return l ? buf_put(b, "true", 4) : buf_put(b, "false", 5);
    case 0x2:
    case 0x3:
        return bj_int(j, at, t == 0x3, q, e);
    case 0x5:
        return bj_decimal(j, at, q, e);
    case 0x6:
        return bj_timestamp(j, at, q, e);
    case 0x7: {
        uint64_t sid;
        if (e > q && q[0] == 0) return nc(&j->c, at, "symbol id with a leading zero byte");
        if (small_uint(q, e - q, &sid) < 0) return nc(&j->c, at, "symbol id too large");
        if (bj_tag(j, 'y') < 0) return -1;
        if (sid == 0) return buf_put(b, "\"$0\"", 4);
        if (sid >= (uint64_t)j->c.nsymbols || j->c.symbols[sid].p == NULL) return nc(&j->c, at, "symbol of unknown text");
        if (j->typed && memchr(j->c.symbols[sid].p, 0, (size_t)j->c.symbols[sid].len))
            return nc(&j->c, at, "U+0000 in a typed symbol");
        return json_string_utf8(b, j->c.symbols[sid].p, j->c.symbols[sid].len);
    }
    case 0x8:
        if (!utf8_valid(q, e - q)) return nc(&j->c, at, "string is not UTF-8");
        if (j->typed && memchr(q, 0, (size_t)(e - q))) return nc(&j->c, at, "U+0000 in a typed string");
        if (bj_tag(j, 's') < 0) return -1;
        return json_string_utf8(b, q, e - q);
    case 0x9:
    case 0xA:
        if (bj_tag(j, t == 0x9 ? 'c' : 'l') < 0) return -1;
        return bj_base64(b, q, e - q);
    case 0xB:
    case 0xC: {
        if (buf_byte(b, '[') < 0) return -1;
        int first = 1;
        while (q < e) {
            if (!first && buf_put(b, ", ", 2) < 0) return -1;
            first = 0;
            if (bj_value(j, &q, e, depth + 1) < 0) return -1;
        }
        return buf_byte(b, ']');
    }
    case 0xD:
        if (l == 1) return nc(&j->c, at, "sorted-struct form");
        return bj_struct(j, q, e, depth);
    case 0xE: {
        if (j->typed) return nc(&j->c, at, "annotation");
        uint64_t alen;
        if (read_varuint(&j->c, &q, e, &alen) < 0) return -1;
        if (alen == 0 || alen > (uint64_t)(e - q)) return nc(&j->c, at, "annotation list length");
        const unsigned char *aend = q + alen;
        while (q < aend) {
            uint64_t sid;
            const unsigned char *sat = q;
            if (read_varuint(&j->c, &q, aend, &sid) < 0) return -1;
            if (sid >= (uint64_t)j->c.nsymbols || (sid && j->c.symbols[sid].p == NULL))
                return nc(&j->c, sat, "annotation of unknown text");
        }
        if (q < e && (*q >> 4) == 0xE) return nc(&j->c, q, "annotation wrapper inside an annotation wrapper");
        if (bj_value(j, &q, e, depth + 1) < 0) return -1;
        if (q != e) return nc(&j->c, q, "annotation wrapper holds more than one value");
        return 0;
    }
    }
    return nc(&j->c, at, "a float, or an unknown type"); /* floats: the shortest repr is Python's to give */
}

static PyObject *py_binary_json(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", "typed", NULL};
    Py_buffer view;
    int typed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|p", kwlist, &view, &typed)) return NULL;
    const unsigned char *p = view.buf, *end = p + view.len;
    bj_t j = {{p, NULL, 0, 64, 0}, {0}, typed};
    PyObject *result = NULL;
    j.c.symbols = PyMem_Malloc(j.c.cap * sizeof(text_t));
    if (!j.c.symbols) { PyErr_NoMemory(); goto done; }
    for (int i = 0; i < 10; i++) {
        j.c.symbols[i].p = (const unsigned char *)SYSTEM_SYMBOLS[i];
        j.c.symbols[i].len = SYSTEM_SYMBOLS[i] ? (Py_ssize_t)strlen(SYSTEM_SYMBOLS[i]) : 0;
    }
    j.c.nsymbols = 10;
    if (view.len < 4 || memcmp(p, "\xE0\x01\x00\xEA", 4) != 0) {
        nc(&j.c, p, "no binary Ion version marker");
        goto done;
    }
    p += 4;
    /* local symbol tables first: $ion_symbol_table::{...}, by the system symbol id 3 and nothing else */
    while (p < end && *p != 0xE0 && (*p >> 4) == 0xE && (*p & 0x0F) != 0x0F) {
        const unsigned char *q = p, *r, *re, *a;
        int t, l;
        uint64_t alen;
        if (read_header(&j.c, &q, end, &t, &l, &r, &re) < 0) goto done;
        a = r;
        if (read_varuint(&j.c, &a, re, &alen) < 0) goto done;
        if (alen != 1 || a + 1 > re || *a != 0x83) break; /* an annotated value, not a symbol table */
        a++;
        const unsigned char *s = a, *sr, *sre;
        int st, sl;
        if (read_header(&j.c, &s, re, &st, &sl, &sr, &sre) < 0) goto done;
        if (st != 0xD || sl == 0x0F || sl == 1 || s != re) {
            nc(&j.c, p, "$ion_symbol_table on a value that is not a struct");
            goto done;
        }
        if (read_symbol_table(&j.c, sr, sre) < 0) goto done;
        p = q;
    }
    if (p >= end) { nc(&j.c, p, "no value"); goto done; }
    if (*p == 0xE0) { nc(&j.c, p, "version marker after the first"); goto done; }
    if ((*p >> 4) == 0x7) { nc(&j.c, p, "top-level symbol value"); goto done; }
    if ((*p >> 4) == 0xE && (*p & 0x0F) != 0x0F) {
        /* an annotated top-level value whose first annotation is a symbol table by another id: not ours */
        const unsigned char *q = p, *r, *re, *a;
        int t, l;
        uint64_t alen, first;
        if (read_header(&j.c, &q, end, &t, &l, &r, &re) < 0) goto done;
        a = r;
        if (read_varuint(&j.c, &a, re, &alen) < 0 || read_varuint(&j.c, &a, re, &first) < 0) goto done;
        if (first == 3 || (first < (uint64_t)j.c.nsymbols && j.c.symbols[first].p && j.c.symbols[first].len == 17 &&
                           memcmp(j.c.symbols[first].p, "$ion_symbol_table", 17) == 0)) {
            nc(&j.c, p, "symbol table in an unusual form");
            goto done;
        }
    }
    if (bj_value(&j, &p, end, 0) < 0) goto done;
    if (p != end) { nc(&j.c, p, "more than one top-level value"); goto done; }
    result = PyUnicode_DecodeUTF8((const char *)j.out.p, j.out.len, "strict");
done:
    PyMem_Free(j.c.symbols);
    buf_free(&j.out);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* The sealer's values, written as binary Ion from their parts (live/sealer.py's Python path is the reference)
 *
 *   json_ion(text) -> (bytes, hash)        the Ion reading of a stored jsonb document's text (live/reading.py)
 *   revision_metadata(id, version, txTime text, txId) -> (bytes, hash)
 *   tx_info(documents) -> (bytes, hash, json)   transactionInfo of a block without statements
 *
 * Each writes exactly the bytes ``encode`` writes for the value the Python path builds (IVM, one local
 * symbol table with the field names in order of first use, the value), and hashes those bytes with
 * hash_binary's reader.  Anything outside what they state for certain (a number beyond 18 digits, keys
 * not in jsonb's order, a lone surrogate, an unusual timestamp, ...) raises Declined, and the caller
 * takes the Python path, which decides. */

static PyObject *Declined;

static int decline(const char *why) {
    PyErr_SetString(Declined, why);
    return -1;
}

/* A binary Ion writer with its own symbol table: field names interned in order of first use. */
typedef struct {
    buf_t out;
    buf_t arena;           /* the symbols' texts, back to back */
    Py_ssize_t *offs, *lens; /* symbol i (sid 10 + i): arena[offs[i], offs[i] + lens[i]) */
    Py_ssize_t n, cap;
    int32_t *slots; /* open addressing: index + 1 of a symbol, 0 empty */
    Py_ssize_t nslots;
} iw_t;

static void iw_free(iw_t *w) {
    buf_free(&w->out);
    buf_free(&w->arena);
    PyMem_Free(w->offs);
    PyMem_Free(w->lens);
    PyMem_Free(w->slots);
}

static uint64_t fnv1a(const unsigned char *s, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* Symbol i's text (never a null pointer: the arena is empty while every symbol so far is "") */
static const unsigned char *iw_text(const iw_t *w, Py_ssize_t i) {
    return w->lens[i] ? w->arena.p + w->offs[i] : (const unsigned char *)"";
}

static int iw_rehash(iw_t *w, Py_ssize_t nslots) {
    int32_t *slots = PyMem_Calloc((size_t)nslots, sizeof(int32_t));
    if (!slots) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < w->n; i++) {
        Py_ssize_t s = (Py_ssize_t)(fnv1a(iw_text(w, i), w->lens[i]) & (uint64_t)(nslots - 1));
        while (slots[s]) s = (s + 1) & (nslots - 1);
        slots[s] = (int32_t)(i + 1);
    }
    PyMem_Free(w->slots);
    w->slots = slots;
    w->nslots = nslots;
    return 0;
}

/* The sid of a field name (UTF-8), a new one (10, 11, ...) on its first use, as encode's enc_sid numbers them. */
static int iw_sid(iw_t *w, const unsigned char *s, Py_ssize_t n, uint64_t *sid) {
    if (!s) s = (const unsigned char *)""; /* an empty key read into a still empty buffer */
    if (w->n >= 1 << 24) return decline("too many field names");
    if (!w->slots && iw_rehash(w, 16) < 0) return -1;
    Py_ssize_t slot = (Py_ssize_t)(fnv1a(s, n) & (uint64_t)(w->nslots - 1));
    while (w->slots[slot]) {
        Py_ssize_t i = w->slots[slot] - 1;
        if (w->lens[i] == n && memcmp(iw_text(w, i), s, (size_t)n) == 0) {
            *sid = 10 + (uint64_t)i;
            return 0;
        }
        slot = (slot + 1) & (w->nslots - 1);
    }
    if (w->n == w->cap) {
        Py_ssize_t cap = w->cap ? w->cap * 2 : 16;
        Py_ssize_t *offs = PyMem_Realloc(w->offs, (size_t)cap * sizeof(Py_ssize_t));
        if (!offs) { PyErr_NoMemory(); return -1; }
        w->offs = offs;
        Py_ssize_t *lens = PyMem_Realloc(w->lens, (size_t)cap * sizeof(Py_ssize_t));
        if (!lens) { PyErr_NoMemory(); return -1; }
        w->lens = lens;
        w->cap = cap;
    }
    w->offs[w->n] = w->arena.len;
    w->lens[w->n] = n;
    if (buf_put(&w->arena, s, n) < 0) return -1;
    *sid = 10 + (uint64_t)w->n;
    w->n++;
    if (w->n * 2 > w->nslots) return iw_rehash(w, w->nslots * 2);
    w->slots[slot] = (int32_t)w->n;
    return 0;
}

static int iw_field(iw_t *w, const char *name) {
    uint64_t sid;
    if (iw_sid(w, (const unsigned char *)name, (Py_ssize_t)strlen(name), &sid) < 0) return -1;
    return buf_varuint(&w->out, sid);
}

static int iw_string(buf_t *b, const unsigned char *s, Py_ssize_t n) {
    return put_header(b, 0x8, (uint64_t)n) < 0 ? -1 : buf_put(b, s, n);
}

/* (IVM + local symbol table + the value written, its Ion hash) as py_encode frames it and py_hash_binary hashes it;
 * a value hash_binary will not state a hash for is declined. */
static PyObject *iw_finish(iw_t *w, PyObject *json) {
    buf_t whole = {0}, ser = {0};
    PyObject *result = NULL;
    if (buf_put(&whole, "\xE0\x01\x00\xEA", 4) < 0) goto done;
    if (w->n) {
        Py_ssize_t ann = whole.len;
        if (buf_byte(&whole, 0) < 0 || buf_put(&whole, "\x81\x83", 2) < 0) goto done;
        Py_ssize_t st = whole.len;
        if (buf_byte(&whole, 0) < 0 || buf_byte(&whole, 0x87) < 0) goto done;
        Py_ssize_t list = whole.len;
        if (buf_byte(&whole, 0) < 0) goto done;
        for (Py_ssize_t i = 0; i < w->n; i++)
            if (iw_string(&whole, iw_text(w, i), w->lens[i]) < 0) goto done;
        if (close_header(&whole, list, 0xB) < 0 || close_header(&whole, st, 0xD) < 0 ||
            close_header(&whole, ann, 0xE) < 0)
            goto done;
    }
    if (buf_put(&whole, w->out.p, w->out.len) < 0) goto done;
    const unsigned char *value_at = NULL;
    hctx_t c = {whole.p, NULL, 0, 64, 0, 0};
    int rc = walk_top(&c, whole.p, whole.p + whole.len, &ser, &value_at);
    PyMem_Free(c.symbols);
    if (rc < 0) {
        if (PyErr_ExceptionMatches(NonCanonical)) {
            PyErr_Clear();
            decline("the hasher does not state a hash for these bytes");
        }
        goto done;
    }
    unsigned char digest[32];
    sha256_of(ser.p, (size_t)ser.len, digest);
    result = json ? Py_BuildValue("y#y#O", whole.p, whole.len, digest, (Py_ssize_t)32, json)
                  : Py_BuildValue("y#y#", whole.p, whole.len, digest, (Py_ssize_t)32);
done:
    buf_free(&whole);
    buf_free(&ser);
    return result;
}

/* --- json_ion: a jsonb document's text read as Ion (objects -> structs, numbers with a point or an exponent ->
 * decimals of exactly that scale, without -> ints; strings, bools, null) */

typedef struct {
    const unsigned char *p, *end;
    iw_t w;
    buf_t text; /* one string, unescaped */
} jr_t;

static void jr_ws(jr_t *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out) {
    if (end - p < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static int put_utf8(buf_t *b, unsigned cp) {
    unsigned char u[4];
    int n;
    if (cp < 0x80) { u[0] = (unsigned char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (unsigned char)(0xC0 | cp >> 6); u[1] = (unsigned char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | cp >> 12); u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | cp >> 18); u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (unsigned char)(0x80 | (cp & 0x3F)); n = 4;
    }
    return buf_put(b, u, n);
}

/* A JSON string at r->p (its opening quote) into r->text, unescaped. */
static int jr_string(jr_t *r) {
    r->text.len = 0;
    if (r->p >= r->end || *r->p != '"') return decline("not a string");
    r->p++;
    for (;;) {
        const unsigned char *run = r->p;
        while (r->p < r->end && *r->p != '"' && *r->p != '\\' && *r->p >= 0x20) r->p++;
        if (buf_put(&r->text, run, r->p - run) < 0) return -1;
        if (r->p >= r->end) return decline("unterminated string");
        unsigned char c = *r->p;
        if (c == '"') { r->p++; return 0; }
        if (c < 0x20) return decline("control character in a string");
        /* an escape */
        if (r->end - r->p < 2) return decline("unterminated escape");
        unsigned char e = r->p[1];
        r->p += 2;
        const char *simple = NULL;
        switch (e) {
        case '"': simple = "\""; break;
        case '\\': simple = "\\"; break;
        case '/': simple = "/"; break;
        case 'b': simple = "\b"; break;
        case 'f': simple = "\f"; break;
        case 'n': simple = "\n"; break;
        case 'r': simple = "\r"; break;
        case 't': simple = "\t"; break;
        case 'u': break;
        default: return decline("unknown escape");
        }
        if (simple) {
            if (buf_byte(&r->text, (unsigned char)simple[0]) < 0) return -1;
            continue;
        }
        unsigned cp, lo;
        if (hex4(r->p, r->end, &cp) < 0) return decline("bad \\u escape");
        r->p += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return decline("lone low surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || hex4(r->p + 2, r->end, &lo) < 0 ||
                lo < 0xDC00 || lo > 0xDFFF)
                return decline("lone high surrogate");
            r->p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (put_utf8(&r->text, cp) < 0) return -1;
    }
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* A JSON number: an int without a point or an exponent, else a decimal with exactly the digits and scale shown
 * (Python's Decimal of the text); 18 significant digits at most, else declined. */
static int jr_number(jr_t *r) {
    const unsigned char *p = r->p, *end = r->end;
    int negative = 0;
    if (p < end && *p == '-') { negative = 1; p++; }
    if (p >= end || !is_digit(*p)) return decline("not a number");
    uint64_t coef = 0;
    int sig = 0; /* significant digits so far (leading zeros do not count) */
    Py_ssize_t frac = 0;
    int is_decimal = 0;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) return decline("leading zero");
    } else {
        while (p < end && is_digit(*p)) {
            if (++sig > 18) return decline("more than 18 digits");
            coef = coef * 10 + (uint64_t)(*p++ - '0');
        }
    }
    if (p < end && *p == '.') {
        is_decimal = 1;
        p++;
        if (p >= end || !is_digit(*p)) return decline("no digit after the point");
        while (p < end && is_digit(*p)) {
            if (coef || *p != '0') {
                if (++sig > 18) return decline("more than 18 digits");
            }
            coef = coef * 10 + (uint64_t)(*p++ - '0');
            if (++frac > 100000) return decline("too many fraction digits");
        }
    }
    int64_t e = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_decimal = 1;
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p >= end || !is_digit(*p)) return decline("no digit in the exponent");
        while (p < end && is_digit(*p)) {
            e = e * 10 + (*p++ - '0');
            if (e > 1000000000) return decline("exponent out of range");
        }
        if (eneg) e = -e;
    }
    r->p = p;
    buf_t *b = &r->w.out;
    if (!is_decimal) {
        if (negative && coef) return put_typed_uint(b, 0x3, coef);
        return put_typed_uint(b, 0x2, coef); /* -0 is the int 0 */
    }
    int64_t exponent = e - frac;
    if (!coef && exponent == 0 && !negative) return buf_byte(b, 0x50);
    Py_ssize_t start = b->len;
    if (buf_byte(b, 0) < 0 || buf_varint(b, exponent) < 0) return -1;
    if ((coef || negative) && put_signed_magnitude(b, negative, coef) < 0) return -1;
    return close_header(b, start, 0x5);
}

static int jr_literal(jr_t *r, const char *word, unsigned char byte) {
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) return decline("unknown literal");
    r->p += n;
    return buf_byte(&r->w.out, byte);
}

static int jr_value(jr_t *r, int depth);

/* An object: its keys must come as jsonb prints them (shorter first, then by bytes, no repeat), which also rules
 * out repeated keys (amazon-ion's struct would group those). */
static int jr_object(jr_t *r, int depth) {
    buf_t *b = &r->w.out;
    Py_ssize_t start = b->len;
    if (buf_byte(b, 0) < 0) return -1;
    r->p++;
    jr_ws(r);
    buf_t prev = {0};
    int have_prev = 0, rc = -1;
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        rc = close_header(b, start, 0xD);
        goto done;
    }
    for (;;) {
        jr_ws(r);
        if (jr_string(r) < 0) goto done;
        if (have_prev) {
            int order = prev.len != r->text.len ? (prev.len < r->text.len ? -1 : 1)
                        : prev.len ? memcmp(prev.p, r->text.p, (size_t)prev.len) : 0; /* two empty keys: equal */
            if (order >= 0) { decline("keys not in jsonb's order"); goto done; }
        }
        prev.len = 0;
        if (buf_put(&prev, r->text.p, r->text.len) < 0) goto done;
        have_prev = 1;
        uint64_t sid;
        if (iw_sid(&r->w, r->text.p, r->text.len, &sid) < 0 || buf_varuint(b, sid) < 0) goto done;
        jr_ws(r);
        if (r->p >= r->end || *r->p != ':') { decline("no colon"); goto done; }
        r->p++;
        if (jr_value(r, depth + 1) < 0) goto done;
        jr_ws(r);
        if (r->p < r->end && *r->p == ',') { r->p++; continue; }
        if (r->p < r->end && *r->p == '}') { r->p++; break; }
        decline("bad object");
        goto done;
    }
    rc = close_header(b, start, 0xD);
done:
    buf_free(&prev);
    return rc;
}

static int jr_array(jr_t *r, int depth) {
    buf_t *b = &r->w.out;
    Py_ssize_t start = b->len;
    if (buf_byte(b, 0) < 0) return -1;
    r->p++;
    jr_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return close_header(b, start, 0xB);
    }
    for (;;) {
        if (jr_value(r, depth + 1) < 0) return -1;
        jr_ws(r);
        if (r->p < r->end && *r->p == ',') { r->p++; continue; }
        if (r->p < r->end && *r->p == ']') { r->p++; break; }
        return decline("bad array");
    }
    return close_header(b, start, 0xB);
}

static int jr_value(jr_t *r, int depth) {
    if (depth > MAX_DEPTH) return decline("nested too deeply");
    jr_ws(r);
    if (r->p >= r->end) return decline("no value");
    switch (*r->p) {
    case '{': return jr_object(r, depth);
    case '[': return jr_array(r, depth);
    case '"': return jr_string(r) < 0 ? -1 : iw_string(&r->w.out, r->text.p, r->text.len);
    case 't': return jr_literal(r, "true", 0x11);
    case 'f': return jr_literal(r, "false", 0x10);
    case 'n': return jr_literal(r, "null", 0x0F);
    default: return jr_number(r);
    }
}

static PyObject *py_json_ion(PyObject *self, PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "json_ion() takes a str");
        return NULL;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s) {
        PyErr_Clear(); /* lone surrogates: the Python reading decides */
        decline("text is not UTF-8");
        return NULL;
    }
    jr_t r = {(const unsigned char *)s, (const unsigned char *)s + n, {{0}}, {0}};
    PyObject *result = NULL;
    if (jr_value(&r, 0) == 0) {
        jr_ws(&r);
        if (r.p != r.end) decline("text after the value");
        else result = iw_finish(&r.w, NULL);
    }
    iw_free(&r.w);
    buf_free(&r.text);
    return result;
}

/* --- revision_metadata: {id, version, txTime, txId}, txTime from the text the trigger wrote (2026-12-01T09:30:00.123Z) */

static int two(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

static int put_utc_millis(buf_t *b, const char *s, Py_ssize_t n) {
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (n != 24) return decline("txTime is not yyyy-mm-ddThh:mm:ss.sssZ");
    for (int i = 0; i < 24; i++)
        if (shape[i] == 'd' ? !is_digit((unsigned char)s[i]) : s[i] != shape[i])
            return decline("txTime is not yyyy-mm-ddThh:mm:ss.sssZ");
    int year = two(s) * 100 + two(s + 2), month = two(s + 5), day = two(s + 8);
    int hour = two(s + 11), minute = two(s + 14), second = two(s + 17);
    int ms = (s[20] - '0') * 100 + two(s + 21);
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 59)
        return decline("txTime out of range");
    Py_ssize_t start = b->len;
    if (buf_byte(b, 0) < 0 || buf_varint(b, 0) < 0 || buf_varuint(b, (uint64_t)year) < 0 ||
        buf_varuint(b, (uint64_t)month) < 0 || buf_varuint(b, (uint64_t)day) < 0 ||
        buf_varuint(b, (uint64_t)hour) < 0 || buf_varuint(b, (uint64_t)minute) < 0 ||
        buf_varuint(b, (uint64_t)second) < 0 || buf_varint(b, -3) < 0)
        return -1;
    if (ms && put_signed_magnitude(b, 0, (uint64_t)ms) < 0) return -1;
    return close_header(b, start, 0x6);
}

static int utf8_of(PyObject *s, const char **out, Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(s)) return decline("not a str");
    *out = PyUnicode_AsUTF8AndSize(s, n);
    if (!*out) {
        PyErr_Clear();
        return decline("text is not UTF-8");
    }
    return 0;
}

static PyObject *py_revision_metadata(PyObject *self, PyObject *args) {
    PyObject *doc, *version, *tx_time, *tx_id;
    if (!PyArg_ParseTuple(args, "OOOO", &doc, &version, &tx_time, &tx_id)) return NULL;
    iw_t w = {{0}};
    PyObject *result = NULL;
    const char *d, *t, *x;
    Py_ssize_t dn, tn, xn;
    if (utf8_of(doc, &d, &dn) < 0 || utf8_of(tx_time, &t, &tn) < 0 || utf8_of(tx_id, &x, &xn) < 0) goto done;
    if (!PyLong_CheckExact(version)) { decline("version is not an int"); goto done; }
    long long v = PyLong_AsLongLong(version);
    if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); decline("version out of range"); goto done; }
    if (v < 0) { decline("negative version"); goto done; }
    Py_ssize_t start = w.out.len;
    if (buf_byte(&w.out, 0) < 0) goto done;
    if (iw_field(&w, "id") < 0 || iw_string(&w.out, (const unsigned char *)d, dn) < 0) goto done;
    if (iw_field(&w, "version") < 0 || put_typed_uint(&w.out, 0x2, (uint64_t)v) < 0) goto done;
    if (iw_field(&w, "txTime") < 0 || put_utc_millis(&w.out, t, tn) < 0) goto done;
    if (iw_field(&w, "txId") < 0 || iw_string(&w.out, (const unsigned char *)x, xn) < 0) goto done;
    if (close_header(&w.out, start, 0xD) < 0) goto done;
    result = iw_finish(&w, NULL);
done:
    iw_free(&w);
    return result;
}

/* --- tx_info: {statements: [], documents: {id: {tableName, tableId, statements: []}, ...}} and its jsonb text */

typedef struct {
    const char *id, *name, *table;
    Py_ssize_t idn, namen, tablen;
} txdoc_t;

static int cmp_txdoc(const void *a, const void *b) {
    const txdoc_t *x = a, *y = b;
    if (x->idn != y->idn) return x->idn < y->idn ? -1 : 1;
    return memcmp(x->id, y->id, (size_t)x->idn);
}

static PyObject *py_tx_info(PyObject *self, PyObject *arg) {
    if (!PyList_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "tx_info() takes a list of (document id, table name, table id)");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    iw_t w = {{0}};
    buf_t json = {0};
    PyObject *result = NULL, *text = NULL;
    txdoc_t *docs = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(txdoc_t));
    if (!docs) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(arg, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3) { decline("not a 3-tuple"); goto done; }
        if (utf8_of(PyTuple_GET_ITEM(item, 0), &docs[i].id, &docs[i].idn) < 0 ||
            utf8_of(PyTuple_GET_ITEM(item, 1), &docs[i].name, &docs[i].namen) < 0 ||
            utf8_of(PyTuple_GET_ITEM(item, 2), &docs[i].table, &docs[i].tablen) < 0)
            goto done;
        if (memchr(docs[i].id, 0, (size_t)docs[i].idn)) { decline("U+0000 in a document id"); goto done; }
    }
    Py_ssize_t top = w.out.len;
    if (buf_byte(&w.out, 0) < 0 || iw_field(&w, "statements") < 0 || buf_byte(&w.out, 0xB0) < 0 ||
        iw_field(&w, "documents") < 0)
        goto done;
    Py_ssize_t documents = w.out.len;
    if (buf_byte(&w.out, 0) < 0) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t sid;
        if (iw_sid(&w, (const unsigned char *)docs[i].id, docs[i].idn, &sid) < 0) goto done;
        if (buf_varuint(&w.out, sid) < 0) goto done;
        Py_ssize_t doc = w.out.len;
        if (buf_byte(&w.out, 0) < 0 || iw_field(&w, "tableName") < 0 ||
            iw_string(&w.out, (const unsigned char *)docs[i].name, docs[i].namen) < 0 || iw_field(&w, "tableId") < 0 ||
            iw_string(&w.out, (const unsigned char *)docs[i].table, docs[i].tablen) < 0 ||
            iw_field(&w, "statements") < 0 || buf_byte(&w.out, 0xB0) < 0 || close_header(&w.out, doc, 0xD) < 0)
            goto done;
    }
    if (close_header(&w.out, documents, 0xD) < 0 || close_header(&w.out, top, 0xD) < 0) goto done;
    /* the jsonb text: keys shorter first, then by bytes; a document twice (amazon-ion's struct would group its
     * fields) is declined */
    if (n > 1) qsort(docs, (size_t)n, sizeof(txdoc_t), cmp_txdoc);
    for (Py_ssize_t i = 1; i < n; i++)
        if (cmp_txdoc(&docs[i - 1], &docs[i]) == 0) { decline("a document twice in one transaction"); goto done; }
    if (buf_put(&json, "{\"documents\": {", 15) < 0) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i && buf_put(&json, ", ", 2) < 0) goto done;
        if (json_string_utf8(&json, (const unsigned char *)docs[i].id, docs[i].idn) < 0 ||
            buf_put(&json, ": {\"tableId\": ", 14) < 0 ||
            json_string_utf8(&json, (const unsigned char *)docs[i].table, docs[i].tablen) < 0 ||
            buf_put(&json, ", \"tableName\": ", 15) < 0 ||
            json_string_utf8(&json, (const unsigned char *)docs[i].name, docs[i].namen) < 0 ||
            buf_put(&json, ", \"statements\": []}", 19) < 0)
            goto done;
    }
    if (buf_put(&json, "}, \"statements\": []}", 20) < 0) goto done;
    text = PyUnicode_DecodeUTF8((const char *)json.p, json.len, "strict");
    if (!text) goto done;
    result = iw_finish(&w, text);
done:
    Py_XDECREF(text);
    PyMem_Free(docs);
    iw_free(&w);
    buf_free(&json);
    return result;
}

/* --- dot: QLDB's hash combinator (verify/hashes.py's dot is the reference) */

/* a <= b as QLDB orders hashes: compared from the last byte to the first, each byte as a signed integer; on a common
 * suffix the shorter is the smaller (Python's comparison of the reversed, sign-flipped bytes). */
static int qldb_le(const unsigned char *a, Py_ssize_t an, const unsigned char *b, Py_ssize_t bn) {
    Py_ssize_t n = an < bn ? an : bn;
    for (Py_ssize_t i = 1; i <= n; i++) {
        signed char x = (signed char)a[an - i], y = (signed char)b[bn - i];
        if (x != y) return x < y;
    }
    return an <= bn;
}

static PyObject *py_dot(PyObject *self, PyObject *args) {
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "SS", &a, &b)) return NULL;
    Py_ssize_t an = PyBytes_GET_SIZE(a), bn = PyBytes_GET_SIZE(b);
    if (!an) return Py_NewRef(b);
    if (!bn) return Py_NewRef(a);
    const unsigned char *ap = (const unsigned char *)PyBytes_AS_STRING(a), *bp = (const unsigned char *)PyBytes_AS_STRING(b);
    if (!qldb_le(ap, an, bp, bn)) {
        const unsigned char *tp = ap; ap = bp; bp = tp;
        Py_ssize_t tn = an; an = bn; bn = tn;
    }
    SHA256_CTX ctx;
    unsigned char digest[32];
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, ap, (size_t)an);
    SHA256_Update(&ctx, bp, (size_t)bn);
    SHA256_Final(digest, &ctx);
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

/* ------------------------------------------------------------------------------------------ */

static PyObject *py_setup(PyObject *self, PyObject *args) {
    PyObject *d;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &d)) return NULL;
    static const char *names[] = {"IonPyDict", "IonPyList", "IonPyText", "IonPySymbol", "IonPyInt", "IonPyBool",
                                  "IonPyFloat", "IonPyDecimal", "IonPyTimestamp", "IonPyBytes", "IonPyNull",
                                  "SymbolToken", "Timestamp", "Decimal", "SYMBOL", "SEXP", "CLOB", "NULL_CODES"};
    PyObject **slots[] = {&T_IonPyDict, &T_IonPyList, &T_IonPyText, &T_IonPySymbol, &T_IonPyInt, &T_IonPyBool,
                          &T_IonPyFloat, &T_IonPyDecimal, &T_IonPyTimestamp, &T_IonPyBytes, &T_IonPyNull,
                          &T_SymbolToken, &T_Timestamp, &T_Decimal, &ION_SYMBOL, &ION_SEXP, &ION_CLOB, &NULL_CODES};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        PyObject *v = PyDict_GetItemString(d, names[i]);
        if (!v) return PyErr_Format(PyExc_KeyError, "setup() needs %s", names[i]);
        Py_XSETREF(*slots[i], Py_NewRef(v));
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", py_setup, METH_VARARGS, "Give the module amazon-ion's classes (called once by qldb_migrate.native)."},
    {"encode", py_encode, METH_O, "Binary Ion of a value amazon-ion parsed."},
    {"hash_binary", (PyCFunction)(void (*)(void))py_hash_binary, METH_VARARGS | METH_KEYWORDS,
     "Ion Hash (SHA-256) of the one value in canonical binary Ion; NonCanonical otherwise."},
    {"binary_json", (PyCFunction)(void (*)(void))py_binary_json, METH_VARARGS | METH_KEYWORDS,
     "jsoncanon's canonical JSON of the one value in canonical binary Ion; NonCanonical otherwise."},
    {"stream_record", py_stream_record, METH_O,
     "A QLDB stream record's identifying fields, every byte checked; None where the reader must decide."},
    {"stream_details", py_stream_details, METH_O,
     "A REVISION_DETAILS record's revision without its data, and the data's Ion hash; None to decline."},
    {"canonical_json", py_canonical_json, METH_VARARGS, "jsoncanon's canonical JSON, with a Python fallback."},
    {"copy_tuple", py_copy_tuple, METH_VARARGS, "One binary COPY tuple: (kinds, row, field count) -> bytes."},
    {"dot", py_dot, METH_VARARGS, "QLDB's dot of two hashes (bytes): SHA-256 of the smaller then the larger."},
    {"json_ion", py_json_ion, METH_O, "(binary Ion, Ion hash) of a jsonb document's text read as Ion; Declined else."},
    {"revision_metadata", py_revision_metadata, METH_VARARGS,
     "(binary Ion, Ion hash) of a revision's metadata {id, version, txTime, txId}; Declined else."},
    {"tx_info", py_tx_info, METH_O,
     "(binary Ion, Ion hash, jsonb text) of the transactionInfo of a block without statements; Declined else."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    PyDateTime_IMPORT;
    if (!PyDateTimeAPI) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    NonCanonical = PyErr_NewExceptionWithDoc("qldb_migrate._native.NonCanonical",
                                             "Binary Ion outside the subset hash_binary states a hash for.",
                                             PyExc_ValueError, NULL);
    if (!NonCanonical || PyModule_AddObjectRef(m, "NonCanonical", NonCanonical) < 0) return NULL;
    Declined = PyErr_NewExceptionWithDoc("qldb_migrate._native.Declined",
                                         "A value the sealer's C writers leave to the Python path.", PyExc_ValueError,
                                         NULL);
    if (!Declined || PyModule_AddObjectRef(m, "Declined", Declined) < 0) return NULL;
    S_store = PyUnicode_InternFromString("_IonPyDict__store");
    S_annotations = PyUnicode_InternFromString("ion_annotations");
    S_ion_type = PyUnicode_InternFromString("ion_type");
    S_as_tuple = PyUnicode_InternFromString("as_tuple");
    S_precision = PyUnicode_InternFromString("precision");
    S_fractional_seconds = PyUnicode_InternFromString("fractional_seconds");
    S_fractional_precision = PyUnicode_InternFromString("fractional_precision");
    S_utcoffset = PyUnicode_InternFromString("utcoffset");
    return m;
}
