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
#endif
