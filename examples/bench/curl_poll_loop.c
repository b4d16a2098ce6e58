/* A minimal libcurl-multi poller: the measured floor for `deltacast bench polling`.
 *
 *   curl_poll_loop BASE_URL TOPICS INTERVAL_MS SECONDS
 *
 * Topic i is GET BASE_URL/api/users/i/notifications with `Authorization: Bearer user-i`, every
 * INTERVAL_MS counted from the start of its previous request (as Deltacast's poller does), with
 * `If-None-Match` from its last ETag and the headers Deltacast sends with every poll (`Accept`,
 * `User-Agent`, `Accept-Encoding`): the same requests. Bodies are read and dropped. Topics start
 * spread over the first interval. It stops after SECONDS and prints one JSON line of counts. No
 * parsing, no diffing, no state: what any poller must at least spend on the same requests.
 *
 * Built by examples/bench/run.sh: gcc -O2 -o curl_poll_loop curl_poll_loop.c -lcurl */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    char url[256];
    char authorization[64];
    char etag[128];
    long long due;   /* next start, monotonic ms */
    int busy;        /* a request in flight */
    int overdue;     /* its due time came while busy: start it when the request ends */
} Topic;

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static size_t discard(char *data, size_t size, size_t count, void *user) {
    (void)data; (void)user;
    return size * count;
}

static size_t header(char *data, size_t size, size_t count, void *user) {
    Topic *topic = user;
    size_t length = size * count;
    if (length > 5 && strncasecmp(data, "etag:", 5) == 0) {
        size_t start = 5, end = length;
        while (start < end && (data[start] == ' ' || data[start] == '\t')) start++;
        while (end > start && (data[end - 1] == '\r' || data[end - 1] == '\n' || data[end - 1] == ' ')) end--;
        size_t n = end - start < sizeof topic->etag - 1 ? end - start : sizeof topic->etag - 1;
        memcpy(topic->etag, data + start, n);
        topic->etag[n] = 0;
    }
    return length;
}

static void start(CURLM *multi, Topic *topic, long long now, long interval) {
    curl_slist_free_all(topic->headers);
    topic->headers = curl_slist_append(NULL, topic->authorization);
    topic->headers = curl_slist_append(topic->headers, "Accept: application/json, */*;q=0.5");
    topic->headers = curl_slist_append(topic->headers, "User-Agent: deltacast");
    if (topic->etag[0]) {
        char line[160];
        snprintf(line, sizeof line, "If-None-Match: %s", topic->etag);
        topic->headers = curl_slist_append(topic->headers, line);
    }
    curl_easy_setopt(topic->easy, CURLOPT_HTTPHEADER, topic->headers);
    curl_multi_add_handle(multi, topic->easy);
    topic->busy = 1;
    topic->overdue = 0;
    topic->due = now + interval;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s BASE_URL TOPICS INTERVAL_MS SECONDS\n", argv[0]);
        return 2;
    }
    const char *base = argv[1];
    int count = atoi(argv[2]);
    long interval = atol(argv[3]);
    long long end = now_ms() + atoll(argv[4]) * 1000LL;
    if (count < 1 || interval < 1) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    Topic *topics = calloc(count, sizeof *topics);
    long long begin = now_ms();
    for (int i = 0; i < count; i++) {
        Topic *topic = &topics[i];
        snprintf(topic->url, sizeof topic->url, "%s/api/users/%d/notifications", base, i);
        snprintf(topic->authorization, sizeof topic->authorization, "Authorization: Bearer user-%d", i);
        topic->easy = curl_easy_init();
        curl_easy_setopt(topic->easy, CURLOPT_URL, topic->url);
        curl_easy_setopt(topic->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(topic->easy, CURLOPT_HEADERFUNCTION, header);
        curl_easy_setopt(topic->easy, CURLOPT_HEADERDATA, topic);
        curl_easy_setopt(topic->easy, CURLOPT_PRIVATE, topic);
        curl_easy_setopt(topic->easy, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(topic->easy, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(topic->easy, CURLOPT_NOSIGNAL, 1L);
        topic->due = begin + (long long)i * interval / count;
    }
    long polls = 0, ok = 0, not_modified = 0, errors = 0;
    int next = 0;   /* topics come due in index order, round after round */
    for (;;) {
        long long now = now_ms();
        if (now >= end) break;
        /* Every start sets due to start + interval, so due times stay in index order: scan from
         * the next one expected. */
        for (int scanned = 0; scanned < count && topics[next].due <= now; scanned++) {
            Topic *topic = &topics[next];
            if (topic->busy) topic->overdue = 1, topic->due = now + interval; else start(multi, topic, now, interval);
            next = (next + 1) % count;
        }
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *message;
        int left;
        while ((message = curl_multi_info_read(multi, &left))) {
            if (message->msg != CURLMSG_DONE) continue;
            Topic *topic;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&topic);
            long status = 0;
            curl_easy_getinfo(message->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            polls++;
            if (message->data.result != CURLE_OK) errors++;
            else if (status == 304) not_modified++;
            else if (status == 200) ok++;
            else errors++;
            curl_multi_remove_handle(multi, message->easy_handle);
            topic->busy = 0;
            if (topic->overdue) start(multi, topic, now_ms(), interval);
        }
        long long wait = topics[next].due - now_ms();
        if (wait < 0) wait = 0;
        if (wait > 100) wait = 100;
        curl_multi_poll(multi, NULL, 0, (int)wait, NULL);
    }
    printf("{\"polls\":%ld,\"ok\":%ld,\"not_modified\":%ld,\"errors\":%ld}\n", polls, ok, not_modified, errors);
    return 0;
}
