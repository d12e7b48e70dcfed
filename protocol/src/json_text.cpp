// The one place where otpd instantiates nlohmann/json's parser, serializer
// and msgpack codec (see json_text.hpp for why).

#include <cstdint>
#include <vector>

#include <otpd/protocol/json_text.hpp>

namespace otpd::protocol {

json parse_json(std::string_view text) {
  return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string json_to_msgpack(const json& j) {
  std::string out;
  json::to_msgpack(j, out);
  return out;
}

json json_from_msgpack(std::string_view bytes) {
  return json::from_msgpack(bytes.begin(), bytes.end(), /*strict=*/true,
                            /*allow_exceptions=*/false);
}

}  // namespace otpd::protocol
