#include <otpd/core/msgpack.hpp>
#include <otpd/redis_pool/codec.hpp>
#include <otpd/runtime/term.hpp>

namespace otpd::redis_pool {

namespace {

using core::errc;
using redis_client::reply;
using redis_client::reply_type;
using packer = msgpack::packer<msgpack::sbuffer>;

enum tag : int {
  t_status = 0,
  t_error = 1,
  t_integer = 2,
  t_bulk = 3,
  t_nil = 4,
  t_array = 5,
  t_failure = 6
};

void pack_bin(packer& pk, std::string_view s) {
  pk.pack_bin(static_cast<std::uint32_t>(s.size()));
  pk.pack_bin_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

// Recursion follows the reply tree, which Redis and hiredis bound.
// NOLINTNEXTLINE(misc-no-recursion)
void pack_reply(packer& pk, const reply& r) {
  switch (r.type) {
    case reply_type::status:
    case reply_type::error:
    case reply_type::string:
      pk.pack_array(2);
      pk.pack(static_cast<int>(r.type == reply_type::status  ? t_status
                               : r.type == reply_type::error ? t_error
                                                             : t_bulk));
      pack_bin(pk, r.str);
      return;
    case reply_type::integer:
      pk.pack_array(2);
      pk.pack(static_cast<int>(t_integer));
      pk.pack(r.integer);
      return;
    case reply_type::nil:
      pk.pack_array(1);
      pk.pack(static_cast<int>(t_nil));
      return;
    case reply_type::array:
      pk.pack_array(2);
      pk.pack(static_cast<int>(t_array));
      pk.pack_array(static_cast<std::uint32_t>(r.elements.size()));
      for (const auto& e : r.elements) {
        pack_reply(pk, e);
      }
      return;
  }
}

bool bytes_of(const msgpack::object& o, std::string& out) {
  if (o.type == msgpack::type::BIN) {
    out.assign(o.via.bin.ptr, o.via.bin.size);
    return true;
  }
  if (o.type == msgpack::type::STR) {
    out.assign(o.via.str.ptr, o.via.str.size);
    return true;
  }
  return false;
}

// Recursion bounded by depth: a hostile body cannot blow the stack.
// NOLINTNEXTLINE(misc-no-recursion)
core::Result<reply> unpack_reply(const msgpack::object& o, int depth) {
  if (depth > max_depth || o.type != msgpack::type::ARRAY || o.via.array.size == 0 ||
      o.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER) {
    return errc::malformed;
  }
  const auto& a = o.via.array;
  auto t = o.via.array.ptr[0].via.u64;
  reply r;
  switch (t) {
    case t_status:
    case t_error:
    case t_bulk:
      if (a.size != 2 || !bytes_of(a.ptr[1], r.str)) {
        return errc::malformed;
      }
      r.type = t == t_status  ? reply_type::status
               : t == t_error ? reply_type::error
                              : reply_type::string;
      return r;
    case t_integer:
      if (a.size != 2 || (a.ptr[1].type != msgpack::type::POSITIVE_INTEGER &&
                          a.ptr[1].type != msgpack::type::NEGATIVE_INTEGER)) {
        return errc::malformed;
      }
      r.type = reply_type::integer;
      r.integer = a.ptr[1].type == msgpack::type::POSITIVE_INTEGER
                      ? static_cast<std::int64_t>(a.ptr[1].via.u64)
                      : a.ptr[1].via.i64;
      return r;
    case t_nil:
      return a.size == 1 ? core::Result<reply>(reply::nil()) : core::Result<reply>(errc::malformed);
    case t_array: {
      if (a.size != 2 || a.ptr[1].type != msgpack::type::ARRAY) {
        return errc::malformed;
      }
      r.type = reply_type::array;
      r.elements.reserve(a.ptr[1].via.array.size);
      for (std::uint32_t i = 0; i < a.ptr[1].via.array.size; ++i) {
        auto e = unpack_reply(a.ptr[1].via.array.ptr[i], depth + 1);
        if (!e) {
          return e.error();
        }
        r.elements.push_back(std::move(*e));
      }
      return r;
    }
    case t_failure: {
      if (a.size < 2 || a.ptr[1].type != msgpack::type::POSITIVE_INTEGER || a.ptr[1].via.u64 == 0 ||
          a.ptr[1].via.u64 > static_cast<std::uint64_t>(core::errc_last)) {
        return errc::malformed;
      }
      return core::make_error_code(static_cast<errc>(a.ptr[1].via.u64));
    }
    default:
      return errc::malformed;
  }
}

template <class Strings>
std::string encode_argv(const Strings& argv) {
  msgpack::sbuffer buf;
  packer pk(buf);
  pk.pack_array(static_cast<std::uint32_t>(argv.size()));
  for (const auto& a : argv) {
    pack_bin(pk, a);
  }
  return {buf.data(), buf.size()};
}

}  // namespace

std::string encode_request(const std::vector<std::string>& argv) {
  return encode_argv(argv);
}
std::string encode_request(const std::vector<std::string_view>& argv) {
  return encode_argv(argv);
}

core::Result<std::vector<std::string>> decode_request(std::string_view body) {
  // decode_term bounds every count and size by the body's bytes, so argv's
  // reservation below is never larger than the body.
  auto oh = runtime::decode_term(body);
  if (!oh) {
    return oh.error();
  }
  try {
    const msgpack::object& o = oh->get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size == 0) {
      return errc::malformed;
    }
    std::vector<std::string> argv(o.via.array.size);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      if (!bytes_of(o.via.array.ptr[i], argv[i])) {
        return errc::malformed;
      }
    }
    return argv;
  } catch (...) {
    return errc::malformed;
  }
}

std::string encode_reply(const reply& r) {
  msgpack::sbuffer buf;
  packer pk(buf);
  pack_reply(pk, r);
  return {buf.data(), buf.size()};
}

std::string encode_failure(std::error_code ec) {
  int code = ec.category() == core::otpd_category() && ec.value() > 0 &&
                     ec.value() <= static_cast<int>(core::errc_last)
                 ? ec.value()
                 : static_cast<int>(errc::disconnected);
  msgpack::sbuffer buf;
  packer pk(buf);
  pk.pack_array(3);
  pk.pack(static_cast<int>(t_failure));
  pk.pack(code);
  pk.pack(ec.message());
  return {buf.data(), buf.size()};
}

std::string encode_result(const redis_client::reply_result& r) {
  return r ? encode_reply(*r) : encode_failure(r.error());
}

redis_client::reply_result decode_reply(std::string_view body) {
  auto oh = runtime::decode_term(body);
  if (!oh) {
    return oh.error();
  }
  try {
    return unpack_reply(oh->get(), 0);
  } catch (...) {
    return errc::malformed;
  }
}

}  // namespace otpd::redis_pool
