#include <fmt/format.h>

#include <otpd/redis_client/reply.hpp>

namespace otpd::redis_client {

const char* to_string(reply_type t) noexcept {
  switch (t) {
    case reply_type::status:
      return "status";
    case reply_type::error:
      return "error";
    case reply_type::integer:
      return "integer";
    case reply_type::string:
      return "string";
    case reply_type::nil:
      return "nil";
    case reply_type::array:
      return "array";
  }
  return "unknown";
}

namespace {

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

void format_into(const reply& r, std::string& out, std::size_t indent) {
  switch (r.type) {
    case reply_type::status:
      out += r.str;
      break;
    case reply_type::error:
      out += "(error) " + r.str;
      break;
    case reply_type::integer:
      out += fmt::format("(integer) {}", r.integer);
      break;
    case reply_type::string:
      out += quoted(r.str);
      break;
    case reply_type::nil:
      out += "(nil)";
      break;
    case reply_type::array:
      if (r.elements.empty()) {
        out += "(empty array)";
        break;
      }
      for (std::size_t i = 0; i < r.elements.size(); ++i) {
        if (i > 0) {
          out += '\n';
          out.append(indent, ' ');
        }
        std::string prefix = fmt::format("{}) ", i + 1);
        out += prefix;
        format_into(r.elements[i], out, indent + prefix.size());
      }
      break;
  }
}

}  // namespace

std::string reply::to_string() const {
  std::string out;
  format_into(*this, out, 0);
  return out;
}

command_args::command_args(std::initializer_list<std::string_view> args) {
  assign(args.begin(), args.end());
}
command_args::command_args(const std::vector<std::string>& args) {
  assign(args.begin(), args.end());
}
command_args::command_args(const std::vector<std::string_view>& args) {
  assign(args.begin(), args.end());
}

template <class It>
void command_args::assign(It first, It last) {
  auto n = static_cast<std::size_t>(std::distance(first, last));
  ptrs_.reserve(n);
  lens_.reserve(n);
  for (; first != last; ++first) {
    ptrs_.push_back(first->data());
    lens_.push_back(first->size());
  }
}

}  // namespace otpd::redis_client
