// The measured limit for `deltacast bench json --simdjson PATH`: simdjson's DOM parser (the
// field's fastest, Debian's libsimdjson-dev) over the same documents, median of ROUNDS parses.
// Not a dependency of the proxy.
//
//   simdjson_parse ROUNDS FILE...   -> one JSON line per file: {"file","bytes","seconds"}
//
// Built by examples/bench/run.sh json: g++ -O2 -std=c++17 -o simdjson_parse simdjson_parse.cpp -lsimdjson
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s ROUNDS FILE...\n", argv[0]);
        return 2;
    }
    int rounds = std::atoi(argv[1]);
    if (rounds < 1) return 2;
    simdjson::dom::parser parser;
    for (int index = 2; index < argc; index++) {
        simdjson::padded_string json;
        if (simdjson::padded_string::load(argv[index]).get(json)) {
            std::fprintf(stderr, "cannot read %s\n", argv[index]);
            return 1;
        }
        std::vector<double> samples;
        for (int round = 0; round < rounds; round++) {
            auto start = std::chrono::steady_clock::now();
            simdjson::dom::element document;
            if (parser.parse(json).get(document)) {
                std::fprintf(stderr, "%s does not parse\n", argv[index]);
                return 1;
            }
            samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        std::sort(samples.begin(), samples.end());
        std::printf("{\"file\":\"%s\",\"bytes\":%zu,\"seconds\":%.9f}\n", argv[index], json.size(), samples[samples.size() / 2]);
    }
    return 0;
}
