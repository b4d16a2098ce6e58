#!/usr/bin/env bash
# Starts the real nginx with examples/deploy/nginx (its map, upstream and TLS server, and its
# location rules) in front of a deltacast on TARGET_PORT, on free loopback ports.
#
#   nginx-front.sh TARGET_PORT DIR   prints "PLAIN_PORT TLS_PORT" once nginx answers
#
# DIR receives the generated configuration, a CA (DIR/ca.pem, to trust) and the leaf
# certificate for 127.0.0.1 and localhost, logs, and nginx.pid: stop it with
# `kill $(cat DIR/nginx.pid)`. Besides the example's TLS server, a plain-HTTP server includes
# the same location rules (for clients that cannot be given a CA).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # nginx lives in /usr/sbin, which a non-login PATH may lack
target=$1
dir=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
examples="$here/examples/deploy/nginx"
mkdir -p "$dir"
command -v nginx >/dev/null || { echo "nginx not found (apt-get install nginx)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
plain=$(free_port)
tls=$(free_port)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=deltacast test CA" \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$dir/privkey.pem" -out "$dir/leaf.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$dir/leaf.ext"
openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial -days 2 \
    -extfile "$dir/leaf.ext" -out "$dir/fullchain.pem" 2>/dev/null

# The example as shipped, with only its addresses, certificate paths and include path changed.
sed -e "s#server 127.0.0.1:8080;#server 127.0.0.1:$target;#" \
    -e "s#listen 443 ssl;#listen 127.0.0.1:$tls ssl;#" \
    -e "/listen \[::\]:443 ssl;/d" \
    -e "s#/etc/ssl/deltacast/#$dir/#g" \
    -e "s#/etc/nginx/conf.d/deltacast-locations.conf#$examples/deltacast-locations.conf#" \
    "$examples/deltacast.conf" >"$dir/deltacast.conf"
grep -q "127.0.0.1:$target" "$dir/deltacast.conf" && grep -q "127.0.0.1:$tls ssl" "$dir/deltacast.conf" \
    || { echo "examples/deploy/nginx/deltacast.conf no longer has the lines this script adapts" >&2; exit 1; }

cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/client-body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/deltacast.conf;
    server {
        listen 127.0.0.1:$plain;
        include $examples/deltacast-locations.conf;
    }
}
CONF
# As root, workers run as root too: the generated files live in a private temporary folder.
user=(); [ "$(id -u)" -eq 0 ] && user=(-g "user root;")
nginx -t -q -c "$dir/nginx.conf" -p "$dir" "${user[@]}"
nginx -c "$dir/nginx.conf" -p "$dir" "${user[@]}"
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$plain/healthz" && break
    sleep 0.05
done
curl -s -o /dev/null --cacert "$dir/ca.pem" "https://127.0.0.1:$tls/healthz" || { cat "$dir/error.log" >&2; exit 1; }
echo "$plain $tls"
