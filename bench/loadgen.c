/*
 * Native load generator for `npm run bench` (bench/run.ts, `--loadgen native`, the default for SSE and --ws cases).
 *
 * What bench/loadgen.js does for `proto` sse and ws, in C with epoll and no library beyond libc, so that the load generator
 * costs a fraction of a core where the JS one needed a whole one at 10k x 20 msg/s (issue 27). Compiled by the bench
 * at run time (bench/native-loadgen.ts: `cc -O2`, cached by the source's hash in the temp directory) and spawned
 * directly (its CPU is its own process's, as the JS one's is).
 *
 * Protocol: commands on stdin, one per line; every answer is one JSON line on stdout with the same `cmd` and fields
 * loadgen.js sends over IPC, so bench/run.ts reads both the same way.
 *   connect <port> <concurrency> <needReady 0|1> <timeoutMs> <n> <host> [sse|ws]   then n lines, one path each
 *                                          -> {"cmd":"connected","ok","failed","ms","firstErr"}
 *   arm <messages>                         -> {"cmd":"armed","open"}
 *   status <resetInterval 0|1>             -> {"cmd":"status","received","duplicates","lastRecvMs","open",
 *                                              "closedUnexpectedly","cpuMs","interval":{"n","p50","p99","max"}}
 *   report                                 -> {"cmd":"report","received","duplicates","unknown","firstRecvMs",
 *                                              "lastRecvMs","closedUnexpectedly","incompleteConnections",
 *                                              "minPerConnection","p50","p90","p99","max","cpuMs"}
 *   close                                  -> {"cmd":"closed"} (every socket reset: RST, no TIME_WAIT)
 *   time                                   -> {"cmd":"time","monoMs"}: its CLOCK_MONOTONIC now, in ms
 *   exit, or end of stdin                  -> exits
 * On start it answers {"cmd":"hello","pid","monoMs"}. Before the first command the bench asks `time` and checks that
 * the answer lies between its own process.hrtime() (the same clock) before the question and after the answer.
 * `loadgen --self-test` instead feeds a fixed chunked SSE stream, the same plain, and the same messages as WebSocket
 * frames through the parsers at every split size from 1 to 64 bytes and at once, checks the counts, and prints
 * {"selfTest":"ok"} (exit 0) or what differed (exit 1).
 *
 * `proto` ws (our /live, the `ws` reference): the upgrade with loadgen.js's Sec-WebSocket-Key, 101 expected, unmasked
 * server frames (7-, 16- and 64-bit lengths) parsed across reads, pings answered, client frames masked with the zero
 * key; with needReady `{"action":"ping"}` is sent and the connection is ready at our `"pong"`; every text message is
 * searched for `"n":<seq>,"t":<ms>` as SSE frames are.
 *
 * Sockets are edge-triggered in epoll and read with recv() into one shared buffer; nearly all the CPU left is the
 * kernel's (the read, and on loopback the ACK it sends, processed in the reader's context), which loadgen.js pays too.
 *
 * Per connection: GET <path> with Accept: text/event-stream (and nothing else, as loadgen.js); the status line and
 * `Transfer-Encoding: chunked` from the head; chunked decoding; SSE frames are complete at their blank line, and in
 * complete frames `event: ready` (servers that need it: ours) and every `"n":<seq>,"t":<ms>` the publisher embeds
 * (t: the publisher's process.hrtime() in ms, CLOCK_MONOTONIC) are found. A frame's latency is the time of the read
 * that completed it minus t, kept in 0.1 ms buckets; one byte per message per connection detects loss and duplicates.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_MS 0.1
#define MAX_BUCKET 1200000 /* 120 s */
#define READ_BUF (256 * 1024)
#define MAX_HEAD 16384
#define STDIN_TAG UINT64_MAX

enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_END };

typedef struct {
  int fd;
  int phase; /* 0: response head, 1: body */
  int chunked, cstate;
  uint64_t csize; /* chunk size being read, then bytes left in the chunk */
  char *head;
  size_t hlen, hcap;
  char *carry; /* SSE text after the last complete frame */
  size_t clen, ccap;
  int ready, need_ready, done, settled, connected;
  int ws; /* a WebSocket (`proto` ws: our /live, the `ws` reference) instead of an SSE stream */
  double deadline;
  uint8_t *seen;
} Conn;

static uint32_t *hist, *hist_iv;
static uint64_t hist_n, hist_iv_n;
static double max_lat, max_iv;
static Conn *conns;
static size_t nconns;
static long messages;
static uint64_t received, duplicates, unknown_n, closed_unexpectedly;
static double first_recv, last_recv;
static int armed;
static struct rusage cpu_start;
static int ep = -1;
static char *rbuf, *scratch;
static size_t scratch_cap;

/* The connect phase. */
static int connecting;
static size_t next_conn, settled_n, failed_n, inflight;
static size_t *inflight_idx;
static size_t concurrency;
static char **paths;
static char host[256];
static int port, timeout_ms;
static double connect_started;
static char first_err[256];

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_ms(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  double a = (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e3 + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e3;
  double b = (cpu_start.ru_utime.tv_sec + cpu_start.ru_stime.tv_sec) * 1e3 + (cpu_start.ru_utime.tv_usec + cpu_start.ru_stime.tv_usec) / 1e3;
  return a - b;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q && n) {
    fprintf(stderr, "loadgen: out of memory\n");
    exit(70);
  }
  return q;
}

static void append(char **buf, size_t *len, size_t *cap, const char *src, size_t n) {
  if (*len + n > *cap) {
    size_t c = *cap ? *cap : 256;
    while (c < *len + n) c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = c;
  }
  memcpy(*buf + *len, src, n);
  *len += n;
}

static void record(Conn *c, long seq, double lat, int lat_ok, double t) {
  if (!armed || seq < 0 || seq >= messages || !c->seen) {
    unknown_n++;
    return;
  }
  if (c->seen[seq]) {
    duplicates++;
    return;
  }
  c->seen[seq] = 1;
  received++;
  if (!first_recv) first_recv = t;
  last_recv = t;
  if (!lat_ok) return;
  long b = lround(lat / BUCKET_MS);
  if (b < 0) b = 0;
  if (b > MAX_BUCKET) b = MAX_BUCKET;
  hist[b]++;
  hist_iv[b]++;
  hist_n++;
  hist_iv_n++;
  if (lat > max_lat) max_lat = lat;
  if (lat > max_iv) max_iv = lat;
}

/* Finds `"n":<seq>,"t":<sent>` in text[0, end) (the number may run past end) and records each, as loadgen.js scan(). */
static void scan(Conn *c, const char *text, size_t end, size_t len, double t) {
  const char *p = memmem(text, end, "\"n\":", 4);
  const char *lim = text + len;
  while (p && p < text + end) {
    const char *s = p + 4;
    const char *comma = memchr(s, ',', lim - s);
    if (!comma) {
      record(c, -1, 0, 0, t);
      return;
    }
    long seq = s < comma ? 0 : -1;
    for (const char *k = s; k < comma; k++) {
      if (*k < '0' || *k > '9' || seq > 1000000000L) {
        seq = -1;
        break;
      }
      seq = seq * 10 + (*k - '0');
    }
    const char *q = comma + 5; /* ,"t": */
    const char *stop = q < lim ? memchr(q, ',', lim - q) : NULL;
    if (!stop) {
      record(c, seq, 0, 0, t);
      return;
    }
    double sent = 0, scale = 0;
    int ok = q < stop;
    for (const char *k = q; k < stop; k++) {
      if (*k == '.' && scale == 0) scale = 1;
      else if (*k >= '0' && *k <= '9') {
        if (scale) {
          scale /= 10;
          sent += (*k - '0') * scale;
        } else sent = sent * 10 + (*k - '0');
      } else {
        ok = 0;
        break;
      }
    }
    record(c, seq, t - sent, ok, t);
    p = stop < text + end ? memmem(stop, text + end - stop, "\"n\":", 4) : NULL;
  }
}

static void mark_ready(Conn *c);
static void fail_conn(Conn *c, const char *why);

/* SSE text `text[0, len)` (the carry already in front): complete frames are handled, the rest carried. */
static void on_text(Conn *c, const char *text, size_t len, size_t fresh_from, double t) {
  /* The last blank line is in the new text or spans its first byte: the carry holds no complete frame. */
  size_t lo = fresh_from ? fresh_from - 1 : 0;
  size_t end = (size_t)-1;
  for (size_t i = len >= 2 ? len - 2 : 0; len >= 2 && i + 1 > lo; i--) {
    if (text[i] == '\n' && text[i + 1] == '\n') {
      end = i;
      break;
    }
    if (i == 0) break;
  }
  if (end == (size_t)-1) {
    if (text != c->carry) {
      c->clen = 0;
      append(&c->carry, &c->clen, &c->ccap, text, len);
    }
    return;
  }
  if (!c->ready && c->need_ready && memmem(text, end, "event: ready", 12)) mark_ready(c);
  scan(c, text, end, len, t);
  size_t rest = len - (end + 2);
  if (text == c->carry) {
    memmove(c->carry, c->carry + end + 2, rest);
    c->clen = rest;
  } else {
    c->clen = 0;
    if (rest) append(&c->carry, &c->clen, &c->ccap, text + end + 2, rest);
  }
}

static void ensure_scratch(size_t n) {
  if (n > scratch_cap) {
    scratch = xrealloc(scratch, n);
    scratch_cap = n;
  }
}

/* Response body bytes: dechunked (when chunked) behind the carry, then on_text. */
static void on_body(Conn *c, const char *s, size_t n, double t) {
  if (!n) return;
  if (!c->chunked) {
    if (!c->clen) {
      on_text(c, s, n, 0, t);
      return;
    }
    size_t old = c->clen;
    append(&c->carry, &c->clen, &c->ccap, s, n);
    on_text(c, c->carry, c->clen, old, t);
    return;
  }
  ensure_scratch(c->clen + n);
  size_t out = c->clen;
  if (c->clen) memcpy(scratch, c->carry, c->clen);
  for (size_t i = 0; i < n;) {
    char ch = s[i];
    switch (c->cstate) {
      case CH_SIZE:
        if (ch >= '0' && ch <= '9') c->csize = c->csize * 16 + (ch - '0');
        else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') c->csize = c->csize * 16 + ((ch | 0x20) - 'a' + 10);
        else if (ch == '\r') c->cstate = CH_SIZE_LF;
        else if (ch == '\n') c->cstate = c->csize ? CH_DATA : CH_END;
        else c->cstate = CH_EXT;
        i++;
        break;
      case CH_EXT:
        if (ch == '\r') c->cstate = CH_SIZE_LF;
        else if (ch == '\n') c->cstate = c->csize ? CH_DATA : CH_END;
        i++;
        break;
      case CH_SIZE_LF:
        c->cstate = c->csize ? CH_DATA : CH_END;
        i++;
        break;
      case CH_DATA: {
        size_t take = c->csize < n - i ? c->csize : n - i;
        memcpy(scratch + out, s + i, take);
        out += take;
        i += take;
        c->csize -= take;
        if (!c->csize) c->cstate = CH_DATA_CR;
        break;
      }
      case CH_DATA_CR:
        c->cstate = ch == '\r' ? CH_DATA_LF : CH_SIZE;
        i += ch == '\r' || ch == '\n';
        break;
      case CH_DATA_LF:
        c->cstate = CH_SIZE;
        i += ch == '\n';
        break;
      default: /* CH_END: the body ended */
        i = n;
    }
  }
  size_t old = c->clen;
  if (out > old) on_text(c, scratch, out, old, t);
}

/* A client frame, masked with the zero key (the payload goes as is), as loadgen.js clientFrame(). */
static void ws_send(Conn *c, int opcode, const char *payload, size_t n) {
  char f[256];
  if (c->fd < 0 || n > 125) return;
  f[0] = (char)(0x80 | opcode);
  f[1] = (char)(0x80 | n);
  memset(f + 2, 0, 4);
  memcpy(f + 6, payload, n);
  if (write(c->fd, f, n + 6) < 0) return;
}

/* One WebSocket message: a ping is answered; before ready (needReady) only our `pong` counts; then scanned. */
static void on_ws_message(Conn *c, int opcode, const char *p, size_t n, double t) {
  if (opcode == 9) {
    ws_send(c, 10, p, n);
    return;
  }
  if (opcode != 1) return;
  if (!c->ready && c->need_ready) {
    if (memmem(p, n, "\"pong\"", 6)) mark_ready(c);
    return;
  }
  scan(c, p, n, n, t);
}

/* WebSocket bytes after the upgrade: whole unmasked server frames are handled, a partial one carried. */
static void on_ws(Conn *c, const char *s, size_t n, double t) {
  const char *buf = s;
  size_t len = n;
  if (c->clen) {
    append(&c->carry, &c->clen, &c->ccap, s, n);
    buf = c->carry;
    len = c->clen;
  }
  size_t i = 0;
  while (len - i >= 2) {
    const unsigned char *h = (const unsigned char *)buf + i;
    size_t hdr = 2;
    uint64_t plen = h[1] & 0x7f;
    if (plen == 126) {
      if (len - i < 4) break;
      hdr = 4;
      plen = ((uint64_t)h[2] << 8) | h[3];
    } else if (plen == 127) {
      if (len - i < 10) break;
      hdr = 10;
      plen = 0;
      for (int k = 2; k < 10; k++) plen = (plen << 8) | h[k];
    }
    if (len - i < hdr + plen) break;
    on_ws_message(c, h[0] & 0x0f, buf + i + hdr, plen, t);
    i += hdr + plen;
  }
  if (buf == c->carry) {
    memmove(c->carry, c->carry + i, len - i);
    c->clen = len - i;
  } else if (i < len) {
    append(&c->carry, &c->clen, &c->ccap, buf + i, len - i);
  }
}

static void close_fd(Conn *c, int reset) {
  if (c->fd < 0) return;
  if (reset) {
    struct linger l = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close(c->fd);
  c->fd = -1;
}

static void on_data(Conn *c, const char *s, size_t n, double t) {
  if (c->phase == 0) {
    append(&c->head, &c->hlen, &c->hcap, s, n);
    char *e = memmem(c->head, c->hlen, "\r\n\r\n", 4);
    if (!e) {
      if (c->hlen > MAX_HEAD) fail_conn(c, "head too long");
      return;
    }
    size_t hl = e - c->head;
    c->phase = 1;
    int status = 0;
    if (hl >= 12)
      for (int k = 9; k < 12; k++) status = status * 10 + (c->head[k] - '0');
    c->chunked = 0;
    for (size_t k = 0; k + 20 <= hl; k++) {
      if (c->head[k] == '\r' && c->head[k + 1] == '\n' && strncasecmp(c->head + k + 2, "transfer-encoding:", 18) == 0) {
        size_t v = k + 20;
        while (v < hl && (c->head[v] == ' ' || c->head[v] == '\t')) v++;
        if (v + 7 <= hl && strncasecmp(c->head + v, "chunked", 7) == 0) c->chunked = 1;
      }
    }
    if (status != (c->ws ? 101 : 200)) {
      char why[32];
      snprintf(why, sizeof why, "HTTP %d", status);
      fail_conn(c, why);
      return;
    }
    if (c->ws && c->need_ready) ws_send(c, 1, "{\"action\":\"ping\"}", 17);
    else if (!c->need_ready) mark_ready(c);
    size_t body = c->hlen - (hl + 4);
    /* The body is copied out of the head buffer first: on_body may grow the carry, not the head. */
    if (body) {
      char *tmp = malloc(body);
      memcpy(tmp, c->head + hl + 4, body);
      free(c->head);
      c->head = NULL;
      c->hlen = c->hcap = 0;
      if (c->ws) on_ws(c, tmp, body, t);
      else on_body(c, tmp, body, t);
      free(tmp);
    } else {
      free(c->head);
      c->head = NULL;
      c->hlen = c->hcap = 0;
    }
    return;
  }
  if (c->ws) on_ws(c, s, n, t);
  else on_body(c, s, n, t);
}

// ---------------------------------------------------------------------------------------------------------------
// Output

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
    else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
    else fputc(*s, f);
  }
  fputc('"', f);
}

static void pct(FILE *f, const uint32_t *h, uint64_t total, double q) {
  if (!total) {
    fputs("null", f);
    return;
  }
  uint64_t want = (uint64_t)ceil(total * q), acc = 0;
  for (long i = 0; i <= MAX_BUCKET; i++) {
    acc += h[i];
    if (acc >= want) {
      fprintf(f, "%.1f", i * BUCKET_MS);
      return;
    }
  }
  fputs("null", f);
}

static size_t open_count(void) {
  size_t k = 0;
  for (size_t i = 0; i < nconns; i++) k += conns[i].ready && !conns[i].done;
  return k;
}

// ---------------------------------------------------------------------------------------------------------------
// Connections

static void conn_lost(Conn *c) {
  if (!c->done && c->ready) closed_unexpectedly++;
  c->done = 1;
  close_fd(c, 0);
  if (!c->settled) fail_conn(c, "closed");
}

static void settle(Conn *c, int ok, const char *why) {
  if (c->settled) return;
  c->settled = 1;
  settled_n++;
  if (!ok) {
    failed_n++;
    if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", why);
  }
  if (inflight) {
    size_t me = c - conns;
    for (size_t k = 0; k < inflight; k++)
      if (inflight_idx[k] == me) {
        inflight_idx[k] = inflight_idx[--inflight];
        break;
      }
  }
}

static void mark_ready(Conn *c) {
  c->ready = 1;
  if (connecting) settle(c, 1, NULL);
}

static void fail_conn(Conn *c, const char *why) {
  if (connecting) settle(c, 0, why);
  c->done = 1;
  close_fd(c, 0);
}

static void start_one(void) {
  size_t i = next_conn++;
  Conn *c = &conns[i];
  c->deadline = now_ms() + timeout_ms;
  inflight_idx[inflight++] = i;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    fail_conn(c, strerror(errno));
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    fail_conn(c, strerror(errno));
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u64 = i};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_writable(Conn *c, size_t i) {
  int err = 0;
  socklen_t l = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
  if (err) {
    fail_conn(c, strerror(err));
    return;
  }
  c->connected = 1;
  char req[8192];
  int n;
  if (c->ws) {
    /* The key loadgen.js sends: base64 of the first 16 bytes of `loadgen-key-<i, 4 digits>`. */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char raw[40], key[32];
    snprintf(raw, sizeof raw, "loadgen-key-%04zu", i);
    unsigned char *r = (unsigned char *)raw;
    for (int k = 0, o = 0; k < 16; k += 3) {
      uint32_t v = r[k] << 16 | (k + 1 < 16 ? r[k + 1] << 8 : 0) | (k + 2 < 16 ? r[k + 2] : 0);
      key[o++] = b64[v >> 18 & 63];
      key[o++] = b64[v >> 12 & 63];
      key[o++] = k + 1 < 16 ? b64[v >> 6 & 63] : '=';
      key[o++] = k + 2 < 16 ? b64[v & 63] : '=';
      key[o] = 0;
    }
    n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", paths[i], host, port, key);
  } else
    n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n", paths[i], host, port);
  if (n <= 0 || n >= (int)sizeof req || write(c->fd, req, n) != n) {
    fail_conn(c, "request not written");
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = i};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void free_conns(void) {
  for (size_t i = 0; i < nconns; i++) {
    Conn *c = &conns[i];
    c->done = 1;
    close_fd(c, 1);
    free(c->head);
    free(c->carry);
    free(c->seen);
  }
  free(conns);
  conns = NULL;
  nconns = 0;
}

static void connect_progress(void) {
  double t = now_ms();
  for (size_t k = 0; k < inflight;) {
    Conn *c = &conns[inflight_idx[k]];
    if (t >= c->deadline) fail_conn(c, "timeout"); /* removes it from inflight */
    else k++;
  }
  while (inflight < concurrency && next_conn < nconns) start_one();
  if (settled_n == nconns) {
    connecting = 0;
    printf("{\"cmd\":\"connected\",\"ok\":%zu,\"failed\":%zu,\"ms\":%.1f", nconns - failed_n, failed_n, now_ms() - connect_started);
    if (first_err[0]) {
      fputs(",\"firstErr\":", stdout);
      json_str(stdout, first_err);
    }
    puts("}");
    fflush(stdout);
    for (size_t i = 0; i < nconns; i++) free(paths[i]);
    free(paths);
    paths = NULL;
    free(inflight_idx);
    inflight_idx = NULL;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Commands

static char *in_buf;
static size_t in_len, in_cap;
static long paths_wanted; /* lines still expected after `connect` */

static void reset_window(long m) {
  messages = m;
  received = duplicates = unknown_n = 0;
  first_recv = last_recv = 0;
  max_lat = max_iv = 0;
  memset(hist, 0, sizeof(uint32_t) * (MAX_BUCKET + 1));
  memset(hist_iv, 0, sizeof(uint32_t) * (MAX_BUCKET + 1));
  hist_n = hist_iv_n = 0;
  for (size_t i = 0; i < nconns; i++) {
    free(conns[i].seen);
    conns[i].seen = conns[i].ready && m > 0 ? calloc(m, 1) : NULL;
  }
  getrusage(RUSAGE_SELF, &cpu_start);
  armed = 1;
}

static void command(char *line) {
  if (paths_wanted > 0) {
    paths[nconns - paths_wanted] = strdup(line);
    if (--paths_wanted == 0) {
      connect_started = now_ms();
      connecting = 1;
      connect_progress();
    }
    return;
  }
  long n;
  int cc, nr;
  char proto[8] = "sse";
  if (sscanf(line, "connect %d %d %d %d %ld %255s %7s", &port, &cc, &nr, &timeout_ms, &n, host, proto) >= 6) {
    free_conns();
    nconns = n;
    conns = calloc(n ? n : 1, sizeof(Conn));
    for (long i = 0; i < n; i++) {
      conns[i].fd = -1;
      conns[i].need_ready = nr;
      conns[i].ws = strcmp(proto, "ws") == 0;
    }
    concurrency = cc > 0 ? cc : 1;
    inflight_idx = calloc(concurrency, sizeof(size_t));
    paths = calloc(n ? n : 1, sizeof(char *));
    next_conn = settled_n = failed_n = inflight = 0;
    first_err[0] = 0;
    armed = 0;
    paths_wanted = n;
    if (n == 0) {
      connecting = 1;
      connect_started = now_ms();
      connect_progress();
    }
  } else if (sscanf(line, "arm %ld", &n) == 1) {
    reset_window(n);
    printf("{\"cmd\":\"armed\",\"open\":%zu}\n", open_count());
  } else if (sscanf(line, "status %ld", &n) == 1) {
    printf("{\"cmd\":\"status\",\"received\":%lu,\"duplicates\":%lu,\"lastRecvMs\":%.3f,\"open\":%zu,\"closedUnexpectedly\":%lu,\"cpuMs\":%.1f,\"interval\":{\"n\":%lu,\"p50\":",
           (unsigned long)received, (unsigned long)duplicates, last_recv, open_count(), (unsigned long)closed_unexpectedly, cpu_ms(), (unsigned long)hist_iv_n);
    pct(stdout, hist_iv, hist_iv_n, 0.5);
    fputs(",\"p99\":", stdout);
    pct(stdout, hist_iv, hist_iv_n, 0.99);
    printf(",\"max\":%.1f}}\n", max_iv);
    if (n) {
      memset(hist_iv, 0, sizeof(uint32_t) * (MAX_BUCKET + 1));
      hist_iv_n = 0;
      max_iv = 0;
    }
  } else if (strcmp(line, "report") == 0) {
    long min_per = -1, incomplete = 0;
    for (size_t i = 0; i < nconns; i++) {
      if (!conns[i].seen) continue;
      long k = 0;
      for (long j = 0; j < messages; j++) k += conns[i].seen[j];
      if (min_per < 0 || k < min_per) min_per = k;
      if (k < messages) incomplete++;
    }
    printf("{\"cmd\":\"report\",\"received\":%lu,\"duplicates\":%lu,\"unknown\":%lu,\"firstRecvMs\":%.3f,\"lastRecvMs\":%.3f,\"closedUnexpectedly\":%lu,\"incompleteConnections\":%ld,\"minPerConnection\":%ld,\"p50\":",
           (unsigned long)received, (unsigned long)duplicates, (unsigned long)unknown_n, first_recv, last_recv, (unsigned long)closed_unexpectedly, incomplete, min_per < 0 ? 0 : min_per);
    pct(stdout, hist, hist_n, 0.5);
    fputs(",\"p90\":", stdout);
    pct(stdout, hist, hist_n, 0.9);
    fputs(",\"p99\":", stdout);
    pct(stdout, hist, hist_n, 0.99);
    printf(",\"max\":%.1f,\"cpuMs\":%.1f}\n", max_lat, cpu_ms());
  } else if (strcmp(line, "close") == 0) {
    armed = 0;
    free_conns();
    puts("{\"cmd\":\"closed\"}");
  } else if (strcmp(line, "time") == 0) {
    printf("{\"cmd\":\"time\",\"monoMs\":%.4f}\n", now_ms());
  } else if (strcmp(line, "exit") == 0) {
    exit(0);
  } else {
    printf("{\"cmd\":\"error\",\"message\":");
    json_str(stdout, line);
    puts("}");
  }
  fflush(stdout);
}

/* The complete lines read so far; while connections are being opened, the lines after `connect`'s paths wait. */
static void run_lines(void) {
  size_t start = 0;
  for (size_t i = 0; i < in_len && !connecting; i++) {
    if (in_buf[i] != '\n') continue;
    in_buf[i] = 0;
    command(in_buf + start);
    start = i + 1;
  }
  memmove(in_buf, in_buf + start, in_len - start);
  in_len -= start;
}

static void on_stdin(void) {
  char tmp[65536];
  for (;;) {
    ssize_t n = read(0, tmp, sizeof tmp);
    if (n == 0) { /* the bench is gone (or ended with `exit`) */
      run_lines();
      exit(0);
    }
    if (n < 0) break;
    append(&in_buf, &in_len, &in_cap, tmp, n);
  }
  run_lines();
}

// ---------------------------------------------------------------------------------------------------------------
// Self-test: the parser at every split of a fixed stream

static int self_test(void) {
  /* A chunked response: the head, `: ok`, `event: ready`, then messages 0..9 without 4, 7 twice, 12 (outside a
     window of 10), a heartbeat, and a frame cut in the middle at the end (not complete: not counted). */
  char body[8192];
  size_t bl = 0;
  double sent = now_ms() - 5.0;
  bl += sprintf(body + bl, ": ok\n\nid: 1\nevent: ready\ndata: {\"cursor\":\"1\"}\n\n");
  int seqs[] = {0, 1, 2, 3, 5, 6, 7, 7, 8, 9, 12};
  for (size_t k = 0; k < sizeof seqs / sizeof *seqs; k++)
    bl += sprintf(body + bl, "id: %d\nevent: bench\ndata: {\"channel\":\"c\",\"data\":{\"n\":%d,\"t\":%.3f,\"p\":\"xx\"},\"ts\":1}\n\n%s", (int)k + 2, seqs[k], sent, k == 5 ? ": hb\n\n" : "");
  bl += sprintf(body + bl, "data: {\"n\":3,\"t\":%.3f,", sent);
  char stream[16384];
  size_t sl = (size_t)sprintf(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
  /* Chunks of 1, 2, 3, … bytes, with a chunk extension on the third. */
  for (size_t at = 0, sz = 1, k = 0; at < bl; at += sz, sz++, k++) {
    if (sz > bl - at) sz = bl - at;
    sl += sprintf(stream + sl, k == 2 ? "%zx;ext=1\r\n" : "%zX\r\n", sz);
    memcpy(stream + sl, body + at, sz);
    sl += sz;
    sl += sprintf(stream + sl, "\r\n");
  }
  /* The same body without chunked encoding. */
  char plain[16384];
  size_t pl = (size_t)sprintf(plain, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
  memcpy(plain + pl, body, bl);
  pl += bl;
  /* The same messages as WebSocket text frames after a 101: a ping, our `pong` (ready), 7-bit, 16-bit and 64-bit
     lengths (one message padded past 125 bytes, one past 65535), and a frame cut at the end. */
  static char wsock[200000];
  size_t wl = (size_t)sprintf(wsock, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  static char msg[80000];
  const char *pre[] = {"hb", "{\"type\":\"pong\"}"};
  for (int k = 0; k < 2; k++) {
    size_t m = strlen(pre[k]);
    wsock[wl++] = (char)(0x80 | (k ? 1 : 9));
    wsock[wl++] = (char)m;
    memcpy(wsock + wl, pre[k], m);
    wl += m;
  }
  for (size_t k = 0; k < sizeof seqs / sizeof *seqs; k++) {
    size_t pad = k == 1 ? 200 : k == 3 ? 70000 : 0;
    size_t m = (size_t)sprintf(msg, "{\"channel\":\"c\",\"data\":{\"n\":%d,\"t\":%.3f,\"p\":\"", seqs[k], sent);
    memset(msg + m, 'x', pad);
    m += pad;
    m += (size_t)sprintf(msg + m, "\"}}");
    wsock[wl++] = (char)0x81;
    if (m < 126) wsock[wl++] = (char)m;
    else if (m < 65536) {
      wsock[wl++] = 126;
      wsock[wl++] = (char)(m >> 8);
      wsock[wl++] = (char)(m & 0xff);
    } else {
      wsock[wl++] = 127;
      for (int b = 7; b >= 0; b--) wsock[wl++] = (char)((uint64_t)m >> (8 * b));
    }
    memcpy(wsock + wl, msg, m);
    wl += m;
  }
  wl += (size_t)sprintf(wsock + wl, "\x81\x30{\"n\":4,");
  int bad = 0;
  for (int variant = 0; variant < 3; variant++) {
    const char *src = variant == 2 ? wsock : variant ? plain : stream;
    size_t len = variant == 2 ? wl : variant ? pl : sl;
    for (size_t split = 1; split <= 65; split++) {
      size_t step = split == 65 ? len : split;
      free_conns();
      nconns = 1;
      conns = calloc(1, sizeof(Conn));
      conns[0].fd = -1;
      conns[0].need_ready = 1;
      conns[0].ws = variant == 2;
      connecting = 0;
      armed = 0;
      reset_window(10);
      Conn *c = &conns[0];
      c->seen = calloc(10, 1); /* armed from the start: the whole stream may come in one read */
      for (size_t at = 0; at < len; at += step) {
        size_t n = step < len - at ? step : len - at;
        on_data(c, src + at, n, now_ms());
      }
      long k = 0;
      for (int j = 0; j < 10; j++) k += c->seen ? c->seen[j] : 0;
      int ok = c->ready && c->chunked == (variant == 0) && received == 9 && duplicates == 1 && unknown_n == 1 && k == 9 && !c->seen[4] && hist_n == 9 && max_lat >= 5.0 && max_lat < 5000 && c->clen > 0;
      if (!ok) {
        bad++;
        fprintf(stderr, "loadgen self-test: %s split %zu: ready %d chunked %d received %lu duplicates %lu unknown %lu per-connection %ld histogram %lu max %.1f carry %zu\n",
                variant == 2 ? "websocket" : variant ? "plain" : "chunked", step, c->ready, c->chunked, (unsigned long)received, (unsigned long)duplicates, (unsigned long)unknown_n, k, (unsigned long)hist_n, max_lat, c->clen);
      }
    }
  }
  free_conns();
  if (bad) {
    printf("{\"selfTest\":\"failed\",\"cases\":%d}\n", bad);
    return 1;
  }
  puts("{\"selfTest\":\"ok\",\"cases\":195}");
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  hist = calloc(MAX_BUCKET + 1, sizeof(uint32_t));
  hist_iv = calloc(MAX_BUCKET + 1, sizeof(uint32_t));
  rbuf = malloc(READ_BUF);
  ensure_scratch(READ_BUF * 2);
  if (!hist || !hist_iv || !rbuf) return 70;
  if (argc > 1 && strcmp(argv[1], "--self-test") == 0) return self_test();
  /* Every socket is a file: up to the hard limit (the bench raised it; children inherit). */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrusage(RUSAGE_SELF, &cpu_start);
  ep = epoll_create1(EPOLL_CLOEXEC);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event sev = {.events = EPOLLIN, .data.u64 = STDIN_TAG};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
  printf("{\"cmd\":\"hello\",\"pid\":%d,\"monoMs\":%.3f}\n", getpid(), now_ms());
  fflush(stdout);
  struct epoll_event evs[1024];
  for (;;) {
    int n = epoll_wait(ep, evs, 1024, connecting ? 20 : 1000);
    int input = 0;
    for (int k = 0; k < n; k++) {
      uint64_t id = evs[k].data.u64;
      if (id == STDIN_TAG) {
        input = 1;
        continue;
      }
      if (id >= nconns) continue;
      Conn *c = &conns[id];
      if (c->fd < 0) continue; /* closed earlier in this batch */
      if (!c->connected) {
        if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(c, id);
        continue;
      }
      /* Edge-triggered: read until a short read (TCP returns less than asked only once its queue is empty; data
         arriving after that raises a new edge), so a ready socket is not polled again by every epoll_wait. */
      for (;;) {
        ssize_t r = recv(c->fd, rbuf, READ_BUF, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r > 0) on_data(c, rbuf, r, now_ms());
        else if (r == 0 || (errno != EAGAIN && errno != EINTR)) conn_lost(c);
        if (r != READ_BUF || c->fd < 0) break;
      }
    }
    if (connecting) {
      connect_progress();
      if (!connecting && in_len) run_lines();
    }
    if (input) on_stdin(); /* after the batch: `close` frees the connections the batch points into */
  }
}
