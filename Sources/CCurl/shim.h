// libcurl, the upstream client. curl_easy_setopt and friends are variadic, which Swift cannot
// call: these typed wrappers are the only way DeltacastUpstream sets options.
#ifndef DELTACAST_CCURL_SHIM_H
#define DELTACAST_CCURL_SHIM_H
#include <curl/curl.h>
static inline CURLcode deltacast_curl_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode deltacast_curl_easy_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode deltacast_curl_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLMcode deltacast_curl_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }
static inline CURLMcode deltacast_curl_multi_setopt_pointer(CURLM *m, CURLMoption o, void *v) { return curl_multi_setopt(m, o, v); }
static inline CURLcode deltacast_curl_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode deltacast_curl_easy_getinfo_pointer(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }

typedef size_t (*deltacast_curl_data_callback)(char *data, size_t size, size_t count, void *user);
/// CURLOPT_WRITEFUNCTION and CURLOPT_HEADERFUNCTION with typed callbacks.
static inline CURLcode deltacast_curl_easy_set_write(CURL *h, deltacast_curl_data_callback f) { return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f); }
static inline CURLcode deltacast_curl_easy_set_header(CURL *h, deltacast_curl_data_callback f) { return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, f); }
/// CURLOPT_CLOSESOCKETFUNCTION with a typed callback.
static inline CURLcode deltacast_curl_easy_set_closesocket(CURL *h, curl_closesocket_callback f) { return curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, f); }
/// CURLMOPT_SOCKETFUNCTION and CURLMOPT_TIMERFUNCTION with typed callbacks.
static inline CURLMcode deltacast_curl_multi_set_socket(CURLM *m, curl_socket_callback f) { return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, f); }
static inline CURLMcode deltacast_curl_multi_set_timer(CURLM *m, curl_multi_timer_callback f) { return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, f); }
/// The result code of a finished transfer (a union member Swift reads awkwardly).
static inline CURLcode deltacast_curl_message_result(CURLMsg *m) { return m->data.result; }
#endif
