// OpenSSL for TLS, SHA-1 (WebSocket accept key) and HMAC.
#ifndef DELTACAST_COPENSSL_SHIM_H
#define DELTACAST_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#endif
