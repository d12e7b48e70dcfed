#pragma once

// JSON text in and out of otpd, compiled once (protocol/src/json_text.cpp).
//
// nlohmann/json's parser, serializer and msgpack codec are templates: every
// file that calls json::parse, dump() or to_msgpack compiles its own copy,
// about 3 CPU-s at -O2 each, and otpd's programs had five such copies. Every
// library and program goes through these functions instead; building,
// reading and comparing json values stays inline where it is used.
// scripts/lint.sh fails on a call to the template ones anywhere else (tests
// and fuzz targets may use them).

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace otpd::protocol {

using json = nlohmann::json;

// One JSON text: a discarded value (is_discarded()) when the bytes are not
// exactly one JSON value. Never throws, except std::bad_alloc.
[[nodiscard]] json parse_json(std::string_view text);

// Compact, one line, no newline. Bytes in strings that are not UTF-8 (a
// child's id is the operator's, a message may quote it) are replaced by
// U+FFFD, never thrown on.
[[nodiscard]] std::string dump_json(const json& j);

// The value as msgpack bytes (otpctl cast/call turn a JSON argument into a
// message body this way).
[[nodiscard]] std::string json_to_msgpack(const json& j);

// One msgpack value as JSON: a discarded value when the bytes are not exactly
// one msgpack value or it has no JSON form (a map with non-string keys, bin
// or ext types). Never throws, except std::bad_alloc.
[[nodiscard]] json json_from_msgpack(std::string_view bytes);

}  // namespace otpd::protocol
